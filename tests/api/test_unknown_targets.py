"""What does not exist is a 404, and nothing is queued for it (issue #10, item 11, the API part)."""

from __future__ import annotations

from msgr_bridge_loopback import LoopbackNetwork
from sqlalchemy import func, select

from msgr_bridge.store.models import OutboxRow
from msgr_bridge.testing.waiting import wait_until

from .conftest import Api, Start


async def _outbox_rows(api: Api) -> int:
    async with api.bridge.db.read() as s:
        return int(await s.scalar(select(func.count()).select_from(OutboxRow)) or 0)


async def test_unknown_conversations_and_messages_are_404_and_queue_nothing(
    start: Start, net: LoopbackNetwork
) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        base = f"/v1/accounts/{a}/conversations"

        async def synced() -> bool:
            _, body = await api.call("GET", base)
            return [c["id"] for c in body["conversations"]] == ["g"]

        await wait_until(synced)
        for path in (base + "/nowhere/messages", base + "/nowhere/members"):
            status, body = await api.call("GET", path)
            assert status == 404 and body["code"] == "conversation_not_found", (path, body)
        for path in (base + "/g/messages", base + "/g/members"):
            status, body = await api.call("GET", path)
            assert status == 200, (path, body)

        posted = net.post("g", "bob", "real")["id"]

        async def stored() -> bool:
            _, body = await api.call("GET", base + "/g/messages")
            return [m["id"] for m in body["messages"]] == [posted]

        await wait_until(stored)
        before = await _outbox_rows(api)
        for conv, msg in (("g", "no-such-id"), ("nowhere", posted)):
            msg_path = f"{base}/{conv}/messages/{msg}"
            for method, path, body in (
                ("PATCH", msg_path, {"text": "edited"}),
                ("DELETE", msg_path, None),
                ("POST", msg_path + "/reactions", {"emoji": "+"}),
            ):
                status, problem = await api.call(method, path, json=body)
                assert status == 404 and problem["code"] == "message_not_found", (method, path, problem)
        assert await _outbox_rows(api) == before

        status, body = await api.call("PATCH", f"{base}/g/messages/{posted}", json={"text": "edited"})
        assert status == 202, body  # a message that exists is edited as before
