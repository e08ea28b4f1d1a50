"""Attachment URLs in JSON sends (issue #10 item 12): a client cannot make the bridge read a local file or
reach a private address; such a send is refused with 422 before it is queued, and nothing is posted."""

from __future__ import annotations

import pytest
from msgr_bridge_loopback import LoopbackNetwork

from .conftest import Start

CONV = "/v1/accounts/{a}/conversations/g"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "/var/lib/msgr-bridge/data/share-link.key",
        "http://127.0.0.1:8080/v1/accounts",
        "http://169.254.169.254/latest/meta-data/",
        "https://files.example.org/a.png",  # remote fetches are off unless the operator enables them
    ],
)
async def test_a_json_send_with_an_unreadable_attachment_url_is_refused(
    start: Start, net: LoopbackNetwork, url: str
) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        before = dict(net.messages)
        attachment = {"name": "key.txt", "mime_type": "text/plain", "url": url}
        status, body = await api.call(
            "POST", CONV.format(a=a) + "/messages", json={"text": "look", "attachments": [attachment]}
        )
        assert status == 422, body
        assert body["code"] == "attachment_refused" and body["detail"]
        status, page = await api.call("GET", f"/v1/accounts/{a}/conversations/g/messages")
        assert net.messages == before  # nothing reached the room
        # nothing stored either: the conversation is unknown (404) or its history lacks the send
        assert status == 404 or not any(m["text"] == "look" for m in page["messages"]), page
