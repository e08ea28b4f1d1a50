"""The Slack connector inside a running bridge (SQLite, the HTTP API on a free port) against the fake:
linking through ``POST /v1/links``, a revoked token turning the account ``bad_credentials``, a 429 that
makes a message wait and then go out, and the echo of our own send stored once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from slack_world import FAST, Slack, eventually

from msgr_bridge.app import Bridge
from msgr_bridge.config import load_settings
from msgr_bridge.schema import ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing.waiting import wait_until


@dataclass
class Api:
    bridge: Bridge
    http: aiohttp.ClientSession
    base: str
    admin: str = ""

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.admin}"}
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            return r.status, await r.json(content_type=None)

    async def link(self, answers: dict[str, str]) -> dict[str, Any]:
        status, flow = await self.call("POST", "/v1/links", json={"network": "slack"})
        assert status == 201 and flow["step"]["kind"] == "credentials_form", flow
        status, done = await self.call("POST", f"/v1/links/{flow['id']}/answers", json={"answers": answers})
        assert status == 200, done
        return dict(done)

    def state(self, account_id: str) -> ConnectionState | None:
        return self.bridge.supervisor.state(account_id)


@asynccontextmanager
async def running_bridge(tmp_path: Path, slack: Slack) -> AsyncIterator[Api]:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    async with Database(url) as db:
        await db.migrate()
    settings = load_settings(
        overrides={
            "bridge": {"data_dir": str(tmp_path / "data"), "shutdown_timeout_s": 5},
            "database": {"url": url},
            "api": {"port": 0},
            "sync": {"interval_s": 3600},
            "networks": {"slack": {"api_url": slack.fake.base_url, **FAST}},
        }
    )
    async with Bridge(settings).running() as bridge:
        assert bridge.api is not None and "slack" in bridge.registry.connectors
        async with aiohttp.ClientSession() as http:
            api = Api(bridge, http, f"http://127.0.0.1:{bridge.api.bound_port}")
            api.admin = (
                await TokenStore(bridge.db).create(tenant=bridge.tenant, name="t", scopes=("admin:*",))
            ).token
            yield api


def slack_ts(slack: Slack, text: str) -> str:
    return next(m.ts for m in slack.general.messages.values() if m.text == text)


async def linked(api: Api, slack: Slack) -> str:
    done = await api.link(slack.secrets("socket_mode"))
    assert done["status"] == "linked", done
    account_id = str(done["account"]["id"])
    await wait_until(lambda: api.state(account_id) == ConnectionState.CONNECTED)
    return account_id


async def test_link_through_the_api_with_a_correction(tmp_path: Path, slack: Slack) -> None:
    async with running_bridge(tmp_path, slack) as api:
        status, flow = await api.call("POST", "/v1/links", json={"network": "slack"})
        assert status == 201
        assert {f["name"] for f in flow["step"]["fields"]} == {"token", "app_token", "cookie_d"}
        answer = f"/v1/links/{flow['id']}/answers"
        _, again = await api.call("POST", answer, json={"answers": {"token": slack.user_token.value}})
        assert again["status"] == "pending" and "xapp" in again["step"]["prompt"]  # corrected, not restarted
        _, done = await api.call("POST", answer, json={"answers": {"app_token": slack.app_token.value}})
        assert done["status"] == "linked" and done["account"]["remote_user_id"] == slack.me.id
        await wait_until(lambda: api.state(done["account"]["id"]) == ConnectionState.CONNECTED)
        refused = await api.link({"token": "xoxp-1-bogus", "app_token": slack.app_token.value})
        # a refused token keeps the flow on its step with the reason, to be answered again
        assert refused["status"] == "pending" and "invalid_auth" in refused["error"], refused
        assert refused["account"] is None


async def test_a_revoked_token_turns_the_account_bad_credentials(tmp_path: Path, slack: Slack) -> None:
    async with running_bridge(tmp_path, slack) as api:
        account_id = await linked(api, slack)
        slack.fake.revoke(slack.user_token.value, "token_revoked")
        await wait_until(lambda: api.state(account_id) == ConnectionState.BAD_CREDENTIALS)
        status, body = await api.call("GET", f"/v1/accounts/{account_id}")
        assert status == 200 and body["state"] == "bad_credentials"


async def test_a_rate_limited_send_waits_then_goes_out_and_its_echo_is_stored_once(
    tmp_path: Path, slack: Slack
) -> None:
    async with running_bridge(tmp_path, slack) as api:
        account_id = await linked(api, slack)
        conv = f"/v1/accounts/{account_id}/conversations/{slack.general.id}"
        slack.fake.fail("chat.postMessage", "ratelimited", retry_after=1)
        status, body = await api.call("POST", conv + "/messages", json={"text": "patience"})
        assert status == 202

        async def sent() -> bool:
            _, out = await api.call("GET", f"/v1/outbox/{body['outbox_id']}")
            return bool(out["state"] == "sent")

        await wait_until(sent, timeout=20)
        posts = [r for r in slack.fake.requests if r.method == "chat.postMessage"]
        assert [r.status for r in posts] == [429, 200]
        assert [m.text for m in slack.general.messages.values()] == ["patience"]
        await eventually(lambda: slack.fake.acks)  # the echo came back and was committed
        status, page = await api.call("GET", conv + "/messages")
        mine = [m for m in page["messages"] if m["text"] == "patience"]
        assert len(mine) == 1, page  # the recorded send; its echo (same ts) was recognised, not stored again
        assert mine[0]["id"] == slack_ts(slack, "patience") and mine[0]["sender"]["user_id"] == slack.me.id
        assert mine[0]["txn_id"]


async def test_a_file_sent_through_the_api_reaches_slack_streamed(tmp_path: Path, slack: Slack) -> None:
    async with running_bridge(tmp_path, slack) as api:
        account_id = await linked(api, slack)
        form = aiohttp.FormData()
        form.add_field("message", '{"text": "a file"}', content_type="application/json")
        form.add_field("file", b"x" * 5000, filename="a.bin", content_type="application/octet-stream")
        conv = f"/v1/accounts/{account_id}/conversations/{slack.general.id}"
        status, body = await api.call("POST", conv + "/messages", data=form)
        assert status == 202, body

        async def sent() -> bool:
            _, out = await api.call("GET", f"/v1/outbox/{body['outbox_id']}")
            return bool(out["state"] == "sent")

        await wait_until(sent, timeout=20)
        (msg,) = slack.general.messages.values()
        assert msg.text == "a file" and slack.fake.workspace.files[msg.files[0]].content == b"x" * 5000
