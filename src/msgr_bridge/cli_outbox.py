"""``msgr-bridge outbox list|retry|cancel``: what an operator does with the outbound queue.

* ``outbox list [--state S] [--tenant T] [--limit N] [--json]``: entries, oldest first (dead-lettered ones
  with ``--state dead``), with their attempts and last error;
* ``outbox retry ID``: a failed, dead-lettered, held or cancelled entry is queued again now, with a fresh
  retry budget and the same transaction id (a running bridge picks it up within its poll interval);
* ``outbox cancel ID``: a queued, failed or dead-lettered entry is dropped for good (never one in flight
  or already sent).

The lead wires these into ``cli.py`` with ``cli_outbox.register(subparsers)``. Each command is also a plain
``async`` function over a ``Database`` (``list_entries``, ``retry_entry``, ``cancel_entry``) for the API and
tests. A retry or cancel is recorded as a ``delivery_status`` event and in the audit log (actor
``operator:cli``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from .errors import BridgeError
from .outbound.requests import describe
from .schema import DeliveryState
from .store import audit
from .store.db import Database
from .store.repos.event_log import EventLogRepo, NewEvent
from .store.repos.outbox import OutboxEntry, OutboxRepo, OutboxState

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
ACTOR = "operator:cli"


class OutboxEntryNotFound(BridgeError):
    code = "outbox_entry_not_found"


async def list_entries(
    db: Database, state: str | None = None, *, tenant: str | None = None, limit: int = 100
) -> list[OutboxEntry]:
    if state is not None and state not in {s.value for s in OutboxState}:
        raise BridgeError(
            f"unknown outbox state {state!r}",
            hint="one of: " + ", ".join(s.value for s in OutboxState),
        )
    return await OutboxRepo(db).list(OutboxState(state) if state else None, tenant=tenant, limit=limit)


async def _change(db: Database, outbox_id: str, verb: str, actor: str = ACTOR) -> OutboxEntry:
    repo = OutboxRepo(db)
    async with db.session() as s:
        entry = await repo.get(outbox_id, session=s)
        if entry is None:
            raise OutboxEntryNotFound(
                f"no outbox entry {outbox_id!r}", hint="list entries with `msgr-bridge outbox list`"
            )
        changed = (
            await repo.requeue(outbox_id, session=s)
            if verb == "retry"
            else await repo.cancel(outbox_id, session=s)
        )
        if changed is None:
            allowed = "failed, dead or cancelled" if verb == "retry" else "queued, failed or dead"
            raise BridgeError(
                f"outbox entry {outbox_id} is {entry.state.value}; only {allowed} entries can be {verb}ed",
                hint="an entry in flight or already sent cannot be changed",
            )
        state = DeliveryState.QUEUED if verb == "retry" else DeliveryState.FAILED
        payload = {
            "kind": "delivery_status",
            "outbox_id": changed.id,
            "account_id": changed.account_id,
            "conversation_id": changed.conversation_id,
            "state": state.value,
            "reason": "cancelled by an operator" if verb == "cancel" else "retried by an operator",
        }
        await EventLogRepo(db).append_many(
            s,
            [
                NewEvent(
                    changed.tenant, changed.account_id, changed.conversation_id, "delivery_status", payload
                )
            ],
        )
        await audit.append(s, actor, f"outbox.{verb}", f"outbox:{outbox_id}", {"from": entry.state.value})
    return changed


async def retry_entry(db: Database, outbox_id: str, *, actor: str = ACTOR) -> OutboxEntry:
    return await _change(db, outbox_id, "retry", actor)


async def cancel_entry(db: Database, outbox_id: str, *, actor: str = ACTOR) -> OutboxEntry:
    return await _change(db, outbox_id, "cancel", actor)


def _line(e: OutboxEntry) -> str:
    error = f"  {e.last_error}" if e.last_error else ""
    return (
        f"{e.id:<36} {e.state.value:<9} {e.action.value:<9} {e.attempts:>3}  "
        f"{e.account_id} {e.conversation_id}{error}"
    )


async def _with_db(args: argparse.Namespace, fn: Callable[[Database], Coroutine[Any, Any, int]]) -> int:
    from .cli import _settings

    settings = _settings(args)
    db = Database(settings.database.url)
    await db.connect()
    try:
        await db.check_schema()
        return await fn(db)
    finally:
        await db.close()


async def cmd_list(args: argparse.Namespace) -> int:
    async def run(db: Database) -> int:
        entries = await list_entries(db, args.state, tenant=args.tenant, limit=args.limit)
        if args.json:
            print(json.dumps([describe(e) for e in entries], indent=2, sort_keys=True))
        else:
            for e in entries:
                print(_line(e))
            if not entries:
                print(
                    "no outbox entries" + (f" in state {args.state}" if args.state else ""), file=sys.stderr
                )
        return 0

    return await _with_db(args, run)


async def cmd_retry(args: argparse.Namespace) -> int:
    async def run(db: Database) -> int:
        print(_line(await retry_entry(db, args.id)))
        return 0

    return await _with_db(args, run)


async def cmd_cancel(args: argparse.Namespace) -> int:
    async def run(db: Database) -> int:
        print(_line(await cancel_entry(db, args.id)))
        return 0

    return await _with_db(args, run)


def register(subparsers: Any) -> None:
    """Add ``outbox list|retry|cancel`` to the ``msgr-bridge`` parser's subcommands."""
    outbox = subparsers.add_parser("outbox", help="the outbound queue: list, retry or cancel entries")
    sub = outbox.add_subparsers(dest="outbox_command", required=True, metavar="COMMAND")
    ls = sub.add_parser("list", help="list outbox entries, oldest first")
    ls.add_argument("--state", choices=[s.value for s in OutboxState], default=None)
    ls.add_argument("--tenant", default=None)
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_list)
    retry = sub.add_parser("retry", help="queue a failed, dead-lettered or cancelled entry again now")
    retry.add_argument("id")
    retry.set_defaults(handler=cmd_retry)
    cancel = sub.add_parser("cancel", help="cancel a queued, failed or dead-lettered entry")
    cancel.add_argument("id")
    cancel.set_defaults(handler=cmd_cancel)
