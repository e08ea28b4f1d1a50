"""The composed bridge: a loopback account's messages travel connector -> bus -> store and read back."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.app import Bridge
from msgr_bridge.config import Settings, load_settings
from msgr_bridge.credentials.factory import build_credential_store
from msgr_bridge.schema import Account, ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import AccountRepo, MessageRepo
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing.config import with_loopback
from msgr_bridge.testing.waiting import wait_until


def settings_for(tmp_path: Path, db_url: str) -> Settings:
    return load_settings(
        overrides=with_loopback(
            {
                "bridge": {"data_dir": str(tmp_path / "data"), "shutdown_timeout_s": 5},
                "database": {"url": db_url},
                "api": {"port": 0},
            }
        )
    )


async def link_loopback(settings: Settings, account_id: str, user: str, password: str) -> None:
    db = Database(settings.database.url)
    await db.connect()
    try:
        await AccountRepo(db).create(
            Account(id=account_id, network="loopback", remote_user_id=user), settings={"network": "app"}
        )
    finally:
        await db.close()
    store = await build_credential_store(settings)
    await store.put(account_id, "password", password)
    await store.aclose()


@pytest.fixture
def net() -> LoopbackNetwork:
    LoopbackNetwork.reset("app")
    n = LoopbackNetwork.get("app")
    n.add_user("alice", "Alice", password="pw-alice")
    n.add_user("bob", "Bob", password="pw-bob")
    n.create_group("g", "Group", ["alice", "bob"])
    return n


async def test_inbound_message_is_stored_and_health_reports(
    tmp_path: Path, db: Database, net: LoopbackNetwork
) -> None:
    settings = settings_for(tmp_path, str(db.url.render_as_string(hide_password=False)))
    await link_loopback(settings, "acct-alice", "alice", "pw-alice")
    async with Bridge(settings).running() as bridge:
        await wait_until(lambda: bridge.supervisor.state("acct-alice") == ConnectionState.CONNECTED)
        net.post("g", "bob", "hello through the bridge")
        messages = MessageRepo(bridge.db)

        async def stored() -> bool:
            return any(m.text == "hello through the bridge" for m in await messages.history("loopback", "g"))

        await wait_until(stored)
        async with aiohttp.ClientSession() as http:
            assert bridge.api is not None
            admin = await TokenStore(bridge.db).create(tenant=bridge.tenant, name="t", scopes=("admin:*",))
            url = f"http://127.0.0.1:{bridge.api.bound_port}/health"
            async with http.get(url, headers={"Authorization": f"Bearer {admin.token}"}) as resp:
                health = await resp.json()
        assert health["status"] == "ok"
        assert health["accounts"]["acct-alice"]["state"] == "connected"
        account = await AccountRepo(bridge.db).get("acct-alice")
        assert account is not None and account.state == ConnectionState.CONNECTED
    [row] = [
        m for m in await MessageRepo(db).history("loopback", "g") if m.text == "hello through the bridge"
    ]
    assert row.sender.user_id == "bob"


async def test_catch_up_after_restart(tmp_path: Path, db: Database, net: LoopbackNetwork) -> None:
    settings = settings_for(tmp_path, str(db.url.render_as_string(hide_password=False)))
    await link_loopback(settings, "acct-alice", "alice", "pw-alice")
    async with Bridge(settings).running() as bridge:
        await wait_until(lambda: bridge.supervisor.state("acct-alice") == ConnectionState.CONNECTED)
    missed = [net.post("g", "bob", f"while the bridge was down {i}")["id"] for i in range(5)]
    async with Bridge(settings).running() as bridge:
        messages = MessageRepo(bridge.db)

        async def caught_up() -> bool:
            ids = {m.remote_id for m in await messages.history("loopback", "g", limit=100)}
            return set(missed) <= ids

        await wait_until(caught_up)
    rows = await MessageRepo(db).history("loopback", "g", limit=100)
    assert sorted(m.remote_id for m in rows if m.remote_id in missed) == sorted(missed)
