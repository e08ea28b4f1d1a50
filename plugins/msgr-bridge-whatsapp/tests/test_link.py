"""Linking: a QR code (rotated as WhatsApp rotates it) or a pairing code for a phone number, through the
link flow and through ``POST /v1/links`` in a running bridge; the session ends up encrypted in the
credential layer, never as a file."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from msgr_bridge_whatsapp.link import WhatsAppLinkFlow
from msgr_bridge_whatsapp.session import decode
from msgr_bridge_whatsapp.testing import FakeWhatsmeow, paired_device
from neonize.proto import Neonize_pb2 as N
from test_media_history import history_chunk

from conftest import FAST, GROUP, ME, build
from msgr_bridge.app import Bridge
from msgr_bridge.config import load_settings
from msgr_bridge.connectors.protocol import LinkResult, LinkStep, LinkStepKind
from msgr_bridge.schema import ConnectionState, Message
from msgr_bridge.store.db import Database
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing.fakes import HoldingSink
from msgr_bridge.testing.harness import Live
from msgr_bridge.testing.waiting import wait_until


async def test_qr_code_rotates_then_the_phone_pairs(fake: FakeWhatsmeow) -> None:
    flow = WhatsAppLinkFlow({"device_name": "Bridge"})
    step = await flow.start()
    assert step.kind == LinkStepKind.QR_CODE and step.qr_data == "2@first-qr-code,abc,def"
    fake.emit_qr("2@second-qr-code,abc,def")  # WhatsApp rotates the code
    step = await flow.submit({})
    assert isinstance(step, LinkStep) and step.qr_data == "2@second-qr-code,abc,def"
    fake.pair(ME)
    result = await flow.submit({})
    assert isinstance(result, LinkResult) and result.remote_user_id == ME and result.settings["jid"] == ME
    assert flow.session is None and not any(map(exists, (c.name for c in fake.clients.values())))
    assert decode(result.secrets["session"]).startswith(b"SQLite format 3")  # only inside the secret


async def test_pairing_code_for_a_phone_number_with_a_correction(fake: FakeWhatsmeow) -> None:
    flow = WhatsAppLinkFlow({})
    await flow.start()
    again = await flow.submit({"phone": "not a number"})
    assert (
        isinstance(again, LinkStep)
        and again.kind == LinkStepKind.QR_CODE
        and "Please correct" in again.prompt
    )
    step = await flow.submit({"phone": "+44 7700 900001"})
    assert (
        isinstance(step, LinkStep) and step.kind == LinkStepKind.DEVICE_CODE and step.user_code == "ABCD-EFGH"
    )
    assert ("PairPhone", "447700900001") in fake.calls
    fake.pair(ME)
    assert isinstance(await flow.submit({}), LinkResult)


async def test_history_sent_at_pairing_is_handed_to_the_account_and_imported(fake: FakeWhatsmeow) -> None:
    flow = WhatsAppLinkFlow({"device_name": "Bridge"})
    await flow.start()
    fake.pair(ME)
    fake.emit(history_chunk(1, ["before", "linking"], progress=100))  # to the link flow's connection
    await wait_until(lambda: flow.history.chunks == 1)
    result = await flow.submit({})
    assert isinstance(result, LinkResult) and set(result.secrets) == {"session", "link_history"}
    connector = build(secrets=dict(result.secrets))
    async with Live(connector) as live:
        await live.wait_text("linking")
        texts = [e.text for e in live.events() if isinstance(e, Message)]
        assert texts == ["before", "linking"]
        reports = connector.ctx.progress.of(GROUP)
        assert [(r.done, r.total, r.finished) for r in reports] == [(2, 2, True)]
        # stored (the last push acknowledged): the handed-over history is gone from the secrets
        assert await connector.ctx.secrets.get_optional("link_history") is None
    again = build(secrets={"session": result.secrets["session"]})
    async with Live(again) as live:  # nothing is imported twice
        await asyncio.sleep(0.1)
        assert not [e for e in live.events() if isinstance(e, Message)]


async def test_handed_over_history_is_kept_until_it_is_stored(fake: FakeWhatsmeow) -> None:
    flow = WhatsAppLinkFlow({})
    await flow.start()
    fake.pair(ME)
    fake.emit(history_chunk(1, ["kept"], progress=100))
    await wait_until(lambda: flow.history.chunks == 1)
    result = await flow.submit({})
    assert isinstance(result, LinkResult)
    sink = HoldingSink()  # the pipeline has not committed: the crash case
    connector = build(secrets=dict(result.secrets), sink=sink)
    async with Live(connector) as live:
        await live.wait_text("kept")
    assert await connector.ctx.secrets.get_optional("link_history") is not None
    await sink.release()
    assert await connector.ctx.secrets.get_optional("link_history") is None


async def test_history_during_linking_reaches_the_api(tmp_path: Path, fake: FakeWhatsmeow) -> None:
    async with (
        running_bridge(tmp_path) as (bridge, http, base, _),
        http.ws_connect(base.replace("http", "ws") + "/v1/events") as stream,
    ):
        await wait_until(lambda: bridge.api is not None and len(bridge.api.hub.clients) == 1)
        status, flow = await call(http, "POST", f"{base}/v1/links", json={"network": "whatsapp"})
        assert status == 201, flow
        fake.pair(ME)
        fake.emit(history_chunk(1, ["from", "the phone"], progress=100))
        await asyncio.sleep(0.2)
        status, done = await call(http, "POST", f"{base}/v1/links/{flow['id']}/answers", json={"answers": {}})
        assert status == 200 and done["status"] == "linked", done
        account_id = done["account"]["id"]

        async def imported() -> bool:
            status, page = await call(
                http, "GET", f"{base}/v1/accounts/{account_id}/conversations/{GROUP}/messages"
            )
            return status == 200 and [m["text"] for m in page["messages"]] == ["the phone", "from"]

        await wait_until(imported)

        async def reported() -> bool:
            status, account = await call(http, "GET", f"{base}/v1/accounts/{account_id}")
            convs = account["sync"]["conversations"] if status == 200 else []
            return [(c["conversation_id"], c["done"], c["total"], c["finished"]) for c in convs] == [
                (GROUP, 2, 2, True)
            ]

        await wait_until(reported)
        frame = await _next_progress(stream)  # and live on the event stream
        assert (frame["conversation_id"], frame["event"]["done"], frame["event"]["finished"]) == (
            GROUP,
            2,
            True,
        )
        await wait_until(lambda: _keys(bridge, account_id), timeout=10)


async def _next_progress(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    with anyio.fail_after(10):
        while True:
            frame = json.loads((await ws.receive()).data)
            for e in frame.get("events", ()):
                if e["kind"] == "sync_progress":
                    return dict(e)


async def _keys(bridge: Bridge, account_id: str) -> bool:
    assert bridge.credentials is not None
    return await bridge.credentials.keys(account_id) == ["session"]


def everything_under(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


def exists(path: str) -> bool:
    return Path(path).exists()


@asynccontextmanager
async def running_bridge(tmp_path: Path) -> AsyncIterator[tuple[Bridge, aiohttp.ClientSession, str, str]]:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    async with Database(url) as db:
        await db.migrate()
    settings = load_settings(
        overrides={
            "bridge": {"data_dir": str(tmp_path / "data"), "shutdown_timeout_s": 5},
            "database": {"url": url},
            "api": {"port": 0},
            "sync": {"interval_s": 3600},
            "networks": {"whatsapp": FAST},
        }
    )
    async with Bridge(settings).running() as bridge:
        assert bridge.api is not None and "whatsapp" in bridge.registry.connectors
        token = await TokenStore(bridge.db).create(tenant=bridge.tenant, name="t", scopes=("admin:*",))
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token.token}"}) as http:
            yield bridge, http, f"http://127.0.0.1:{bridge.api.bound_port}", token.token


async def call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as response:
        return response.status, await response.json(content_type=None)


async def test_linking_through_the_api_with_a_qr_code(tmp_path: Path, fake: FakeWhatsmeow) -> None:
    async with running_bridge(tmp_path) as (bridge, http, base, _):
        status, flow = await call(http, "POST", f"{base}/v1/links", json={"network": "whatsapp"})
        assert status == 201 and flow["step"]["kind"] == "qr_code", flow
        png = base64.b64decode(flow["step"]["qr_png_data_uri"].split(",", 1)[1])
        assert png.startswith(b"\x89PNG")
        fake.pair(ME)
        status, done = await call(http, "POST", f"{base}/v1/links/{flow['id']}/answers", json={"answers": {}})
        assert status == 200 and done["status"] == "linked", done
        account_id = done["account"]["id"]
        await wait_until(lambda: bridge.supervisor.state(account_id) == ConnectionState.CONNECTED)
        assert bridge.credentials is not None
        assert await bridge.credentials.keys(account_id) == ["session"]
        running = bridge.supervisor.connector(account_id)
        assert running is not None and paired_device(str(running.session.path)) == ME  # type: ignore[attr-defined]
        on_disk = await asyncio.to_thread(everything_under, tmp_path)
        assert b"whatsmeow_device" not in on_disk  # database and keystore: only ciphertext


async def test_whatsapp_logging_the_device_out_turns_the_account_bad_credentials(
    tmp_path: Path, fake: FakeWhatsmeow
) -> None:
    async with running_bridge(tmp_path) as (bridge, http, base, _):
        fake.phone = ("accept", ME)
        status, flow = await call(http, "POST", f"{base}/v1/links", json={"network": "whatsapp"})
        assert status == 201, flow
        status, done = await call(http, "POST", f"{base}/v1/links/{flow['id']}/answers", json={"answers": {}})
        assert status == 200 and done["status"] == "linked", done
        account_id = done["account"]["id"]
        await wait_until(lambda: bridge.supervisor.state(account_id) == ConnectionState.CONNECTED)
        fake.emit(N.LoggedOut(OnConnect=False, Reason=N.MAIN_DEVICE_GONE))  # removed on the phone
        await wait_until(lambda: bridge.supervisor.state(account_id) == ConnectionState.BAD_CREDENTIALS)

        async def reported() -> bool:  # the API reads the stored state, written just after
            status, account = await call(http, "GET", f"{base}/v1/accounts/{account_id}")
            return status == 200 and account["state"] == "bad_credentials"

        await wait_until(reported)
        runtime = bridge.supervisor.runtime(account_id)
        assert runtime is not None and "logged this device out" in str(runtime.reason)
        assert bridge.credentials is not None and await bridge.credentials.keys(account_id) == []
