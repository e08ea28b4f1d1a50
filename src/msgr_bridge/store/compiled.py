"""Core statements compiled once, for transactions that run whole on a SQLite writer's thread.

SQLAlchemy still writes the SQL and converts the values (its own compiler and each column type's
``bind_processor``: timestamps in the format its SQLite dialect reads back, JSON through the engine's
serializer), so rows written here read back through the ORM exactly like rows it wrote. What is skipped is
the per-statement execution machinery (sessions, cache lookups, result objects), which cost more than
SQLite itself for the one-message transactions of everyday chat.

``CompiledStatement(stmt, dialect, keys)`` compiles ``stmt`` for positional parameters; ``params(values)``
turns a mapping of ``keys`` into the parameters ``sqlite3`` takes. Only plain bound values are supported: an
``IN`` list (an expanding parameter) is refused when compiling, where a test sees it. Result rows are the
driver's tuples: select only columns that need no conversion (integers, text).

``PreparedQuery(stmt)`` is for the other statements of a transaction body: any Core statement built once,
IN lists and typed result rows included. On SQLite's writer connection it is laid out once per set of IN
list lengths and its rows are converted by the columns' types; elsewhere it is ``conn.execute``. A lone
send's delivery (claim, its checks, the wire marker, marking it sent: seven statements) went through
SQLAlchemy's execution machinery at ~0.1 ms a statement before (issue 19).

``CompiledRowsInsert`` writes many rows with one multi-row ``INSERT`` per chunk (up to ``max_rows``),
``RETURNING`` what the caller needs to tell the inserted rows apart.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert

from ..errors import DatabaseError

_Bind = tuple[str, Any, Callable[[Any], Any] | None]
"""(key in the caller's values, or "" for a value fixed in the statement; that value; its converter)."""


class CompiledStatement:
    def __init__(self, stmt: ClauseElement, dialect: Dialect, keys: Sequence[str] = ()) -> None:
        compiled = cast(SQLCompiler, stmt.compile(dialect=dialect, column_keys=list(keys) or None))
        if not compiled.positional or compiled.positiontup is None:
            raise DatabaseError(
                f"{dialect.name} does not take positional parameters",
                hint="CompiledStatement is for SQLite",
            )
        self.sql = compiled.string
        wanted = set(keys)
        defaulted = {c.key for c in [*compiled.insert_prefetch, *compiled.update_prefetch]}
        binds: list[_Bind] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            if bind.expanding:
                raise DatabaseError(f"parameter {name!r} is an IN list", hint="bind one value per parameter")
            convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if name in wanted:
                binds.append((name, None, convert))
            elif name in defaulted or bind.callable is not None:
                raise DatabaseError(
                    f"column {name!r} of {self.sql!r} has no value",
                    hint="name every column the statement writes in keys (defaults are not applied here)",
                )
            else:  # a value written into the statement itself
                binds.append(("", bind.effective_value, convert))
        self._binds = tuple(binds)
        self.keys = tuple(key for key, _, _ in binds)
        """The caller's keys in the order of the statement's parameters ("" for a value fixed in it)."""
        # Every value from the caller (the inserts of each message): fetched in one call, then only the
        # few that need it converted.
        self._get = itemgetter(*self.keys) if len(self.keys) > 1 and "" not in self.keys else None
        self._converts = tuple((i, convert) for i, (_, _, convert) in enumerate(binds) if convert is not None)

    def params(self, values: Mapping[str, Any] = {}) -> list[Any]:
        if self._get is None:
            return [
                value
                if (value := values[key] if key else fixed) is None or convert is None
                else convert(value)
                for key, fixed, convert in self._binds
            ]
        got = list(self._get(values))
        for i, convert in self._converts:
            if (value := got[i]) is not None:
                got[i] = convert(value)
        return got

    def execute(self, conn: sqlite3.Connection, values: Mapping[str, Any] = {}) -> list[Any]:
        """Run on ``conn`` (on its own thread); the rows, as tuples."""
        return conn.execute(self.sql, self.params(values)).fetchall()

    def insert(self, conn: sqlite3.Connection, values: Mapping[str, Any]) -> int | None:
        """Run an ``INSERT`` of one row on ``conn``; the new row's rowid, or None when none was inserted
        (``ON CONFLICT DO NOTHING``). Cheaper than ``RETURNING``, which SQLite gathers in a temporary
        table first."""
        cursor = conn.execute(self.sql, self.params(values))
        return cursor.lastrowid if cursor.rowcount == 1 else None


class _Slot:
    """A caller's value in a statement being laid out: ``key`` in its parameters, ``index`` in an IN list."""

    __slots__ = ("index", "key")

    def __init__(self, key: str, index: int | None) -> None:
        self.key, self.index = key, index


_Param = tuple[str, int | None, Any, Callable[[Any], Any] | None]
"""(caller's key or "" for a fixed value, index in its IN list or None, fixed value, converter)."""


class _Layout:
    """One statement's SQL for one set of IN-list lengths, and how to fill and read it."""

    __slots__ = ("params", "row", "row_processors", "sql")

    def __init__(self, sql: str, params: tuple[_Param, ...], row: Any, row_processors: Any) -> None:
        self.sql, self.params, self.row, self.row_processors = sql, params, row, row_processors


class PreparedQuery:
    """A Core statement built once (module level: every value a ``bindparam`` or fixed in it) and run in a
    ``Database.transact`` body.

    On SQLite's writer connection (a raw ``sqlite3`` connection) it runs without SQLAlchemy's
    per-execution machinery: laid out once per dialect and set of IN-list lengths (``MAX_LAYOUTS`` at
    most; others, and empty IN lists, go through ``conn.execute``), values converted by the bind types,
    result rows by the columns' types, into named tuples. Anywhere else (PostgreSQL, a session's
    connection) it is ``conn.execute``. Either way the rows read the same: by attribute, by position.
    """

    MAX_LAYOUTS = 32

    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt = stmt
        self._compiled: dict[Dialect, tuple[SQLCompiler, tuple[str, ...]]] = {}
        """Per dialect: the statement compiled, and the names of its IN lists (expanding parameters)."""
        self._layouts: dict[tuple[Dialect, tuple[int, ...]], _Layout] = {}

    def rows(self, conn: Any, params: Mapping[str, Any] = {}) -> list[Any]:
        """The result rows (none for a statement without ``RETURNING``)."""
        raw = conn.connection.driver_connection
        layout = self._layout(conn.dialect, params) if isinstance(raw, sqlite3.Connection) else None
        if layout is None:
            result = conn.execute(self.stmt, dict(params))
            return list(result.all()) if result.returns_rows else []
        values = tuple(
            value if (value := fixed if not key else params[key] if index is None else params[key][index])
            is None or convert is None else convert(value)
            for key, index, fixed, convert in layout.params
        )  # fmt: skip
        cursor = raw.execute(layout.sql, values)
        if layout.row is None:
            return []
        make, processors = layout.row, layout.row_processors
        return [
            make(*(v if p is None or v is None else p(v) for v, p in zip(row, processors, strict=True)))
            for row in cursor.fetchall()
        ]

    def scalars(self, conn: Any, params: Mapping[str, Any] = {}) -> list[Any]:
        """The first column of each result row."""
        return [row[0] for row in self.rows(conn, params)]

    def _layout(self, dialect: Dialect, params: Mapping[str, Any]) -> _Layout | None:
        known = self._compiled.get(dialect)
        if known is None:
            if len(self._compiled) >= 4:  # dialects come and go with engines (tests): keep the newest
                self._compiled.clear()
                self._layouts.clear()
            compiled = cast(SQLCompiler, self.stmt.compile(dialect=dialect))
            if not compiled.positional:
                raise DatabaseError(
                    f"{dialect.name} does not take positional parameters",
                    hint="PreparedQuery runs statements itself on SQLite only",
                )
            lists = tuple(name for name, bind in compiled.binds.items() if bind.expanding)
            known = self._compiled[dialect] = (compiled, lists)
        compiled, lists = known
        expanding = [name for name in lists if name in params]  # the caller's; the rest are fixed
        lengths = tuple(len(params[name]) for name in expanding)
        key = (dialect, lengths)
        if (layout := self._layouts.get(key)) is not None:
            return layout
        if 0 in lengths or len(self._layouts) >= self.MAX_LAYOUTS:
            return None  # SQLAlchemy writes an empty IN list its own way; beyond the bound, no more layouts
        layout = self._layouts[key] = _lay_out(compiled, dialect, params, set(expanding))
        return layout


def _lay_out(
    compiled: SQLCompiler, dialect: Dialect, params: Mapping[str, Any], expanding: set[str]
) -> _Layout:
    if compiled.literal_execute_params:
        raise DatabaseError(
            f"{compiled.string!r} writes a parameter into its SQL", hint="run it with conn.execute"
        )
    missing = [n for n, b in compiled.binds.items() if b.required and n not in params]
    if missing:
        raise DatabaseError(f"no value for {missing} in {compiled.string!r}", hint="pass every bindparam")
    slots: dict[str, Any] = {}
    for name in params:
        if name in expanding:
            slots[name] = [_Slot(name, i) for i in range(len(params[name]))]
        elif name in compiled.binds:
            slots[name] = _Slot(name, None)
    # SQLAlchemy's own expansion of the IN lists, once, with slots for the caller's values.
    constructed = compiled.construct_params(slots, _check=False)
    expanded = compiled._process_parameters_for_postcompile(constructed)
    out: list[_Param] = []
    for name in expanded.positiontup or ():
        bind = compiled.binds.get(name)
        if bind is None:  # an IN list's item: "<list's name>_<n>"
            bind = compiled.binds[name.rsplit("_", 1)[0]]
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        value = expanded.parameters[name]
        if isinstance(value, _Slot):
            out.append((value.key, value.index, None, convert))
        elif bind.callable is not None or name in {c.key for c in compiled.insert_prefetch}:
            raise DatabaseError(
                f"parameter {name!r} of {compiled.string!r} has no value",
                hint="bind every value the statement needs (defaults are not applied here)",
            )
        else:  # fixed in the statement
            out.append(("", None, value, convert))
    wanted = {(n, i) for n in slots for i in (range(len(params[n])) if n in expanding else (None,))}
    if {(key, index) for key, index, *_ in out if key} != wanted:
        raise DatabaseError(
            f"{compiled.string!r} writes a parameter into its SQL", hint="run it with conn.execute"
        )
    columns = compiled._result_columns
    if not columns:
        return _Layout(expanded.statement, tuple(out), None, ())
    row = namedtuple("Row", [c.keyname for c in columns], rename=True)  # type: ignore[misc]
    processors = tuple(c.type._cached_result_processor(dialect, None) for c in columns)
    return _Layout(expanded.statement, tuple(out), row, processors)


class CompiledRowsInsert:
    """``insert`` (an ``INSERT`` of ``keys``, e.g. with ``ON CONFLICT DO NOTHING``) of many rows, one
    statement per chunk of up to ``max_rows`` rows, each returning ``returning`` for the rows it inserted.

    In a SQLite transaction, an INSERT that fires a trigger (and may fail halfway) opens a statement
    savepoint, and FTS5 (SQLite 3.40 here) writes the words it holds to disk as a new index segment at each
    one: inserting messages one statement each wrote one full-text segment per message, which FTS5 then
    merged again, more than twice the cost of the row itself (``bench/everyday.py``, burst). One statement
    per chunk writes one segment per chunk. Chunks are sized in powers of two, so a handful of statements
    (one per size, compiled on first use and cached by ``sqlite3``) serves any batch. Rows are inserted in
    the order given, so new ids grow in that order; the rows ``RETURNING`` gives back come in no promised
    order.
    """

    def __init__(
        self,
        insert: Insert,
        dialect: Dialect,
        keys: Sequence[str],
        returning: Sequence[ColumnElement[Any]],
        *,
        max_rows: int = 64,
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self._one = CompiledStatement(insert, dialect, keys)
        if "" in self._one.keys:
            raise DatabaseError(
                f"{self._one.sql!r} has a value fixed in the statement", hint="name every value in keys"
            )
        self._insert, self._dialect, self._returning = insert, dialect, tuple(returning)
        self.max_rows = max_rows
        self._sql: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        """The statement for ``rows`` rows, compiled on first use."""
        if (known := self._sql.get(rows)) is not None:
            return known
        names = [[f"{key}__{i}" for key in self._one.keys] for i in range(rows)]
        flat = [name for row in names for name in row]
        values: list[dict[str, Any]] = [
            {key: bindparam(name) for key, name in zip(self._one.keys, row, strict=True)} for row in names
        ]
        many = CompiledStatement(self._insert.values(values).returning(*self._returning), self._dialect, flat)
        if list(many.keys) != flat:  # execute() passes each row's params() one row after another
            raise DatabaseError(
                f"a {rows}-row INSERT does not take its parameters row after row", hint="a SQLAlchemy change?"
            )
        self._sql[rows] = many.sql
        return many.sql

    def execute(self, conn: sqlite3.Connection, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Insert ``rows`` on ``conn`` (on its own thread, in the transaction it is in); the ``returning``
        tuples of the rows inserted."""
        out: list[Any] = []
        start = 0
        while start < len(rows):
            size = min(self.max_rows, 1 << ((len(rows) - start).bit_length() - 1))
            chunk = rows[start : start + size]
            params: list[Any] = []
            for row in chunk:
                params += self._one.params(row)
            out += conn.execute(self.sql(size), params).fetchall()
            start += size
        return out
