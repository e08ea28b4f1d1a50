"""UTCDateTime on SQLite: the shortcut for values already at UTC writes exactly what the checked path
writes, refuses what it refuses, and reads back the same instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter
from sqlalchemy import create_engine
from sqlalchemy.types import TypeDecorator

from msgr_bridge.store.db import Database
from msgr_bridge.store.models import Tenant
from msgr_bridge.store.types import UTCDateTime

LONDON = ZoneInfo("Europe/London")
VALUES = [
    datetime(2026, 12, 7, 18, 30, 0, 123456, tzinfo=UTC),
    datetime(2026, 12, 7, 18, 30, tzinfo=UTC),  # no microseconds: still written with six zeros
    datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # a year of three digits
    TypeAdapter(datetime).validate_json('"2026-12-07T18:30:00.5Z"'),  # pydantic's own UTC tzinfo
    datetime(2026, 1, 5, 9, 0, tzinfo=LONDON),  # a zone at UTC in winter
    datetime(2026, 7, 5, 9, 0, tzinfo=LONDON),  # and an hour ahead in summer
    datetime(2026, 12, 7, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),  # the next day in UTC
]


def processors() -> tuple[object, object]:
    dialect = create_engine("sqlite://").dialect
    utc = UTCDateTime().dialect_impl(dialect)
    return utc.bind_processor(dialect), TypeDecorator.bind_processor(utc, dialect)


@pytest.mark.parametrize("value", VALUES, ids=str)
def test_sqlite_text_of_a_timestamp_is_the_checked_paths(value: datetime) -> None:
    fast, checked = processors()
    assert fast(value) == checked(value)  # type: ignore[operator]


def test_what_the_checked_path_refuses_is_still_refused() -> None:
    fast, _ = processors()
    with pytest.raises(ValueError, match="naive datetime"):
        fast(datetime(2026, 1, 1))  # type: ignore[operator]
    with pytest.raises(TypeError, match="expected a datetime"):
        fast("2026-01-01")  # type: ignore[operator]
    assert fast(None) is None  # type: ignore[operator]


async def test_timestamps_read_back_as_the_same_instant(db: Database) -> None:
    async with db.session() as s:
        s.add_all(Tenant(id=f"t{i}", created_at=value) for i, value in enumerate(VALUES))
    async with db.session() as s:
        for i, value in enumerate(VALUES):
            got = await s.get_one(Tenant, f"t{i}")
            assert got.created_at == value and got.created_at.tzinfo == UTC
