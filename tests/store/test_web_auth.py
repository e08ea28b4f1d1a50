"""The web app's sign-in store: one owner per tenant, bounded and expiring sessions, scrypt hashes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from msgr_bridge.store import web_auth
from msgr_bridge.store.db import Database
from msgr_bridge.store.types import utcnow
from msgr_bridge.store.web_auth import WebAuthError, WebAuthStore

PASSWORD = "a fine long password"


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash at a low cost here: these tests are about the store, not the KDF's price."""
    monkeypatch.setattr(web_auth, "SCRYPT_N", 2**10)
    monkeypatch.setattr(web_auth, "_DUMMY_HASH", web_auth.hash_password("x", n=2**10))


async def test_one_owner_per_tenant_and_password_checks(db: Database) -> None:
    store = WebAuthStore(db)
    with pytest.raises(WebAuthError, match="10 to"):
        await store.create_owner("t1", "me", "short")
    await store.create_owner("t1", "me", PASSWORD)
    with pytest.raises(WebAuthError, match="already has an owner"):
        await store.create_owner("t1", "other", PASSWORD)
    owner = await store.owner("t1")
    assert (
        owner is not None
        and PASSWORD not in owner.password_hash
        and owner.password_hash.startswith("scrypt$")
    )
    assert await store.verify("t1", "me", PASSWORD)
    assert not await store.verify("t1", "me", PASSWORD + "!")
    assert not await store.verify("t1", "someone", PASSWORD)
    assert not await store.verify("t2", "me", PASSWORD)  # no owner there


async def test_sessions_are_bounded_per_tenant_and_expire(db: Database) -> None:
    now = [utcnow()]

    def clock() -> datetime:
        return now[0]

    store = WebAuthStore(db, clock=clock)
    await store.create_owner("t1", "me", PASSWORD)
    first, _ = await store.create_session("t1")
    cookies = [first]
    for _ in range(web_auth.MAX_SESSIONS + 2):
        now[0] += timedelta(seconds=1)
        cookies.append((await store.create_session("t1"))[0])
    assert await store.count_sessions("t1") == web_auth.MAX_SESSIONS
    assert await store.session(first) is None  # the oldest were dropped
    newest = await store.session(cookies[-1])
    assert newest is not None and newest.username == "me"
    assert await store.session("not-a-cookie") is None
    now[0] += web_auth.SESSION_TTL + timedelta(seconds=1)
    assert await store.session(cookies[-1]) is None  # expired
    await store.create_session("t1")  # creating one removes the expired ones
    assert await store.count_sessions("t1") == 1


async def test_ending_a_session(db: Database) -> None:
    store = WebAuthStore(db)
    await store.create_owner("t1", "me", PASSWORD)
    cookie, info = await store.create_session("t1")
    await store.end_session(info.id)
    assert await store.session(cookie) is None
