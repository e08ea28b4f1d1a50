"""The remembered ids and reaction sets on the database state store, SQLite and PostgreSQL: bounded,
kept across a restart (a new ``Database`` on the same database), and ids from the wire of any length
(PostgreSQL refuses index entries of more than about 2.7 KB, so long ids are stored under a hash)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from msgr_bridge_xmpp.memory import Known, MessageMemory

from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import AccountRepo
from msgr_bridge.store.repos.connector_state import AccountState
from msgr_bridge.testing import servers

ROOM, BOB = "room@conf.example.org", "room@conf.example.org/bob"


@pytest.fixture(scope="module")
def pg_admin_url() -> Iterator[str]:
    with servers.postgres_admin_url() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.db'}"
        return
    admin: str = request.getfixturevalue("pg_admin_url")
    name = servers.unique_name("msgr_xmpp")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def test_the_memory_on_the_database_is_bounded_and_survives_a_restart(db_url: str) -> None:
    async with Database(db_url) as db:
        await db.migrate()
        await AccountRepo(db).create(Account(id="acct-x", network="xmpp", remote_user_id="me@example.org"))
        memory = MessageMemory(AccountState(db, "acct-x", "xmpp"), limit=5, reaction_sets=3)
        huge = os.urandom(5_000).hex()  # any id a sender chose (random: not compressible)
        await memory.remember(ROOM, huge, BOB, "s-huge", "occ-bob")
        for i in range(8):
            await memory.remember(ROOM, f"m{i}", BOB, f"s{i}")
            await memory.change_reactions((ROOM, f"m{i}", BOB), lambda _old, i=i: [f"e{i}"])
        assert await memory.messages.size() == 5 and await memory.reactions.size() == 3
        assert await memory.messages.dropped() == 4
    async with Database(db_url) as db:  # a restart
        again = MessageMemory(AccountState(db, "acct-x", "xmpp"), limit=5, reaction_sets=3)
        assert await again.original(ROOM, "s7") == Known(BOB, "s7")
        assert await again.known(ROOM, "m0") is None  # dropped: the least recently used
        assert await again.change_reactions((ROOM, "m7", BOB), lambda old: old or []) == (["e7"], ["e7"])
        await again.remember(ROOM, huge, BOB, "s-huge", "occ-bob")
        assert await again.original(ROOM, "s-huge") == Known(BOB, "s-huge", "occ-bob")
