"""``GET /v1/accounts/{id}/conversations``: every conversation with a stored message is listed (issue #10,
item 10), in cursor pages that cost the same few queries however many conversations a page holds, with
capped unread counts (item 17)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from msgr_bridge_loopback import LoopbackNetwork
from sqlalchemy import event

from msgr_bridge.inbound.persist import DatabaseInboundStore
from msgr_bridge.schema import Message, ReadReceipt, Sender
from msgr_bridge.store.db import Database
from msgr_bridge.testing.waiting import wait_until

from .conftest import Api, Start


@contextmanager
def counted(db: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)


def _msg(account: str, conv: str, n: int, sender: str = "bob") -> Message:
    return Message(
        network="loopback",
        account_id=account,
        conversation_id=conv,
        remote_id=f"{conv}-{n}",
        sender=Sender(user_id=sender),
        text=f"{conv} {n}",
    )


async def _pages(api: Api, account: str, limit: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(100):
        status, body = await api.call("GET", f"/v1/accounts/{account}/conversations?limit={limit}{cursor}")
        assert status == 200, body
        got += body["conversations"]
        if body["next_cursor"] is None:
            return got
        assert len(body["conversations"]) == limit
        cursor = f"&cursor={body['next_cursor']}"
    raise AssertionError("the pages never ended")


async def test_pages_cover_every_conversation_once_in_bounded_queries(start: Start) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        store = DatabaseInboundStore(api.bridge.db)
        await store.persist(
            "default", [_msg(a, f"dm-{i:03}", 0, sender=f"dm-{i:03}") for i in range(230)], []
        )
        await store.persist("default", [_msg(a, "dm-007", n) for n in range(1, 4)], [])
        await store.persist(
            "default",
            [
                ReadReceipt(
                    network="loopback",
                    account_id=a,
                    conversation_id="dm-007",
                    reader=Sender(user_id="alice"),
                    up_to_id="dm-007-1",
                )
            ],
            [],
        )

        listed = await _pages(api, a, 100)
        ids = [c["id"] for c in listed]
        assert ids == sorted(set(ids)) and {f"dm-{i:03}" for i in range(230)} <= set(ids)
        by_id = {c["id"]: c for c in listed}
        assert by_id["dm-007"]["unread"] == 2 and by_id["dm-007"]["last_message"]["text"] == "dm-007 3"
        assert by_id["dm-008"]["unread"] == 1 and by_id["dm-008"]["type"] == "direct"

        path = f"/v1/accounts/{a}/conversations"
        await api.call("GET", path + "?limit=1")  # token and account reads are cached from here on
        with counted(api.bridge.db) as small:
            _, body = await api.call("GET", path + "?limit=2")
        with counted(api.bridge.db) as large:
            _, body = await api.call("GET", path + "?limit=200")
        assert len(body["conversations"]) == 200
        assert len(large) == len(small) <= 4, large


async def test_unread_counts_are_capped(start: Start) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        store = DatabaseInboundStore(api.bridge.db)
        for first in range(0, 1200, 400):
            await store.persist("default", [_msg(a, "busy", n) for n in range(first, first + 400)], [])
        _, body = await api.call("GET", f"/v1/accounts/{a}/conversations")
        [busy] = [c for c in body["conversations"] if c["id"] == "busy"]
        assert busy["unread"] == 999 and busy["unread_capped"] is True
        assert busy["last_message"]["text"] == "busy 1199"


async def test_a_cursor_that_is_not_one_is_refused(start: Start) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        status, body = await api.call("GET", f"/v1/accounts/{a}/conversations?cursor=%25%25%25")
        assert status == 422 and body["errors"][0]["field"] == "cursor"


async def test_a_direct_chat_no_snapshot_named_is_listed(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")

        async def synced() -> bool:  # the snapshot at connect is stored, and knows only the group
            _, body = await api.call("GET", f"/v1/accounts/{a}/conversations")
            return [c["id"] for c in body["conversations"]] == ["g"]

        await wait_until(synced)
        dm = net.direct("alice", "bob")
        posted = net.post(dm.id, "bob", "psst")

        async def listed() -> bool:
            _, body = await api.call("GET", f"/v1/accounts/{a}/conversations")
            return dm.id in {c["id"] for c in body["conversations"]}

        await wait_until(listed)
        _, body = await api.call("GET", f"/v1/accounts/{a}/conversations")
        [c] = [c for c in body["conversations"] if c["id"] == dm.id]
        assert c["last_message"]["id"] == posted["id"] and c["unread"] == 1
