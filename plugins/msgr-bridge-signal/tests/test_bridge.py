"""Signal through a running bridge (its HTTP API, outbox and inbound pipeline on SQLite) and the fake:
linking by QR code, the echo of a send stored once, a 429 that waits and goes out, a challenge that fails
the send once and is not retried, and an unlinked device that turns the account bad_credentials."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from signal_fixtures import BOB, ME

from msgr_bridge.app import Bridge
from msgr_bridge.config import load_settings
from msgr_bridge.schema import ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing.fakes.signal import SignalFake
from msgr_bridge.testing.waiting import wait_until


@dataclass
class Running:
    bridge: Bridge
    http: aiohttp.ClientSession
    base: str

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body) as r:
            return r.status, await r.json(content_type=None)

    async def link(self, fake: SignalFake, number: str) -> str:
        status, flow = await self.call("POST", "/v1/links", {"network": "signal"})
        assert status == 201, flow
        step = flow["step"]
        assert step["kind"] == "qr_code" and step["qr_data"].startswith("sgnl://linkdevice?")
        assert step["qr_png_data_uri"].startswith("data:image/png;base64,")
        path = f"/v1/links/{flow['id']}/answers"
        status, early = await self.call("POST", path, {"answers": {"number": number}})
        assert status == 200 and early["status"] == "pending", early  # not scanned yet: the same code again
        assert early["step"]["qr_data"] == step["qr_data"]
        fake.scan(number)  # the phone scans the code
        status, done = await self.call("POST", path, {"answers": {"number": number}})
        assert status == 200 and done["status"] == "linked", done
        account = str(done["account"]["id"])
        await wait_until(
            lambda: self.bridge.supervisor.state(account) == ConnectionState.CONNECTED, timeout=20
        )
        await wait_until(lambda: fake.listening(number) > 0, timeout=20)
        return account

    async def send(self, account: str, conversation: str, text: str) -> str:
        conv = urllib.parse.quote(conversation, safe="")
        status, body = await self.call(
            "POST", f"/v1/accounts/{account}/conversations/{conv}/messages", {"text": text}
        )
        assert status == 202, body
        return str(body["outbox_id"])

    async def outbox(self, outbox_id: str) -> dict[str, Any]:
        status, entry = await self.call("GET", f"/v1/outbox/{outbox_id}")
        assert status == 200, entry
        return dict(entry)

    async def history(self, account: str, conversation: str) -> list[dict[str, Any]]:
        conv = urllib.parse.quote(conversation, safe="")
        status, page = await self.call("GET", f"/v1/accounts/{account}/conversations/{conv}/messages")
        return list(page["messages"]) if status == 200 else []


@asynccontextmanager
async def running(tmp_path: Path, fake: SignalFake, **signal: Any) -> AsyncIterator[Running]:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    async with Database(url) as db:
        await db.migrate()
    settings = load_settings(
        overrides={
            "bridge": {"data_dir": str(tmp_path / "data"), "shutdown_timeout_s": 5},
            "database": {"url": url},
            "api": {"port": 0},
            "sync": {"interval_s": 3600},
            "networks": {"signal": {"base_url": fake.base_url, **signal}},
        }
    )
    async with Bridge(settings).running() as bridge:
        assert bridge.api is not None
        new = await TokenStore(bridge.db).create(tenant=bridge.tenant, name="test", scopes=("admin:*",))
        headers = {"Authorization": f"Bearer {new.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            yield Running(bridge, http, f"http://127.0.0.1:{bridge.api.bound_port}")


async def test_echo_and_phone_sends_are_stored_once(tmp_path: Path, fake: SignalFake) -> None:
    fake.unlink(ME)  # the fixture's number is linked already; this test links its own by QR code
    number = "+15550100077"
    fake.sync_echo = True
    async with running(tmp_path, fake) as api:
        account = await api.link(fake, number)
        outbox_id = await api.send(account, BOB, "sent through the bridge")
        await wait_until(lambda: fake.dropped == [] and any(s["kind"] == "message" for s in fake.sent))
        ts = fake.own_device_sent(number, "typed on the phone", destination=fake.person(BOB))

        async def both_stored() -> bool:
            texts = [m["text"] for m in await api.history(account, BOB)]
            return "typed on the phone" in texts and "sent through the bridge" in texts

        await wait_until(both_stored, timeout=20)
        assert (await api.outbox(outbox_id))["state"] == "sent"
        await anyio.sleep(0.3)  # the echo went through the pipeline too: still one row each
        messages = await api.history(account, BOB)
    texts = sorted(m["text"] for m in messages)
    assert texts == ["sent through the bridge", "typed on the phone"], messages
    phone = next(m for m in messages if m["text"] == "typed on the phone")
    # stored as the person's own: sent by the account's number (the store keeps no is_self flag yet)
    assert phone["id"] == f"{ts}:{number}" and phone["sender"]["user_id"] == number, str(phone)


async def test_limits_challenges_and_an_unlinked_device(tmp_path: Path, fake: SignalFake) -> None:
    fake.unlink(ME)
    number = "+15550100078"
    async with running(tmp_path, fake, rate_limit_retry_s=0.5, liveness_interval_s=0.5) as api:
        account = await api.link(fake, number)

        fake.rate_limit(number)  # a plain 429: the message waits, then goes out
        waited = await api.send(account, BOB, "after the wait")

        async def sent(outbox_id: str) -> bool:
            return (await api.outbox(outbox_id))["state"] == "sent"

        await wait_until(lambda: sent(waited), timeout=20)
        assert [s["message"] for s in fake.sent] == ["after the wait"]

        fake.rate_limit(number, challenge_tokens=["tok-9"], times=100)  # a challenge: fails once, no loop
        blocked = await api.send(account, BOB, "needs a captcha")

        async def failed() -> bool:
            return (await api.outbox(blocked))["state"] == "failed"

        await wait_until(failed, timeout=20)
        entry = await api.outbox(blocked)
        await anyio.sleep(1.0)
        attempts = [
            r for r in fake.requests if r["path"] == "/v2/send" and r["body"]["message"] == "needs a captcha"
        ]
        assert len(attempts) == 1 and "tok-9" in str(entry), entry
        fake.faults.clear()

        fake.unlink(number)  # removed in the phone's Linked devices: noticed by the liveness check
        await wait_until(
            lambda: api.bridge.supervisor.state(account) == ConnectionState.BAD_CREDENTIALS, timeout=20
        )
        _, shown = await api.call("GET", f"/v1/accounts/{account}")
        assert shown["state"] == "bad_credentials", shown


async def _stream_kinds(api: Running, wanted: set[str]) -> list[dict[str, Any]]:
    """Events of the API's stream, replayed from the start, until every kind in ``wanted`` was seen."""
    url = api.base.replace("http", "ws") + "/v1/events?cursor=0"
    seen: list[dict[str, Any]] = []
    async with api.http.ws_connect(url) as ws:
        with anyio.fail_after(20):
            while not wanted <= {e["kind"] for e in seen}:
                frame = await ws.receive_json()
                seen.extend(frame.get("events") or ())
    return seen


