"""Column types shared by the models, portable between SQLite and PostgreSQL.

``UTCDateTime`` stores every timestamp in UTC: a ``timestamptz`` on PostgreSQL, an ISO text on SQLite
(which sorts correctly because every value is UTC). Naive datetimes are refused: a timestamp without a
timezone is ambiguous, and guessing is how bridges end up with messages an hour out of order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer
from sqlalchemy.types import TypeDecorator

BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit autoincrementing key on PostgreSQL; SQLite only autoincrements an ``INTEGER PRIMARY KEY``."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, stored in UTC, always returned aware (``tzinfo=UTC``)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} refused: pass a timezone-aware value "
                "(datetime.now(UTC), or .replace(tzinfo=UTC) when you know it is UTC)"
            )
        utc: datetime = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"the database returned {type(value).__name__} for a timestamp")
        aware: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
