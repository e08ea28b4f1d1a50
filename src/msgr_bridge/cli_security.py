"""Operator commands for API tokens, the audit log and the web app's login: ``msgr-bridge tokens
create|list|revoke``, ``msgr-bridge audit verify`` and ``msgr-bridge web reset-login``.

``tokens create`` prints the token once (only its SHA-256 is stored, so it cannot be shown again) and its
id; ``tokens list`` never shows a secret; ``tokens revoke ID`` takes effect at the next request. Creating
and revoking a token each append an audit entry (``token.create`` / ``token.revoke``, actor
``cli:<login name>``) in the same transaction as the change.

``audit verify`` walks the hash chain and prints the first broken link (a row changed, removed or
inserted) and exits 1, or prints the head (``SEQ:HASH``) and exits 0. Keep that head somewhere the
database's administrators cannot write, and pass it back later with ``--anchor SEQ:HASH`` (or just the
hash): that also catches a chain rebuilt after the anchored row.

``web reset-login`` forgets the web app's owner login and ends its sessions (a lost password): the next
start of the bridge prints a new one-time setup link. It is audited as ``web.owner.reset``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from .errors import ConfigError

_TTL = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_HASH = re.compile(r"^[0-9a-f]{64}$")


def parse_ttl(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` -> a timedelta (argparse type)."""
    match = _TTL.match(text)
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a lifetime; write a positive number and a unit: 30d, 12h, 90m, 45s or 2w"
        )
    return timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})


def parse_anchor(text: str) -> tuple[int | None, str]:
    """``SEQ:HASH`` or ``HASH`` (as printed by ``audit verify``)."""
    seq_text, _, digest = text.strip().rpartition(":")
    digest = digest.lower()
    if not _HASH.match(digest) or (seq_text and not seq_text.isdigit()):
        raise ConfigError(
            f"--anchor {text!r} is not an audit head",
            hint="pass SEQ:HASH or HASH as printed by `msgr-bridge audit verify` (HASH is 64 hex digits)",
        )
    return (int(seq_text) if seq_text else None), digest


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli:unknown"


@asynccontextmanager
async def _database(args: argparse.Namespace) -> AsyncIterator[Any]:
    from .cli import _settings, existing_database

    settings = _settings(args)
    db = existing_database(settings)
    await db.connect()
    try:
        await db.check_schema()
        yield settings, db
    finally:
        await db.close()


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _token_json(info: Any, now: Any = None) -> dict[str, Any]:
    return {
        "id": info.id,
        "tenant": info.tenant,
        "name": info.name,
        "user": info.user_id,
        "scopes": [str(s) for s in info.scopes],
        "status": info.status(now),
        "created_at": info.created_at.isoformat(),
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
        "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None,
    }


# --- tokens -----------------------------------------------------------------------------------------------


async def cmd_tokens_create(args: argparse.Namespace) -> int:
    from .store import audit
    from .store.tokens import TokenStore

    async with _database(args) as (settings, db):
        tenant = args.tenant or settings.bridge.tenant
        async with db.session() as s:
            new = await TokenStore(db).create(
                tenant=tenant, name=args.name, scopes=args.scope, user_id=args.user, ttl=args.ttl, session=s
            )
            info = new.info
            await audit.append(
                s,
                _actor(),
                "token.create",
                info.id,
                {
                    "tenant": tenant,
                    "name": info.name,
                    "user": info.user_id,
                    "scopes": [str(x) for x in info.scopes],
                    "expires_at": info.expires_at,
                },
            )
    if args.json:
        _print_json(_token_json(info) | {"token": new.token})
    else:
        print(f"id:      {info.id}")
        print(f"token:   {new.token}")
        print(f"scopes:  {', '.join(str(x) for x in info.scopes)}")
        print(f"expires: {info.expires_at.isoformat() if info.expires_at else 'never'}")
        print("Store the token now: it is shown only this once.", file=sys.stderr)
    return 0


async def cmd_tokens_list(args: argparse.Namespace) -> int:
    from .store.tokens import TokenStore

    async with _database(args) as (settings, db):
        tenant = None if args.all_tenants else (args.tenant or settings.bridge.tenant)
        infos = await TokenStore(db).list(tenant=tenant, include_inactive=not args.active)
    rows = [_token_json(i) for i in infos]
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        expires = r["expires_at"] or "never"
        print(
            f"{r['id']:<30} {r['name']:<20} {r['status']:<8} {r['user'] or '-':<16} "
            f"{','.join(r['scopes']):<30} expires {expires}"
        )
    if not rows:
        print("no API tokens", file=sys.stderr)
    return 0


async def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    from .store import audit
    from .store.tokens import TokenStore

    async with _database(args) as (_, db), db.session() as s:
        before = await TokenStore(db).get(args.id, session=s)
        info = await TokenStore(db).revoke(args.id, session=s)
        if before.revoked_at is None:
            await audit.append(
                s, _actor(), "token.revoke", info.id, {"tenant": info.tenant, "name": info.name}
            )
    if before.revoked_at is not None:
        print(f"token {info.id} ({info.name}) was already revoked at {before.revoked_at.isoformat()}")
    else:
        print(f"revoked token {info.id} ({info.name})")
    return 0


