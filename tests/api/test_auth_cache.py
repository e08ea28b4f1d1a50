"""The API's token cache: one database lookup per token per TTL, even when many requests arrive at once."""

from __future__ import annotations

from typing import Any

import anyio
from sqlalchemy import event

from msgr_bridge.api.auth import TokenCache
from msgr_bridge.errors import TokenRejected, TokenRevoked
from msgr_bridge.store.db import Database
from msgr_bridge.store.tokens import TokenStore


def count_token_lookups(db: Database) -> list[str]:
    """Every statement that reads api_tokens, as the database driver receives it."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "api_tokens" in statement:
            seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    return seen


async def test_concurrent_requests_with_a_cold_cache_read_the_token_once(db: Database) -> None:
    store = TokenStore(db)
    token = (await store.create(tenant="t1", name="api", scopes=["read:*"])).token
    lookups = count_token_lookups(db)
    cache = TokenCache(store, ttl_s=60)
    results = []

    async def authenticate() -> None:
        results.append(await cache.authenticate(token))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(authenticate)
    assert len(results) == 50 and {r.name for r in results} == {"api"}
    assert len(lookups) == 1
    await cache.authenticate(token)  # cached now
    assert len(lookups) == 1


async def test_an_expired_cache_entry_is_read_again_and_a_refusal_reaches_every_waiter(db: Database) -> None:
    store = TokenStore(db)
    new = await store.create(tenant="t1", name="api", scopes=["read:*"])
    lookups = count_token_lookups(db)
    cache = TokenCache(store, ttl_s=0)  # every call is a miss
    await cache.authenticate(new.token)
    await cache.authenticate(new.token)
    assert len(lookups) == 2
    await store.revoke(new.info.id)
    refused: list[Exception] = []

    async def authenticate() -> None:
        try:
            await cache.authenticate(new.token)
        except TokenRejected as exc:
            refused.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(authenticate)
    assert len(refused) == 10
    assert all(isinstance(e, TokenRevoked) for e in refused)


async def test_a_caller_that_gives_up_does_not_fail_the_others(db: Database) -> None:
    store = TokenStore(db)
    token = (await store.create(tenant="t1", name="api", scopes=["read:*"])).token
    cache = TokenCache(store, ttl_s=60)
    with anyio.CancelScope() as scope:
        scope.cancel()  # the first caller starts the lookup and is cancelled at once
        await cache.authenticate(token)
    with anyio.fail_after(5):
        info = await cache.authenticate(token)
    assert info.name == "api"


async def test_a_change_announced_in_this_process_empties_the_cache(db: Database) -> None:
    """Issue 19: ``DELETE /v1/tokens/{id}`` announces its revocation; the cache answers from after it."""
    from msgr_bridge.api.auth import TokenChanges

    store = TokenStore(db)
    new = await store.create(tenant="t1", name="api", scopes=["read:*"])
    changes = TokenChanges()
    cache = TokenCache(store, ttl_s=60, changes=changes)
    await cache.authenticate(new.token)
    await store.revoke(new.info.id)
    assert (await cache.authenticate(new.token)).name == "api"  # cached: the revocation is not known yet
    changes.changed()
    try:
        await cache.authenticate(new.token)
    except TokenRevoked:
        pass
    else:
        raise AssertionError("the cache answered from before the change")
