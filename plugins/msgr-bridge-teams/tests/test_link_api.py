"""Linking a Teams account through the bridge's API by device code, the way a person does it: the step shows
the code and the link, the client polls by answering with nothing, and once the person signed in the
account is linked, its msal cache is in the credential layer and it connects and imports the chat."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from msgr_bridge.app import Bridge
from msgr_bridge.config import load_settings
from msgr_bridge.schema import ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing.waiting import wait_until


@asynccontextmanager
async def running_bridge(
    tmp_path: Path, tenant: Any, **api: Any
) -> AsyncIterator[tuple[Bridge, aiohttp.ClientSession, str]]:
    """The bridge on SQLite with ``[networks.teams]`` pointing at the fake (a context manager, not a fixture:
    the bridge's task group must be entered and left in the same task)."""
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    db = Database(url)
    await db.connect()
    await db.migrate()
    await db.close()
    settings = load_settings(
        overrides={
            "bridge": {"data_dir": str(tmp_path / "data"), "shutdown_timeout_s": 5},
            "database": {"url": url},
            "api": {"port": 0, **api},
            "sync": {"interval_s": 3600},
            "networks": {"teams": tenant.settings()},
        }
    )
    async with Bridge(settings).running() as running:
        assert running.api is not None
        admin = (
            await TokenStore(running.db).create(tenant=running.tenant, name="t", scopes=("admin:*",))
        ).token
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as http:
            yield running, http, f"http://127.0.0.1:{running.api.bound_port}"


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_link_by_device_code_through_the_api(tenant: Any, tmp_path: Path) -> None:
    async with running_bridge(tmp_path, tenant) as (running, http, base):
        await link_and_import(tenant, running, http, base)


async def link_and_import(tenant: Any, running: Bridge, http: aiohttp.ClientSession, base: str) -> None:
    fake = tenant.fake
    fake.post_as(tenant.bob, tenant.chat, "<p>before linking</p>")
    status, flow = await call(http, "POST", f"{base}/v1/links", {"network": "teams"})
    assert status == 201, flow
    step = flow["step"]
    assert step["kind"] == "device_code" and step["user_code"] and step["url"].startswith(fake.base_url)
    status, polled = await call(http, "POST", f"{base}/v1/links/{flow['id']}/answers", {"answers": {}})
    assert status == 200 and polled["status"] == "pending"
    assert polled["step"]["user_code"] == step["user_code"], "polling must not issue a new code"
    assert fake.identity.approve_pending(tenant.alice) == [step["user_code"]]  # the person signs in
    status, done = await call(http, "POST", f"{base}/v1/links/{flow['id']}/answers", {"answers": {}})
    assert status == 200 and done["status"] == "linked", done
    account = done["account"]["id"]
    await wait_until(lambda: running.supervisor.state(account) == ConnectionState.CONNECTED, timeout=20)
    assert running.credentials is not None
    assert await running.credentials.get(account, "token_cache")

    async def last_text() -> str | None:
        status, page = await call(http, "GET", f"{base}/v1/accounts/{account}/conversations")
        assert status == 200, page
        chats = [c for c in page["conversations"] if c["id"] == tenant.chat]
        last = chats[0].get("last_message") if chats else None
        return last.get("text") if isinstance(last, dict) else None

    async with asyncio.timeout(20):
        while await last_text() != "before linking":  # noqa: ASYNC110 - polling the API, as a client does
            await asyncio.sleep(0.1)


async def test_declined_sign_in_is_reported_and_a_new_code_follows(tenant: Any, tmp_path: Path) -> None:
    """A declined (or expired) code cannot be used again: the answer is refused with Microsoft's reason,
    the flow stays pending, and the next poll shows a new code: the person tries again without starting
    over."""
    async with running_bridge(tmp_path, tenant) as (running, http, base):
        status, flow = await call(http, "POST", f"{base}/v1/links", {"network": "teams"})
        assert status == 201
        first = flow["step"]["user_code"]
        tenant.fake.identity.decline_pending()
        url = f"{base}/v1/links/{flow['id']}/answers"
        status, refused = await call(http, "POST", url, {"answers": {}})
        assert refused["status"] == "pending" and "AADSTS" in refused["error"], refused
        status, again = await call(http, "POST", url, {"answers": {}})
        assert again["status"] == "pending" and again["step"]["user_code"] != first, again
        tenant.fake.identity.approve_pending(tenant.alice)
        status, done = await call(http, "POST", url, {"answers": {}})
        assert done["status"] == "linked", done
        account = done["account"]["id"]
        await wait_until(lambda: running.supervisor.state(account) == ConnectionState.CONNECTED, timeout=20)
        # Let the first sync finish: a bridge stopped while the account opens a TLS connection to the fake
        # leaves the fake's half of that aborted handshake unclosed (an asyncio/aiohttp server artifact).
        await wait_until(lambda: len(tenant.fake.graph_requests()) >= 4, timeout=20)


async def test_a_link_request_cannot_name_a_local_file_or_another_graph(tenant: Any, tmp_path: Path) -> None:
    """Regression: a link request's settings could set ``ca_file`` (a local path the connector then read)
    and the Graph and identity addresses the bridge connects to; only ``[networks.teams]`` may set them."""
    async with running_bridge(tmp_path, tenant) as (_, http, base):
        for settings in (
            {"ca_file": "/etc/passwd"},
            {"graph_url": "https://169.254.169.254/v1.0"},
            {"authority_host": "https://10.0.0.1"},
        ):
            status, problem = await call(
                http, "POST", f"{base}/v1/links", {"network": "teams", "settings": settings}
            )
            assert status == 400 and problem["code"] == "operator_setting", problem
            assert next(iter(settings)) in problem["detail"] and "[networks.teams]" in problem["hint"]
        status, flow = await call(http, "POST", f"{base}/v1/links", {"network": "teams"})
        assert status == 201, flow  # the operator's own settings still link
