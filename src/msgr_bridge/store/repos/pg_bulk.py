"""PostgreSQL bulk inserts with one array parameter per column: ``INSERT .. SELECT * FROM unnest(..)``.

A multi-row ``VALUES`` list binds every value as its own parameter: for a batch of 512 messages that is
~10,000 parameters for SQLAlchemy to build and convert one by one and for PostgreSQL to parse, plan and
type-check on every execution. Passing each column as one array keeps the statement the same whatever the
batch size (asyncpg prepares it once) and its parameters to one per column. SQLAlchemy still writes the
statement and converts the arrays' items by their column types (timestamps in UTC); JSON columns travel as
their JSON text (the engine's serializer, as the JSON type would write it) and are cast in the statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Table, Text, bindparam, cast, func, select

from ...jsonutil import dumps

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql


def unnest_insert(table: Table, columns: Sequence[str], *, ordered: bool = False) -> postgresql.Insert:
    """``INSERT INTO table (columns) SELECT .. FROM unnest(:column, ..)``: bind it with ``arrays``.
    Add ``ON CONFLICT`` and ``RETURNING`` as with any PostgreSQL insert. ``ordered``: rows are inserted
    in the arrays' order (``WITH ORDINALITY .. ORDER BY``), so a serial key is drawn in that order, which
    is what SQLAlchemy's own ``sort_by_parameter_order`` relies on for PostgreSQL.

    SQLAlchemy's PostgreSQL dialect is imported here, when a statement is first built: a SQLite bridge
    never loads it (~2 MB resident, issue 19)."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.dialects.postgresql import ARRAY

    params = [
        bindparam(name, type_=ARRAY(Text if _is_json(table, name) else table.c[name].type))
        for name in columns
    ]
    unnest = func.unnest(*params)
    rows = unnest.table_valued(*columns, with_ordinality="n") if ordered else unnest.table_valued(*columns)
    derived = rows.render_derived()
    values = select(
        *(cast(derived.c[name], JSON) if _is_json(table, name) else derived.c[name] for name in columns)
    )
    if ordered:
        values = values.order_by(derived.c.n)
    return postgresql.insert(table).from_select(list(columns), values)


def arrays(table: Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The parameters of ``unnest_insert(table, columns)`` for ``rows``: one list per column, in row order."""
    out: dict[str, list[Any]] = {}
    for name in columns:
        if _is_json(table, name):
            out[name] = [None if (v := row[name]) is None else dumps(v) for row in rows]
        else:
            out[name] = [row[name] for row in rows]
    return out


def _is_json(table: Table, name: str) -> bool:
    return isinstance(table.c[name].type, JSON)
