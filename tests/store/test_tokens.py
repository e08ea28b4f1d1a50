"""API tokens on a migrated SQLite database: shown once, stored hashed, scoped, expiring, revocable."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from msgr_bridge.errors import BridgeError, TokenExpired, TokenRejected, TokenRevoked, TokenUnknown
from msgr_bridge.store.db import Database
from msgr_bridge.store.tokens import Action, InvalidScope, Scope, TokenStore


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/bridge.db")
    await database.connect()
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tokens(db: Database, clock: FakeClock) -> TokenStore:
    return TokenStore(db, clock=clock)


async def test_token_is_shown_once_and_stored_hashed(tokens: TokenStore, db: Database) -> None:
    new = await tokens.create(tenant="t1", name="ci", scopes=["read:*"])
    assert new.token.startswith("mb_") and len(new.token) > 40
    assert new.token not in repr(new)
    async with db.session() as s:
        rows = (await s.execute(text("SELECT * FROM api_tokens"))).mappings().all()
    assert len(rows) == 1
    dump = repr([dict(r) for r in rows])
    assert new.token not in dump and new.token[3:] not in dump
    assert rows[0]["token_hash"] == hashlib.sha256(new.token.encode()).hexdigest()

    info = await tokens.authenticate(new.token)
    assert info.id == new.info.id and info.tenant == "t1" and info.name == "ci"


async def test_two_tokens_differ(tokens: TokenStore) -> None:
    a = await tokens.create(tenant="t1", name="a", scopes=["read"])
    b = await tokens.create(tenant="t1", name="b", scopes=["read"])
    assert a.token != b.token
    assert (await tokens.authenticate(b.token)).name == "b"


@pytest.mark.parametrize("bad", ["", "mb_", "mb_not-a-real-token", "Bearer xyz", "x" * 500])
async def test_unknown_tokens_are_refused(tokens: TokenStore, bad: str) -> None:
    await tokens.create(tenant="t1", name="real", scopes=["read"])
    with pytest.raises(TokenUnknown):
        await tokens.authenticate(bad)


async def test_expired_token_is_refused_as_expired(tokens: TokenStore, clock: FakeClock) -> None:
    new = await tokens.create(tenant="t1", name="short", scopes=["send:acct-1"], ttl=timedelta(hours=1))
    assert new.info.expires_at == clock.now + timedelta(hours=1)
    clock.now += timedelta(minutes=59)
    await tokens.authenticate(new.token)
    clock.now += timedelta(minutes=1)
    with pytest.raises(TokenExpired, match="expired at"):
        await tokens.authenticate(new.token)
    assert (await tokens.get(new.info.id)).status(clock.now) == "expired"


async def test_revoked_token_is_refused_as_revoked(tokens: TokenStore, clock: FakeClock) -> None:
    new = await tokens.create(tenant="t1", name="leaked", scopes=["admin"])
    revoked = await tokens.revoke(new.info.id)
    assert revoked.revoked_at == clock.now
    with pytest.raises(TokenRevoked, match="was revoked"):
        await tokens.authenticate(new.token)
    clock.now += timedelta(days=1)
    assert (await tokens.revoke(new.info.id)).revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(TokenUnknown):
        await tokens.revoke("tok_missing")


async def test_the_three_refusals_are_distinct_errors() -> None:
    assert len({TokenUnknown, TokenExpired, TokenRevoked}) == 3
    assert all(issubclass(e, TokenRejected) for e in (TokenUnknown, TokenExpired, TokenRevoked))
    assert len({TokenUnknown.code, TokenExpired.code, TokenRevoked.code}) == 3


async def test_scopes_per_account_and_action(tokens: TokenStore) -> None:
    new = await tokens.create(
        tenant="t1",
        name="bot",
        scopes=["read:*", {"action": "send", "account": "acct-1"}, Scope(Action.REACT, "acct-2")],
    )
    info = await tokens.authenticate(new.token)
    assert info.allows("read", "acct-9")
    assert info.allows(Action.SEND, "acct-1")
    assert not info.allows("send", "acct-2")
    assert info.allows("react", "acct-2")
    assert not info.allows("react", "acct-1")
    assert not info.allows("delete", "acct-1")
    assert not info.allows("admin", None)
    assert not info.allows("send", None)


async def test_admin_implies_every_action_on_its_accounts(tokens: TokenStore) -> None:
    acct = await tokens.authenticate(
        (await tokens.create(tenant="t", name="a", scopes=["admin:acct-1"])).token
    )
    assert all(acct.allows(a, "acct-1") for a in Action)
    assert not acct.allows("read", "acct-2")
    root = await tokens.authenticate((await tokens.create(tenant="t", name="r", scopes=["admin:*"])).token)
    assert all(root.allows(a, "anything") for a in Action) and root.allows("admin", None)


@pytest.mark.parametrize("bad", ["write:*", "", "send:has space", {"action": "nope"}, 42])
async def test_bad_scopes_are_refused(tokens: TokenStore, bad: object) -> None:
    with pytest.raises(InvalidScope):
        await tokens.create(tenant="t1", name="x", scopes=[bad])  # type: ignore[list-item]


async def test_bad_expiry_is_refused(tokens: TokenStore, clock: FakeClock) -> None:
    with pytest.raises(InvalidScope):
        await tokens.create(tenant="t1", name="x", scopes=[])
    with pytest.raises(BridgeError, match="in the future"):
        await tokens.create(tenant="t1", name="x", scopes=["read"], expires_at=clock.now)
    with pytest.raises(BridgeError, match="time zone"):
        await tokens.create(tenant="t1", name="x", scopes=["read"], expires_at=datetime(2031, 1, 1))
    with pytest.raises(BridgeError, match="not both"):
        await tokens.create(
            tenant="t1", name="x", scopes=["read"], ttl=timedelta(1), expires_at=clock.now + timedelta(2)
        )


async def test_list_by_tenant_and_status(tokens: TokenStore, clock: FakeClock) -> None:
    a = await tokens.create(tenant="t1", name="a", scopes=["read"])
    clock.now += timedelta(seconds=1)
    b = await tokens.create(tenant="t1", name="b", scopes=["read"], ttl=timedelta(minutes=5))
    clock.now += timedelta(seconds=1)
    c = await tokens.create(tenant="t1", name="c", scopes=["read"])
    await tokens.create(tenant="t2", name="other", scopes=["read"])
    await tokens.revoke(c.info.id)
    clock.now += timedelta(minutes=10)
    listed = await tokens.list(tenant="t1")
    assert [(i.name, i.status(clock.now)) for i in listed] == [
        ("a", "active"),
        ("b", "expired"),
        ("c", "revoked"),
    ]
    assert [i.id for i in await tokens.list(tenant="t1", include_inactive=False)] == [a.info.id]
    assert b.info.id != a.info.id
    assert len(await tokens.list()) == 4


async def test_last_used_is_recorded_coarsely(tokens: TokenStore, clock: FakeClock) -> None:
    new = await tokens.create(tenant="t1", name="a", scopes=["read"])
    first = clock.now
    await tokens.authenticate(new.token)
    clock.now += timedelta(seconds=10)
    await tokens.authenticate(new.token)
    assert (await tokens.get(new.info.id)).last_used_at == first
    clock.now += timedelta(minutes=2)
    await tokens.authenticate(new.token)
    assert (await tokens.get(new.info.id)).last_used_at == clock.now