async def test_delivery_and_read_receipts_of_our_messages(tmp_path: Path, fake: SignalFake) -> None:
    fake.unlink(ME)
    number = "+15550100079"
    async with running(tmp_path, fake) as api:
        account = await api.link(fake, number)
        outbox_id = await api.send(account, BOB, "did you get this?")

        async def sent() -> bool:
            return (await api.outbox(outbox_id))["state"] == "sent"

        await wait_until(sent, timeout=20)
        stamp = next(s["timestamp"] for s in fake.sent if s["kind"] == "message")
        bob = fake.person(BOB)
        fake.peer_receipt(bob, number, [stamp], kind="delivery")

        async def state(wanted: str) -> bool:
            return (await api.outbox(outbox_id))["state"] == wanted

        await wait_until(lambda: state("delivered"), timeout=20)
        [mine] = await api.history(account, BOB)
        assert [(r["user_id"], r["state"], r["read_at"]) for r in mine["receipts"]] == [
            (BOB, "delivered", None)
        ]
        fake.peer_receipt(bob, number, [stamp], kind="read")
        await wait_until(lambda: state("read"), timeout=20)
        fake.peer_receipt(bob, number, [stamp], kind="delivery")  # late and out of order: changes nothing
        fake.peer_message(bob, number, "yes")
        await wait_until(lambda: _has_text(api, account, "yes"), timeout=20)
        messages = await api.history(account, BOB)
        mine = next(m for m in messages if m["text"] == "did you get this?")
        [receipt] = mine["receipts"]
        assert receipt["state"] == "read" and receipt["read_at"] is not None and receipt["delivered_at"]
        assert next(m for m in messages if m["text"] == "yes")["receipts"] is None  # not ours
        assert (await api.outbox(outbox_id))["state"] == "read"
        events = await _stream_kinds(api, {"message_receipt", "delivery_status"})
    receipts = [e["event"]["state"] for e in events if e["kind"] == "message_receipt"]
    statuses = [e["event"]["state"] for e in events if e["kind"] == "delivery_status"]
    assert receipts == ["delivered", "read"]
    assert statuses[-2:] == ["delivered", "read"]


async def _has_text(api: Running, account: str, text: str) -> bool:
    return text in [m["text"] for m in await api.history(account, BOB)]
