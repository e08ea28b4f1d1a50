"""A running bridge (loopback network, tmp data dir, the ``db`` fixture's database) and an HTTP client.

``api`` yields an ``Api``: the bridge, an aiohttp session, ``token(*scopes)`` to mint tokens, and
``link(user, password)`` which links a loopback account through the real API link flow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.app import Bridge
from msgr_bridge.config import load_settings
from msgr_bridge.schema import ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.sync_state import SyncStateRepo
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing.config import with_loopback
from msgr_bridge.testing.waiting import wait_until

NET = "api"


@dataclass
class Api:
    bridge: Bridge
    http: aiohttp.ClientSession
    base: str
    admin: str = ""
    accounts: dict[str, str] = field(default_factory=dict)

    async def token(self, *scopes: str, user_id: str | None = None) -> str:
        new = await TokenStore(self.bridge.db).create(
            tenant=self.bridge.tenant, name="test", scopes=scopes, user_id=user_id
        )
        return new.token

    def h(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin}"}

    async def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        headers = {**self.h(token), **kw.pop("headers", {})}
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            ctype = r.headers.get("Content-Type", "")
            body = await r.json(content_type=None) if "json" in ctype else await r.read()
            return r.status, body

    async def link(self, user: str, password: str) -> str:
        status, flow = await self.call(
            "POST", "/v1/links", json={"network": "loopback", "settings": {"network": NET}}
        )
        assert status == 201, flow
        assert flow["step"]["kind"] == "credentials_form"
        status, done = await self.call(
            "POST",
            f"/v1/links/{flow['id']}/answers",
            json={"answers": {"user_id": user, "password": password}},
        )
        assert status == 200 and done["status"] == "linked", done
        account_id = done["account"]["id"]
        await wait_until(lambda: self.bridge.supervisor.state(account_id) == ConnectionState.CONNECTED)

        async def synced() -> bool:  # the first sync (run once connected) has stored the conversations
            record = await SyncStateRepo(self.bridge.db).get(account_id)
            return record is not None and record.last_sync_at is not None

        await wait_until(synced)
        self.accounts[user] = account_id
        return str(account_id)


@pytest.fixture
def net() -> LoopbackNetwork:
    LoopbackNetwork.reset(NET)
    n = LoopbackNetwork.get(NET)
    n.add_user("alice", "Alice", password="pw-alice")
    n.add_user("bob", "Bob", password="pw-bob")
    n.add_user("carol", "Carol", password="pw-carol")
    n.create_group("g", "Group", ["alice", "bob", "carol"])
    return n


def settings_for(
    tmp_path: Path, db: Database, *, sections: Mapping[str, Any] | None = None, **api: Any
) -> Any:
    """Settings for a bridge on the loopback network with the ``db`` fixture's database: ``api`` keys
    in its [api] section, and whole config ``sections`` last (replacing the defaults of the same name)."""
    return load_settings(
        overrides=with_loopback(
            {
                "bridge": {"data_dir": str(tmp_path / "data"), "shutdown_timeout_s": 5},
                "database": {"url": db.url.render_as_string(hide_password=False)},
                "api": {"port": 0, **api},
                "sync": {"interval_s": 3600},
                **(sections or {}),
            }
        )
    )


@asynccontextmanager
async def running(settings: Any) -> AsyncIterator[Api]:
    """The bridge with ``settings`` running, with an HTTP client and an admin token (``Api.admin``)."""
    async with Bridge(settings).running() as bridge:
        assert bridge.api is not None
        connector = aiohttp.TCPConnector(resolver=aiohttp.ThreadedResolver())
        async with aiohttp.ClientSession(connector=connector) as http:
            a = Api(bridge, http, f"http://127.0.0.1:{bridge.api.bound_port}")
            a.admin = await a.token("admin:*")
            yield a


Start = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def start(tmp_path: Path, db: Database, net: LoopbackNetwork) -> Start:
    """``async with start(**api_settings) as api:`` (a fixture cannot hold the bridge's task group open
    across pytest-asyncio's setup and teardown tasks)."""

    @asynccontextmanager
    async def run(**extra: Any) -> AsyncIterator[Api]:
        async with running(settings_for(tmp_path, db, **{"max_body_bytes": 64 * 1024, **extra})) as a:
            yield a

    return run
