"""Discord through the bridge's API against the Discord fake: linking a bot (a refused token answered again
in the same flow), sending as the person through a webhook, and the webhook's echo stored once (SQLite and
PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from msgr_bridge.app import Bridge
from msgr_bridge.config import load_settings
from msgr_bridge.schema import ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.models import MessageRow
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing.fakes.discord import DiscordFake
from msgr_bridge.testing.waiting import wait_until


async def test_link_send_as_the_person_and_the_echo_is_stored_once(tmp_path: Path, db: Database) -> None:
    async with DiscordFake() as fake:
        bot, token = fake.add_bot("bridge-bot")
        bob = fake.add_user("bob")
        channel = fake.add_channel(fake.add_guild("Guild", [bot["id"], bob["id"]])["id"], "general")
        discord = {"api_base": fake.api_url, "gateway_url": fake.gateway_url, "allow_webhooks": True}
        settings = load_settings(
            overrides={
                "bridge": {"data_dir": str(tmp_path / "data"), "shutdown_timeout_s": 5},
                "database": {"url": db.url.render_as_string(hide_password=False)},
                "api": {"port": 0},
                "sync": {"interval_s": 3600},
                "networks": {"discord": discord},
            }
        )
        async with Bridge(settings).running() as bridge, aiohttp.ClientSession() as http:
            assert bridge.api is not None
            base = f"http://127.0.0.1:{bridge.api.bound_port}"
            admin = (
                await TokenStore(bridge.db).create(tenant=bridge.tenant, name="t", scopes=("admin:*",))
            ).token

            async def call(method: str, path: str, **kw: Any) -> tuple[int, Any]:
                async with http.request(
                    method, base + path, headers={"Authorization": f"Bearer {admin}"}, **kw
                ) as r:
                    return r.status, await r.json()

            status, flow = await call("POST", "/v1/links", json={"network": "discord"})
            assert status == 201 and flow["step"]["kind"] == "credentials_form"
            assert [f["name"] for f in flow["step"]["fields"] if f["secret"]] == ["token"]
            _, refused = await call(
                "POST", f"/v1/links/{flow['id']}/answers", json={"answers": {"token": "x.y.z"}}
            )
            assert refused["status"] == "pending" and "401" in refused["error"]  # answer again, same flow
            answers = {"token": token, "person_name": "Alice"}
            status, done = await call("POST", f"/v1/links/{flow['id']}/answers", json={"answers": answers})
            assert status == 200 and done["status"] == "linked", done
            account = done["account"]["id"]
            await wait_until(lambda: bridge.supervisor.state(account) == ConnectionState.CONNECTED)

            conv = f"/v1/accounts/{account}/conversations/{channel['id']}"
            status, queued = await call("POST", conv + "/messages", json={"text": "hello bob"})
            assert status == 202

            async def sent() -> bool:
                _, body = await call("GET", f"/v1/outbox/{queued['outbox_id']}")
                return bool(body["state"] == "sent")

            await wait_until(sent)
            _, entry = await call("GET", f"/v1/outbox/{queued['outbox_id']}")
            on_discord = fake.messages[channel["id"]][entry["remote_id"]]
            assert on_discord["author"]["username"] == "Alice" and on_discord["webhook_id"] in fake.webhooks

            fake.post(channel["id"], bob["id"], "hi alice")

            async def both() -> bool:
                _, page = await call("GET", conv + "/messages")
                return [m["text"] for m in page["messages"]] == ["hi alice", "hello bob"]

            await wait_until(both)
            # The echo went through the pipeline too (stored first or matched to the delivery record,
            # whichever came first), as did bob's message.
            await wait_until(lambda: bridge.pipeline is not None and bridge.pipeline.stats.events >= 2)
            async with bridge.db.session() as s:
                stored = await s.scalar(select(func.count()).select_from(MessageRow))
            assert stored == 2  # our send and its echo from the gateway are one message
