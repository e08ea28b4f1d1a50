"""Linking a Telegram account through the bridge's API, as a person does it, against the fake Telegram; then
the account runs in the bridge until Telegram terminates its session."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from msgr_bridge_telegram.config import SECRET_SESSION

from msgr_bridge.app import Bridge
from msgr_bridge.config import load_settings
from msgr_bridge.schema import ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


class Api:
    def __init__(self, bridge: Bridge, http: aiohttp.ClientSession, token: str) -> None:
        assert bridge.api is not None
        self.bridge, self.http, self.token = bridge, http, token
        self.base = f"http://127.0.0.1:{bridge.api.bound_port}"

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(method, self.base + path, headers=headers, **kw) as response:
            return response.status, await response.json(content_type=None)

    async def answer(self, flow: str, **answers: str) -> dict[str, Any]:
        status, body = await self.call("POST", f"/v1/links/{flow}/answers", json={"answers": answers})
        assert status == 200, body
        return dict(body)


@asynccontextmanager
async def bridge_with(tmp_path: Path, telegram: Any) -> AsyncIterator[Api]:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    async with Database(url) as db:
        await db.migrate()
    settings = load_settings(
        overrides={
            "bridge": {"data_dir": str(tmp_path / "data"), "shutdown_timeout_s": 5},
            "database": {"url": url},
            "api": {"port": 0},
            "sync": {"interval_s": 3600},
            "networks": {"telegram": telegram.settings},
        }
    )
    async with Bridge(settings).running() as bridge:
        token = await TokenStore(bridge.db).create(tenant=bridge.tenant, name="test", scopes=("admin:*",))
        async with aiohttp.ClientSession() as http:
            yield Api(bridge, http, token.token)


async def test_link_with_code_and_password_corrected_then_revoked(tmp_path: Path, telegram: Any) -> None:
    async with bridge_with(tmp_path, telegram) as api:
        status, flow = await api.call("POST", "/v1/links", json={"network": "telegram"})
        assert status == 201 and [f["name"] for f in flow["step"]["fields"]] == ["phone"], flow
        step = await api.answer(flow["id"], phone="+1 555 0001")
        assert step["status"] == "pending" and step["step"]["kind"] == "code_entry", step
        step = await api.answer(flow["id"], code="99999")  # a typo: the flow asks again
        assert step["status"] == "pending" and "not right" in step["step"]["prompt"], step
        step = await api.answer(flow["id"], code=telegram.alice.login_code)
        assert [f["name"] for f in step["step"]["fields"]] == ["password"], step
        step = await api.answer(flow["id"], password="wrong")
        assert step["status"] == "pending" and "not right" in step["step"]["prompt"], step
        done = await api.answer(flow["id"], password=telegram.answers()["password"])
        assert done["status"] == "linked", done
        account_id = done["account"]["id"]
        assert done["account"]["remote_user_id"] == str(telegram.alice.id)
        supervisor = api.bridge.supervisor
        await wait_until(lambda: supervisor.state(account_id) == ConnectionState.CONNECTED, 20)

        assert api.bridge.credentials is not None  # the session is in the credential layer, not on disk
        assert await api.bridge.credentials.get(account_id, SECRET_SESSION)
        assert not await anyio.to_thread.run_sync(lambda: list(tmp_path.rglob("*.session")))

        telegram.fake.world.send(telegram.bob, telegram.alice, "hello through the bridge")
        path = f"/v1/accounts/{account_id}/conversations/user:{telegram.bob.id}/messages"

        async def stored() -> bool:
            status, page = await api.call("GET", path)
            return status == 200 and any(
                m.get("text") == "hello through the bridge" for m in page["messages"]
            )

        await wait_until(stored, 20)

        telegram.fake.revoke(telegram.alice)
        await wait_until(lambda: supervisor.state(account_id) == ConnectionState.BAD_CREDENTIALS, 30)


async def test_link_with_a_qr_code_then_the_password(tmp_path: Path, telegram: Any) -> None:
    async with bridge_with(tmp_path, telegram) as api:
        status, flow = await api.call("POST", "/v1/links", json={"network": "telegram"})
        assert status == 201
        step = await api.answer(flow["id"], phone="")  # no phone: log in with a QR code
        assert step["step"]["kind"] == "qr_code" and step["step"]["qr_data"].startswith("tg://login?token=")
        async with api.http.get(
            f"{api.base}/v1/links/{flow['id']}/qr.png", headers={"Authorization": f"Bearer {api.token}"}
        ) as response:
            assert response.status == 200 and (await response.read()).startswith(b"\x89PNG")
        again = await api.answer(flow["id"])  # not scanned yet: the same code, still valid
        assert again["step"]["qr_data"] == step["step"]["qr_data"]
        token = base64.urlsafe_b64decode(step["step"]["qr_data"].split("token=")[1] + "==")
        telegram.fake.scan_qr(token, telegram.alice)  # Alice scans it on her phone

        async def scanned() -> bool:
            polled = await api.answer(flow["id"])
            return bool(polled["step"] and polled["step"]["kind"] == "credentials_form")

        await wait_until(scanned, 10)
        done = await api.answer(flow["id"], password=telegram.answers()["password"])
        assert done["status"] == "linked" and done["account"]["remote_user_id"] == str(telegram.alice.id)
