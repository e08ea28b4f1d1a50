"""/metrics: scraped after real traffic through the loopback connector, its values checked; who may scrape;
the metrics port of its own; bounded per-account series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import anyio
import pytest
from msgr_bridge_loopback import LoopbackNetwork
from prometheus_client.parser import text_string_to_metric_families

from msgr_bridge.errors import PermanentError, RateLimited
from msgr_bridge.inbound.sink import AccountSink
from msgr_bridge.observability import metrics as m
from msgr_bridge.observability.sampled import Sampler
from msgr_bridge.schema import Account, ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.testing.waiting import wait_until
from tests.api.conftest import Api

from .conftest import Start

CONV = "/v1/accounts/{a}/conversations/g"
OPEN = {"metrics": {"auth": "none"}}


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def scrape(api: Api, base: str | None = None, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with api.http.get((base or api.base) + "/metrics", headers=headers) as r:
        return r.status, await r.text()


async def _state(api: Api, outbox_id: str, state: str) -> None:
    async def reached() -> bool:
        _, body = await api.call("GET", f"/v1/outbox/{outbox_id}")
        return bool(body["state"] == state)

    await wait_until(reached)


async def test_metrics_after_real_traffic(start: Start, net: LoopbackNetwork) -> None:
    async with start(**OPEN) as api:
        alice = await api.link("alice", "pw-alice")
        bob = await api.link("bob", "pw-bob")
        conv = CONV.format(a=alice)
        for i in range(3):
            net.post("g", "carol", f"in {i}")
        await wait_until(lambda: api.bridge.metrics.value(m.MESSAGES_IN, network="loopback") >= 3)
        # two sends go out, one is refused by the network, one waits for the platform's rate limit
        for text in ("one", "two"):
            status, body = await api.call("POST", conv + "/messages", json={"text": text})
            await _state(api, body["outbox_id"], "sent")
        net.inject_fault("send", PermanentError("the channel is gone"))
        _, body = await api.call("POST", conv + "/messages", json={"text": "refused"})
        await _state(api, body["outbox_id"], "failed")
        net.inject_fault("send", RateLimited(0.2))
        _, body = await api.call("POST", conv + "/messages", json={"text": "slow"})
        await _state(api, body["outbox_id"], "sent")
        # a payload the connector cannot convert is quarantined
        account = (await AccountRepo(api.bridge.db).get(alice)).to_schema()  # type: ignore[union-attr]
        await AccountSink(api.bridge.bus, account).push({"nonsense": True})
        await wait_until(lambda: api.bridge.metrics.value(m.QUARANTINED, network="loopback") == 1)
        await AccountRepo(api.bridge.db).set_credentials_expiry(bob, datetime.now(UTC) + timedelta(hours=2))
        assert api.bridge.api is not None
        ws_url = api.base.replace("http", "ws") + "/v1/events"
        async with api.http.ws_connect(ws_url, headers=api.h()):
            await wait_until(lambda: len(api.bridge.api.hub.clients) == 1)  # type: ignore[union-attr]
            if api.bridge.sampler is not None:
                api.bridge.sampler.min_interval_s = 0.0
            status, text = await scrape(api)
        assert status == 200
        s = parse(text)
        # 3 received from carol; our own 3 sent messages come back as echoes, stored as ours
        assert value(s, "msgr_messages_in_total", network="loopback") >= 3
        assert value(s, "msgr_messages_out_total", network="loopback", outcome="sent") == 3
        assert value(s, "msgr_messages_out_total", network="loopback", outcome="failed") == 1
        assert value(s, "msgr_errors_total", category="send_failed") == 1
        assert value(s, "msgr_errors_total", category="quarantined") == 1
        assert value(s, "msgr_quarantined_total", network="loopback") == 1
        assert value(s, "msgr_quarantine_rows") == 1
        assert value(s, "msgr_rate_limit_waits_total", network="loopback", source="platform") == 1
        assert value(s, "msgr_rate_limit_wait_seconds_total", network="loopback", source="platform") == (
            pytest.approx(0.2)
        )
        assert value(s, "msgr_stage_seconds_count", direction="in", stage="persist") >= 1
        assert value(s, "msgr_stage_seconds_count", direction="out", stage="send") == 5  # failures too
        assert value(s, "msgr_stage_seconds_count", direction="out", stage="outbox") >= 1
        assert value(s, "msgr_connector_accounts", network="loopback", state="connected") == 2
        assert value(s, "msgr_outbox_depth", state="queued") == 0
        assert value(s, "msgr_outbox_oldest_age_seconds") == 0
        assert value(s, "msgr_event_stream_clients") == 1
        lag = {dict(ls)["account"]: v for (n, ls), v in s.items() if n == "msgr_sync_lag_seconds"}
        assert set(lag) == {alice, bob} and all(0 <= v < 60 for v in lag.values())
        expiry = {dict(ls)["account"]: v for (n, ls), v in s.items() if n == "msgr_credential_expiry_seconds"}
        assert list(expiry) == [bob] and 7000 < expiry[bob] <= 7200
        # a queued entry whose account is stopped: depth and age of the oldest entry
        await api.bridge.supervisor.stop(alice)
        await wait_until(lambda: api.bridge.supervisor.state(alice) != ConnectionState.CONNECTED)
        _, body = await api.call("POST", conv + "/messages", json={"text": "waits"})
        await anyio.sleep(1.1)
        s = parse((await scrape(api))[1])
        assert (
            value(s, "msgr_outbox_depth", state="queued") + value(s, "msgr_outbox_depth", state="sending")
            == 1
        )
        assert value(s, "msgr_outbox_oldest_age_seconds") >= 1.0


async def test_metrics_need_an_admin_token_by_default(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        assert (await scrape(api))[0] == 401
        reader = await api.token("read:*")
        assert (await scrape(api, token=reader))[0] == 403
        status, text = await scrape(api, token=api.admin)
        assert status == 200 and "msgr_messages_in_total" in text


async def test_metrics_on_a_port_of_their_own(start: Start, net: LoopbackNetwork) -> None:
    async with start(metrics={"port": 0, "auth": "none"}) as api:
        assert api.bridge.api is not None
        port = api.bridge.api.metrics_port
        assert port is not None and port != api.bridge.api.bound_port
        status, text = await scrape(api, base=f"http://127.0.0.1:{port}")
        assert status == 200 and "msgr_outbox_depth" in text
        assert (await scrape(api, token=api.admin))[0] == 404  # not on the API's port any more
        async with api.http.get(f"http://127.0.0.1:{port}/health") as r:
            assert r.status == 404  # the metrics port serves /metrics only


async def test_metrics_can_be_switched_off(start: Start, net: LoopbackNetwork) -> None:
    async with start(metrics={"enabled": False}) as api:
        assert (await scrape(api, token=api.admin))[0] == 404


async def test_per_account_series_are_bounded_worst_first(db: Database) -> None:
    repo, metrics = AccountRepo(db), m.Metrics()
    now = datetime.now(UTC)
    for i in range(5):
        await repo.create(Account(id=f"acc{i}", network="loopback", remote_user_id=f"u{i}"))
        await repo.set_credentials_expiry(f"acc{i}", now + timedelta(days=i + 1))
    sampler = Sampler(db, "default", metrics, max_account_series=2)
    await sampler.refresh()
    s = parse(metrics.render().decode())
    kept = {dict(ls)["account"] for (n, ls), _ in s.items() if n == "msgr_credential_expiry_seconds"}
    assert kept == {"acc0", "acc1"}  # the soonest expiries
    assert value(s, "msgr_account_series_omitted", metric="msgr_credential_expiry_seconds") == 3


def test_every_metric_is_exported_with_its_help() -> None:
    text = m.Metrics().render().decode()
    for name, spec in m.METRICS.items():
        assert f"# HELP {name} {spec.help}" in text or f"# HELP {name.removesuffix('_total')}" in text, name


async def test_an_unknown_counter_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown counter"):
        m.Metrics().add("msgr_nope_total")


_ = aiohttp  # the Api helper's session type