# --- audit ------------------------------------------------------------------------------------------------


async def cmd_audit_verify(args: argparse.Namespace) -> int:
    from .store import audit
    from .store.models import AuditLog

    anchor = parse_anchor(args.anchor) if args.anchor else None
    missing_anchor = False
    async with _database(args) as (_, db), db.session() as s:
        pinned: tuple[int, str] | None = None
        if anchor is not None:
            seq, digest = anchor
            if seq is None:
                found = (
                    await s.execute(select(AuditLog.seq).where(AuditLog.hash == digest))
                ).scalar_one_or_none()
                missing_anchor = found is None
                seq = found
            if seq is not None:
                pinned = (seq, digest)
        report = await audit.verify(s, anchor=pinned)
    result: dict[str, Any] = {
        "ok": report.ok and not missing_anchor,
        "rows_checked": report.rows_checked,
        "head": f"{report.head_seq}:{report.head_hash}" if report.head_hash else None,
        "broken_seq": report.broken_seq,
        "problem": report.problem,
        "detail": report.detail,
    }
    if report.ok and missing_anchor:
        result |= {
            "head": None,
            "problem": "anchor_mismatch",
            "detail": "no row has the anchored hash: the chain after it was removed or rebuilt",
        }
    if args.json:
        _print_json(result)
    elif result["ok"]:
        print(report.explain())
        if result["head"]:
            print(f"head: {result['head']}  (keep it elsewhere; check later with --anchor {result['head']})")
    elif report.ok:
        print(f"audit log BROKEN: anchor_mismatch: {result['detail']}")
    else:
        print(report.explain())
    return 0 if result["ok"] else 1


# --- web app login -----------------------------------------------------------------------------------------


async def cmd_web_reset_login(args: argparse.Namespace) -> int:
    from .store import audit
    from .store.web_auth import WebAuthStore

    async with _database(args) as (settings, db), db.session() as s:
        tenant = args.tenant or settings.bridge.tenant
        existed = await WebAuthStore(db).reset_owner(tenant, session=s)
        if existed:
            await audit.append(s, _actor(), "web.owner.reset", tenant, {})
    if not existed:
        print(f"tenant {tenant!r} has no web app login; the bridge prints a setup link when it starts")
        return 0
    print(f"removed the web app login of tenant {tenant!r} and signed out its sessions")
    print("restart the bridge: it prints a new one-time setup link to create the login again")
    return 0


# --- parser -----------------------------------------------------------------------------------------------


def register(sub: Any) -> None:
    """Add ``tokens``, ``audit`` and ``web`` to the subcommands (``sub`` from add_subparsers)."""
    tokens = sub.add_parser("tokens", help="API tokens for Msgr users (stored hashed, scoped, expiring)")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="COMMAND")

    create = tokens_sub.add_parser("create", help="issue a token; it is printed once")
    create.add_argument("--name", required=True, help="what the token is for (shown in `tokens list`)")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        help="ACTION[:ACCOUNT], repeatable: read, send, edit, delete, react, admin; ACCOUNT is an "
        "account id or * (default), e.g. --scope send:acct-1 --scope read",
    )
    create.add_argument(
        "--ttl", type=parse_ttl, default=None, help="lifetime: 30d, 12h, 90m, 2w (default: none)"
    )
    create.add_argument("--user", default=None, help="the Msgr user the token acts for")
    create.add_argument("--tenant", default=None, help="the tenant (default [bridge] tenant)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=cmd_tokens_create)

    lst = tokens_sub.add_parser("list", help="list tokens (never their secrets)")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--active", action="store_true", help="only tokens neither expired nor revoked")
    lst.add_argument("--tenant", default=None, help="the tenant (default [bridge] tenant)")
    lst.add_argument("--all-tenants", action="store_true", help="every tenant's tokens")
    lst.set_defaults(handler=cmd_tokens_list)

    revoke = tokens_sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", help="the token id (tok_..., see `tokens list`)")
    revoke.set_defaults(handler=cmd_tokens_revoke)

    audit = sub.add_parser("audit", help="the tamper-evident audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = audit_sub.add_parser(
        "verify", help="walk the hash chain; report the first broken link (exit 1) or the head (exit 0)"
    )
    verify.add_argument("--anchor", default=None, help="a head recorded earlier: SEQ:HASH or HASH")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=cmd_audit_verify)

    web = sub.add_parser("web", help="the web app's owner login")
    web_sub = web.add_subparsers(dest="web_command", required=True, metavar="COMMAND")
    reset = web_sub.add_parser(
        "reset-login", help="forget the owner's login (lost password); the next start prints a setup link"
    )
    reset.add_argument("--tenant", default=None, help="the tenant (default [bridge] tenant)")
    reset.set_defaults(handler=cmd_web_reset_login)


__all__ = ["parse_anchor", "parse_ttl", "register"]
