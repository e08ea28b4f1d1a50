"""Column types shared by the models, portable between SQLite and PostgreSQL.

``UTCDateTime`` stores every timestamp in UTC: a ``timestamptz`` on PostgreSQL, an ISO text on SQLite
(which sorts correctly because every value is UTC). Naive datetimes are refused: a timestamp without a
timezone is ambiguous, and guessing is how bridges end up with messages an hour out of order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer
from sqlalchemy.types import TypeDecorator

_ZERO = timedelta(0)
_SQLITE_FORMAT = "%04d-%02d-%02d %02d:%02d:%02d.%06d"
"""The text of a timestamp in SQLite, as SQLAlchemy's SQLite ``DATETIME`` writes it (and reads it back)."""
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

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, an aware value at UTC (``utcnow()``, a parsed ``Z`` timestamp: two of these per stored
        message) is written straight as the text SQLAlchemy's SQLite ``DATETIME`` writes, in 40 % of the
        instructions; any other value takes ``process_bind_param`` and that type's own processor. Compared
        with them when built: should SQLAlchemy ever write another format, they alone are used."""
        generic = super().bind_processor(dialect)
        if dialect.name != "sqlite" or generic is None:
            return generic

        def process(value: Any) -> Any:
            if type(value) is datetime and (value.tzinfo is UTC or value.utcoffset() == _ZERO):
                v = value
                return _SQLITE_FORMAT % (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)
            return generic(value)

        samples = (datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), datetime(999, 12, 31, tzinfo=UTC))
        return process if all(process(v) == generic(v) for v in samples) else generic

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"the database returned {type(value).__name__} for a timestamp")
        aware: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
