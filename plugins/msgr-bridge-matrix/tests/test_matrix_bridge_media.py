"""A multipart send through the running bridge's API reaches a Matrix room: the upload goes to share-link
storage, and the connector streams it from there through ``ctx.media`` as the bridge composes it. The
attachment URL names the bridge's own loopback address (``[api] public_base_url`` unset), which a remote
fetch refuses: the file must come from storage, never back over HTTP."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from matrix_peer import Peer
from test_matrix_crash import BridgeProcess

from msgr_bridge.testing.synapse import SynapseServer
from msgr_bridge.testing.waiting import wait_until


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[BridgeProcess]:
    process = BridgeProcess(tmp_path)
    try:
        yield process
    finally:
        process.stop()


async def test_multipart_send_reaches_the_room(
    synapse: SynapseServer, me: Peer, other: Peer, bridge: BridgeProcess
) -> None:
    room = await other.room_with(me, direct=True)
    bridge.start()
    flow = bridge.call(
        "POST", "/v1/links", {"network": "matrix", "settings": {"homeserver": synapse.base_url}}
    )
    answers = {"user_id": me.user_id, "password": me.password}
    done = bridge.call("POST", f"/v1/links/{flow['id']}/answers", {"answers": answers})
    account = done["account"]["id"]
    await wait_until(
        lambda: bridge.call("GET", f"/v1/accounts/{account}")["state"] == "connected", timeout=30
    )

    data = bytes(range(256)) * 300
    form = aiohttp.FormData()
    form.add_field("message", '{"text": "the report"}', content_type="application/json")
    form.add_field("file", data, filename="report.bin", content_type="application/octet-stream")
    path = f"/v1/accounts/{account}/conversations/{urllib.parse.quote(room, safe='')}/messages"
    async with (
        aiohttp.ClientSession() as http,
        http.post(bridge.base + path, data=form, headers={"Authorization": f"Bearer {bridge.token}"}) as r,
    ):
        assert r.status == 202, await r.text()
        outbox_id = (await r.json())["outbox_id"]

    def sent() -> bool:
        entry = bridge.call("GET", f"/v1/outbox/{outbox_id}")
        assert entry["state"] in {"queued", "sending", "sent"}, entry
        return bool(entry["state"] == "sent")

    await wait_until(sent, timeout=30)
    seen = await other.wait_for(lambda r, e: e.get("content", {}).get("msgtype") == "m.file", timeout=20)
    assert seen["content"]["body"] == "report.bin" and seen["content"]["info"]["size"] == len(data)
    assert await other.client.download_media(seen["content"]["url"]) == data
