"""Multipart sends: the sending policy decides before any file is stored, and a refused send leaves no file
(issue #10, item 13)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.outbound.policy_rules import AttachmentPolicy

from .conftest import Api, Start


def _stored_files(api: Api) -> list[Path]:
    media = Path(api.bridge.settings.bridge.data_dir) / "media"
    return sorted(p for p in media.iterdir()) if media.exists() else []


def _form(mime: str, size: int = 2000) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("message", '{"text": "a file"}', content_type="application/json")
    form.add_field("file", b"x" * size, filename="a.bin", content_type=mime)
    return form


async def test_a_refused_multipart_send_leaves_no_file(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        assert api.bridge.outbound is not None
        api.bridge.outbound.policy.add(AttachmentPolicy(deny=["application/x-evil"], max_size=10_000))
        path = f"/v1/accounts/{a}/conversations/g/messages"

        # refused by type: decided before a byte is stored
        status, body = await api.call("POST", path, data=_form("application/x-evil"))
        assert status == 202 and body["state"] == "failed" and "x-evil" in body["error"], body
        assert _stored_files(api) == []

        # refused by size (known only once stored): the stored file is deleted before the answer
        status, body = await api.call("POST", path, data=_form("application/octet-stream", 20_000))
        assert status == 202 and body["state"] == "failed" and "limit" in body["error"], body
        assert _stored_files(api) == []

        # an allowed one keeps its file
        status, body = await api.call("POST", path, data=_form("application/octet-stream"))
        assert status == 202 and body["state"] == "queued", body
        assert len(_stored_files(api)) == 1


async def test_share_link_options_that_are_not_an_object_are_a_422(
    start: Start, net: LoopbackNetwork
) -> None:
    """Found by the fuzzer once /openapi.json documented the ``options`` part: ``null`` was a 500."""
    async with start() as api:
        for options in ("null", "[1]", "7"):
            form = aiohttp.FormData()
            form.add_field("options", options)
            form.add_field("file", b"x", filename="a.bin")
            status, body = await api.call("POST", "/v1/share-links", data=form)
            assert status == 422 and body["errors"][0]["field"] == "options", body
        assert _stored_files(api) == []
