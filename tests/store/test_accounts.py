"""AccountRepo: create, read, list, state, settings, delete."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from msgr_bridge.errors import DatabaseError
from msgr_bridge.schema import Account, Capabilities, ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import AccountRepo


async def test_accounts_round_trip(db: Database) -> None:
    repo = AccountRepo(db)
    await repo.ensure_user("acme", "u1", name="Ursula")
    created = await repo.create(
        Account(id="x1", tenant="acme", network="xmpp", remote_user_id="u@example.org", display_name="U"),
        user_id="u1",
        settings={"server": "example.org"},
        capabilities=Capabilities(edits=True, max_text_length=4000),
    )
    assert created.settings == {"server": "example.org"} and created.capabilities["edits"] is True
    got = await repo.get("x1")
    assert got is not None and got.user_id == "u1"
    assert got.to_schema() == Account(
        id="x1", tenant="acme", network="xmpp", remote_user_id="u@example.org", display_name="U"
    )
    assert await repo.get("nope") is None


async def test_a_taken_account_id_is_refused(db: Database) -> None:
    repo = AccountRepo(db)
    await repo.create(Account(id="x1", network="irc", remote_user_id="nick"))
    with pytest.raises(DatabaseError, match="already exists"):
        await repo.create(Account(id="x1", network="irc", remote_user_id="nick2"))


async def test_list_state_settings_and_delete(db: Database) -> None:
    repo = AccountRepo(db)
    await repo.create(Account(id="a", tenant="t1", network="irc", remote_user_id="n1"))
    await repo.create(Account(id="b", tenant="t2", network="irc", remote_user_id="n2"))
    await repo.create(Account(id="c", tenant="t1", network="matrix", remote_user_id="@n:hs"))
    assert [a.id for a in await repo.list()] == ["a", "c", "b"]
    assert [a.id for a in await repo.list("t1", network="matrix")] == ["c"]

    assert await repo.set_state("a", ConnectionState.BAD_CREDENTIALS, "password refused")
    assert not await repo.set_state("zzz", ConnectionState.CONNECTED)
    got = await repo.get("a")
    assert got is not None and got.state is ConnectionState.BAD_CREDENTIALS
    assert got.state_reason == "password refused"

    await repo.update_settings("a", {"nick": "n1", "channels": ["#a"]})
    merged = await repo.update_settings("a", {"channels": ["#b"]})
    assert merged is not None and merged.settings == {"nick": "n1", "channels": ["#b"]}
    replaced = await repo.update_settings("a", {"only": 1}, merge=False)
    assert replaced is not None and replaced.settings == {"only": 1}
    assert await repo.update_settings("zzz", {}) is None

    expiry = datetime(2027, 1, 1, tzinfo=UTC)
    assert await repo.set_credentials_expiry("a", expiry)
    got = await repo.get("a")
    assert got is not None and got.credentials_expire_at == expiry

    assert await repo.delete("a")
    assert [a.id for a in await repo.list("t1")] == ["c"]
