"""Core statements compiled once, for transactions that run whole on a SQLite writer's thread.

SQLAlchemy still writes the SQL and converts the values (its own compiler and each column type's
``bind_processor``: timestamps in the format its SQLite dialect reads back, JSON through the engine's
serializer), so rows written here read back through the ORM exactly like rows it wrote. What is skipped is
the per-statement execution machinery (sessions, cache lookups, result objects), which cost more than
SQLite itself for the one-message transactions of everyday chat.

``CompiledStatement(stmt, dialect, keys)`` compiles ``stmt`` for positional parameters; ``params(values)``
turns a mapping of ``keys`` into the tuple ``sqlite3`` takes. Only plain bound values are supported: an
``IN`` list (an expanding parameter) is refused when compiling, where a test sees it. Result rows are the
driver's tuples: select only columns that need no conversion (integers, text).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

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

    def params(self, values: Mapping[str, Any] = {}) -> tuple[Any, ...]:
        return tuple(
            value if (value := values[key] if key else fixed) is None or convert is None else convert(value)
            for key, fixed, convert in self._binds
        )

    def execute(self, conn: sqlite3.Connection, values: Mapping[str, Any] = {}) -> list[Any]:
        """Run on ``conn`` (on its own thread); the rows, as tuples."""
        return conn.execute(self.sql, self.params(values)).fetchall()

    def insert(self, conn: sqlite3.Connection, values: Mapping[str, Any]) -> int | None:
        """Run an ``INSERT`` of one row on ``conn``; the new row's rowid, or None when none was inserted
        (``ON CONFLICT DO NOTHING``). Cheaper than ``RETURNING``, which SQLite gathers in a temporary
        table first."""
        cursor = conn.execute(self.sql, self.params(values))
        return cursor.lastrowid if cursor.rowcount == 1 else None
