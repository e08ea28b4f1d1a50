"""Messages through the API against the loopback network: history, send (JSON and multipart), edit, delete,
react, read, typing, delivery status, conversations; malformed and oversize requests."""

from __future__ import annotations

import aiohttp
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.testing.waiting import wait_until

from .conftest import Api, Start

CONV = "/v1/accounts/{a}/conversations/g"


async def _sent(api: Api, outbox_id: str) -> dict[str, object]:
    body: dict[str, object] = {}

    async def done() -> bool:
        nonlocal body
        _, body = await api.call("GET", f"/v1/outbox/{outbox_id}")
        return body["state"] == "sent"

    await wait_until(done)
    return body


async def test_send_edit_react_delete_read_and_history(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        conv = CONV.format(a=a)
        status, body = await api.call("POST", conv + "/messages", json={"text": "hello bob"})
        assert status == 202 and body["state"] == "queued"
        sent = await _sent(api, body["outbox_id"])
        remote = sent["remote_id"]
        assert net.messages[str(remote)]["text"] == "hello bob"

        net.post("g", "bob", "hi alice")
        status, page = await api.call("GET", conv + "/messages?limit=1")

        async def two() -> bool:
            _, p = await api.call("GET", conv + "/messages")
            return len(p["messages"]) == 2

        await wait_until(two)
        status, page = await api.call("GET", conv + "/messages?limit=1")
        assert status == 200 and page["messages"][0]["text"] == "hi alice" and page["next_cursor"]
        status, older = await api.call("GET", conv + f"/messages?limit=1&before={page['next_cursor']}")
        assert older["messages"][0]["text"] == "hello bob"

        status, convs = await api.call("GET", f"/v1/accounts/{a}/conversations")
        [g] = convs["conversations"]
        assert g["id"] == "g" and g["unread"] == 1 and g["last_message"]["text"] == "hi alice"

        status, body = await api.call("PATCH", conv + f"/messages/{remote}", json={"text": "hello, bob"})
        assert status == 202
        await _sent(api, body["outbox_id"])
        assert net.messages[str(remote)]["text"] == "hello, bob"
        status, body = await api.call("POST", conv + f"/messages/{remote}/reactions", json={"emoji": "👍"})
        assert status == 202
        await _sent(api, body["outbox_id"])
        bob_msg = page["messages"][0]["id"]
        status, body = await api.call("POST", conv + "/read", json={"up_to_id": bob_msg})
        assert status == 202
        await _sent(api, body["outbox_id"])
        status, body = await api.call("POST", conv + "/typing", json={"active": True})
        assert status == 200 and body["sent"] is True
        status, body = await api.call("DELETE", conv + f"/messages/{remote}")
        assert status == 202
        await _sent(api, body["outbox_id"])

        async def deleted() -> bool:
            _, p = await api.call("GET", conv + "/messages")
            return any(m["deleted"] for m in p["messages"])

        await wait_until(deleted)  # the pipeline is idle again before the bridge stops
        status, _members = await api.call("GET", conv + "/members")
        assert status == 200
        status, caps = await api.call("GET", conv + "/capabilities")
        assert caps["capabilities"]["reactions"] is True


async def test_multipart_send_streams_attachments_and_bad_requests_get_problems(
    start: Start, net: LoopbackNetwork
) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        conv = CONV.format(a=a)
        form = aiohttp.FormData()
        form.add_field("message", '{"text": "a file"}', content_type="application/json")
        form.add_field("file", b"x" * 5000, filename="a.bin", content_type="application/octet-stream")
        status, body = await api.call("POST", conv + "/messages", data=form)
        assert status == 202, body
        entry = await _sent(api, body["outbox_id"])
        assert entry["state"] == "sent"

        # oversize: JSON body and an upload over max_body_bytes (64 KiB in these tests)
        status, body = await api.call(
            "POST",
            conv + "/messages",
            data=b"{" + b" " * 70_000 + b"}",
            headers={"Content-Type": "application/json"},
        )
        assert status == 413 and body["code"] == "body_too_large"
        big = aiohttp.FormData()
        big.add_field("message", '{"text": "big"}')
        big.add_field("file", b"x" * 100_000, filename="big.bin", content_type="application/octet-stream")
        status, body = await api.call("POST", conv + "/messages", data=big)
        assert status == 413 and body["code"] == "body_too_large"

        status, body = await api.call(
            "POST", conv + "/messages", data=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert status == 400 and body["code"] == "malformed_json"
        status, body = await api.call("POST", conv + "/messages", json={"text": "x", "colour": "red"})
        assert status == 400 and body["code"] == "unknown_field" and body["errors"][0]["field"] == "colour"
        status, body = await api.call("POST", conv + "/messages", json={"text": 5})
        assert status == 422 and body["errors"][0]["field"] == "text"
        status, body = await api.call("POST", conv + "/messages", json={})
        assert status == 422 and body["code"] == "validation_failed"
        status, body = await api.call("POST", conv + "/messages", json={"text": "x" * 10_001})
        assert status == 422 and body["code"] == "outbound_rejected"
        status, body = await api.call("GET", conv + "/messages?limit=abc")
        assert status == 422 and body["errors"][0]["field"] == "limit"
        # multipart without its boundary, and a part whose headers are not headers (found by schemathesis)
        status, body = await api.call(
            "POST", conv + "/messages", data=b"{}", headers={"Content-Type": "multipart/form-data"}
        )
        assert status == 400 and body["code"] == "malformed_body" and "boundary" in body["detail"]
        for path in (conv + "/messages", "/v1/share-links"):
            status, body = await api.call(
                "POST",
                path,
                data=b"--b0\r\n[]--b0--\r\n",
                headers={"Content-Type": "multipart/form-data; boundary=b0"},
            )
            assert status == 400 and body["code"] == "malformed_body", (path, body)
        # none of that disturbed the next normal request
        status, body = await api.call("POST", conv + "/messages", json={"text": "still fine"})
        assert status == 202
        assert body.get("state") == "queued"


async def test_not_supported_names_the_capability(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        rt = api.bridge.supervisor.connector(a)
        assert rt is not None
        m1 = net.post("g", "bob", "to edit")["id"]
        await wait_until(lambda: api.bridge.pipeline is not None and api.bridge.pipeline.stats.created >= 1)
        type(rt).capabilities = type(rt).capabilities.model_copy(update={"edits": False})
        try:
            status, body = await api.call("PATCH", CONV.format(a=a) + f"/messages/{m1}", json={"text": "x"})
        finally:
            type(rt).capabilities = type(rt).capabilities.model_copy(update={"edits": True})
        assert status == 422 and body["code"] == "not_supported" and body["capability"] == "edits"


async def test_a_running_connector_looks_up_message_ids_of_its_own_account(
    start: Start, net: LoopbackNetwork
) -> None:
    """``ctx.messages`` of a running connector sees what the bridge stored: our sends and what arrived."""
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        _, body = await api.call("POST", CONV.format(a=a) + "/messages", json={"text": "hello"})
        sent = await _sent(api, body["outbox_id"])
        arrived = net.post("g", "carol", "hi all")
        connector = api.bridge.supervisor.connector(a)
        assert connector is not None
        ids = connector.ctx.messages

        async def stored() -> bool:
            return await ids.by_remote("g", arrived["id"]) is not None

        await wait_until(stored)
        ours = await ids.by_remote("g", str(sent["remote_id"]))
        assert ours is not None and ours.sender_id == "alice"
        theirs = await ids.by_remote("g", arrived["id"])
        assert theirs is not None and theirs.sender_id == "carol"
        assert await ids.by_id(theirs.message_id) == theirs
        assert await ids.by_remote("g", "no-such-id") is None
