"""The tamper-evident audit log: append-only rows, each chained to the one before by SHA-256.

Written for account link and unlink, credential reads, token create and revoke, every impersonated send,
edit and delete, policy decisions and config changes. Each row stores ``prev_hash`` (the previous row's
hash, ``None`` for the first) and ``hash``::

    hash = sha256(prev_hash + canonical_json({"at", "actor", "action", "target", "details"}))

where canonical JSON has sorted keys, no whitespace, UTF-8, and timestamps in ISO-8601 UTC with
microseconds. ``seq`` (the storage order) is deliberately not hashed: the order is proven by the links.

The database refuses UPDATE and DELETE on ``audit_log`` (migration 0002's triggers); the chain shows any
change made around them. ``verify`` (``msgr-bridge audit verify``) walks the chain and reports the first
broken link and whether a row was changed, removed or inserted. Someone who can write the database could
rebuild the whole chain after the last row; keep the head hash (``head()``) somewhere else now and then and
pass it to ``verify(anchor=...)`` to rule that out.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, Literal, cast

from sqlalchemy import Select, Table, bindparam, insert, select, text
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import BridgeError
from .compiled import CompiledStatement
from .models import AuditLog
from .types import utcnow

Problem = Literal["changed", "removed", "inserted", "anchor_mismatch"]
_PG_LOCK_KEY = 0x6D62_6175_6469_74  # "mbaudit": serialises appends on PostgreSQL
_TABLE = cast(Table, AuditLog.__table__)
# Built once, Core only: every impersonated send appends a record.
_LAST_HASH = select(_TABLE.c.hash).order_by(_TABLE.c.seq.desc()).limit(1)
_INSERT = insert(_TABLE).returning(_TABLE.c.seq)
_COLUMNS = ("at", "actor", "action", "target", "details", "prev_hash", "hash")
_INSERT_IF_HEAD = (
    insert(_TABLE)
    .from_select(
        list(_COLUMNS),
        select(*(bindparam(c, type_=_TABLE.c[c].type) for c in _COLUMNS)).where(
            _LAST_HASH.scalar_subquery() == bindparam("b_head", type_=_TABLE.c.hash.type)
        ),
    )
    .returning(_TABLE.c.seq)
)
_last_appended: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class _ThreadStatements:
    """``append_in``'s statements compiled once, for SQLite's writer thread (``store.compiled``)."""

    if_head: CompiledStatement
    insert: CompiledStatement
    last_hash: CompiledStatement


@functools.cache
def _thread_statements(dialect: Dialect) -> _ThreadStatements:
    # _INSERT_IF_HEAD without RETURNING: the new row's rowid is its seq (CompiledStatement.insert)
    if_head = insert(_TABLE).from_select(list(_COLUMNS), cast(Select[Any], _INSERT_IF_HEAD.select))
    return _ThreadStatements(
        CompiledStatement(if_head, dialect, [*_COLUMNS, "b_head"]),
        CompiledStatement(insert(_TABLE), dialect, _COLUMNS),
        CompiledStatement(_LAST_HASH, dialect),
    )


"""Per engine, the hash of the last row this process appended (a guess at the head, checked when used)."""


def _values(
    at: datetime,
    actor: str,
    action: str,
    target: str | None,
    details: dict[str, Any],
    prev_hash: str | None,
    digest: str,
) -> dict[str, Any]:
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "target": target,
        "details": details,
        "prev_hash": prev_hash,
        "hash": digest,
    }


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]
    prev_hash: str | None
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of walking the chain. ``ok`` is False from the first broken link on."""

    ok: bool
    rows_checked: int
    head_seq: int | None = None
    head_hash: str | None = None
    broken_seq: int | None = None
    """The seq of the first row found changed or inserted, or of the first row after a removal."""
    problem: Problem | None = None
    detail: str = ""

    def explain(self) -> str:
        if self.ok:
            return f"audit log intact: {self.rows_checked} rows, head {self.head_hash or '(empty)'}"
        return f"audit log BROKEN at seq {self.broken_seq}: {self.problem}: {self.detail}"


