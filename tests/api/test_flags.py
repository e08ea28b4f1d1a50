"""Feature flags through the API: a flagged-off network cannot be linked, a flagged-off capability is a 422
that names the flag, and the users of the cohort go through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.app import Bridge
from msgr_bridge.flags import FlagRule
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.outbox import OutboxRepo
from msgr_bridge.testing.waiting import wait_until

from .conftest import NET, Api, settings_for


@asynccontextmanager
async def running(tmp_path: Path, db: Database, flags: dict[str, FlagRule]) -> AsyncIterator[Api]:
    settings = settings_for(tmp_path, db)
    settings.flags = flags
    async with Bridge(settings).running() as bridge:
        assert bridge.api is not None
        async with aiohttp.ClientSession() as http:
            api = Api(bridge, http, f"http://127.0.0.1:{bridge.api.bound_port}")
            api.admin = await api.token("admin:*")
            yield api


async def test_a_network_flagged_off_for_a_user_cannot_be_linked_by_them(
    tmp_path: Path, db: Database, net: LoopbackNetwork
) -> None:
    async with running(tmp_path, db, {"loopback": FlagRule(users=("pilot-user",))}) as api:
        outsider = await api.token("admin:*", user_id="someone")
        status, body = await api.call(
            "POST", "/v1/links", outsider, json={"network": "loopback", "settings": {"network": NET}}
        )
        assert status == 422 and body["code"] == "feature_disabled" and body["flag"] == "loopback", body
        pilot = await api.token("admin:*", user_id="pilot-user")
        status, body = await api.call(
            "POST", "/v1/links", pilot, json={"network": "loopback", "settings": {"network": NET}}
        )
        assert status == 201, body


async def test_a_capability_flagged_off_is_a_422_naming_the_flag_and_nothing_is_queued(
    tmp_path: Path, db: Database, net: LoopbackNetwork
) -> None:
    async with running(tmp_path, db, {"*.reactions": FlagRule(users=("alice-user",))}) as api:
        a = await api.link("alice", "pw-alice")
        conv = f"/v1/accounts/{a}/conversations/g"
        m1 = net.post("g", "bob", "react to me")["id"]
        bob_user = await api.token("admin:*", user_id="bob-user")
        pipeline = api.bridge.pipeline
        await wait_until(lambda: pipeline is not None and pipeline.stats.created >= 1)  # stored: reactable
        react = conv + f"/messages/{m1}/reactions"
        status, body = await api.call("POST", react, bob_user, json={"emoji": "👍"})
        assert status == 422 and body["code"] == "feature_disabled" and body["flag"] == "*.reactions", body
        assert await OutboxRepo(api.bridge.db).list() == []
        # the text itself is not flagged: the same user may still send
        status, body = await api.call("POST", conv + "/messages", bob_user, json={"text": "plain text"})
        assert status == 202, body
        alice_user = await api.token("admin:*", user_id="alice-user")
        status, body = await api.call("POST", react, alice_user, json={"emoji": "👍"})
        assert status == 202, body