_PLAIN = (str, int, bool, float, type(None))


def _jsonable(value: Any) -> Any:
    # Exact types first: audit details are mostly plain strings in dicts and lists, and every impersonated
    # send passes here.
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): _jsonable(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise BridgeError(
        f"audit details must be JSON values, not {type(value).__name__}",
        hint="pass ids and plain values; never whole objects (and never secrets)",
    )


def iso(when: datetime) -> str:
    """ISO-8601 in UTC with microseconds, the one timestamp form the chain hashes."""
    if when.tzinfo is None:
        raise BridgeError("audit timestamps must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(at: datetime, actor: str, action: str, target: str | None, details: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a row's hashed fields."""
    document = {
        "at": iso(at),
        "actor": actor,
        "action": action,
        "target": target,
        "details": _jsonable(details),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(prev_hash: str | None, body: bytes) -> str:
    return hashlib.sha256((prev_hash or "").encode() + body).hexdigest()


def _own_hash(row: AuditLog) -> str:
    return row_hash(row.prev_hash, canonical(row.at, row.actor, row.action, row.target, row.details or {}))


async def append(
    session: AsyncSession,
    actor: str,
    action: str,
    target: str | None = None,
    details: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one row in the caller's transaction (so the audited change and its record commit together).

    ``actor`` is who acted (``user:alice``, ``token:tok_…``, ``system``), ``action`` a dotted verb
    (``account.link``, ``message.send``, ``policy.deny``), ``target`` what it acted on. ``details`` must be
    JSON values and must never contain a secret.
    """
    if session.new or session.dirty or session.deleted:
        await session.flush()  # rows the caller added before this record are written before it, as ever
    return await session.run_sync(
        lambda sync: append_in(sync.connection(), actor, action, target, details, at=at)
    )


def append_in(
    conn: Connection,
    actor: str,
    action: str,
    target: str | None = None,
    details: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> AuditEntry:
    """``append`` in a synchronous connection's transaction (``Database.transact``)."""
    if not actor or not action:
        raise BridgeError("an audit entry needs an actor and an action")
    clean = _jsonable(dict(details or {}))
    when = (at or utcnow()).astimezone(UTC)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    # SQLite: the transaction is BEGIN IMMEDIATE, so appends are already serialised.
    bind = conn.engine
    driver = conn.connection.driver_connection
    raw = driver if isinstance(driver, sqlite3.Connection) else None
    fast = _thread_statements(conn.dialect) if raw is not None else None
    last = _last_appended.get(bind)
    seq = None
    if last is not None:
        # The hash this process appended last is most likely still the chain's head: one statement inserts
        # the row linked to it, on the condition (checked by the database, under the same lock) that it is
        # the head; the chain is exactly what the read below would give.
        digest = row_hash(last, canonical(when, actor, action, target, clean))
        values = {**_values(when, actor, action, target, clean, last, digest), "b_head": last}
        seq = fast.if_head.insert(raw, values) if fast and raw else conn.scalar(_INSERT_IF_HEAD, values)
    if seq is None:  # another process (or a rolled back transaction) moved the head: read it
        if fast and raw:
            last = next(iter(fast.last_hash.execute(raw)), (None,))[0]
        else:
            last = conn.execute(_LAST_HASH).scalar_one_or_none()
        digest = row_hash(last, canonical(when, actor, action, target, clean))
        values = _values(when, actor, action, target, clean, last, digest)
        seq = fast.insert.insert(raw, values) if fast and raw else conn.scalar(_INSERT, values)
    assert seq is not None
    _last_appended[bind] = digest
    return AuditEntry(int(seq), when, actor, action, target, clean, last, digest)


async def head(session: AsyncSession) -> tuple[int, str] | None:
    """(seq, hash) of the last row: record it elsewhere to verify against later."""
    result = (
        await session.execute(select(AuditLog.seq, AuditLog.hash).order_by(AuditLog.seq.desc()).limit(1))
    ).first()
    return (int(result[0]), str(result[1])) if result else None


async def verify(
    session: AsyncSession, *, anchor: tuple[int, str] | None = None, batch: int = 1000
) -> VerifyReport:
    """Walk the whole chain in order and report the first broken link (see the module docs).

    Classification of a break, with P the previous row and R the row being checked:

    * R's own hash is wrong but R links to P: R was **changed** -- unless the row after R links to P,
      which makes R **inserted**;
    * R's hash is right but R does not link to P: if R links to what P linked to, P was **inserted**;
      if seqs are missing between P and R (or R links to a hash no row has), rows were **removed**;
      otherwise P was **changed** (and its hash recomputed);
    * both wrong: R was **changed**.
    """
    rows_checked = 0
    prev: AuditLog | None = None
    pending: AuditLog | None = None  # a row whose own hash is wrong; the next row decides changed/inserted
    expected: str | None = None  # the hash R must link to
    report: VerifyReport | None = None

    def broken(seq: int, problem: Problem, detail: str) -> VerifyReport:
        return VerifyReport(False, rows_checked, broken_seq=seq, problem=problem, detail=detail)

    stream = await session.stream_scalars(
        select(AuditLog).order_by(AuditLog.seq).execution_options(yield_per=batch)
    )
    async for row in stream:
        rows_checked += 1
        if pending is not None:
            if row.prev_hash == pending.prev_hash and pending.prev_hash == expected:
                report = broken(pending.seq, "inserted", "a row that is not part of the chain was added here")
            else:
                report = broken(pending.seq, "changed", "the row's fields no longer match its hash")
            break
        own_ok = _own_hash(row) == row.hash
        link_ok = row.prev_hash == expected
        if own_ok and link_ok:
            prev, expected = row, row.hash
            continue
        if not own_ok and link_ok:
            pending = row
            continue
        if not own_ok:
            report = broken(row.seq, "changed", "the row's fields and its link no longer match")
            break
        # own hash right, link wrong
        if prev is None:
            report = broken(row.seq, "removed", "the first rows of the chain are missing")
        elif row.prev_hash == prev.prev_hash:
            report = broken(prev.seq, "inserted", "a row that is not part of the chain was added here")
        elif row.seq != prev.seq + 1:
            report = broken(row.seq, "removed", f"rows between seq {prev.seq} and {row.seq} were removed")
        else:
            report = broken(prev.seq, "changed", "the row was changed and its hash recomputed")
        break
    else:
        if pending is not None:
            report = broken(pending.seq, "changed", "the row's fields no longer match its hash")
    await stream.close()
    if report is not None:
        return report
    last = prev
    if anchor is not None:
        seq, digest = anchor
        found = (await session.execute(select(AuditLog.hash).where(AuditLog.seq == seq))).scalar_one_or_none()
        if found != digest:
            what = "is missing" if found is None else "has another hash"
            return VerifyReport(
                False,
                rows_checked,
                broken_seq=seq,
                problem="anchor_mismatch",
                detail=f"the anchored row {what}: the chain after it was removed or rebuilt",
            )
    return VerifyReport(
        True, rows_checked, head_seq=last.seq if last else None, head_hash=last.hash if last else None
    )


async def entries(session: AsyncSession, *, after_seq: int = 0, limit: int = 100) -> list[AuditEntry]:
    """Rows after ``after_seq`` in order (for the API and ``msgr-bridge audit list``)."""
    rows = await session.execute(
        select(AuditLog).where(AuditLog.seq > after_seq).order_by(AuditLog.seq).limit(limit)
    )
    return [
        AuditEntry(r.seq, r.at, r.actor, r.action, r.target, dict(r.details or {}), r.prev_hash, r.hash)
        for r in rows.scalars()
    ]
