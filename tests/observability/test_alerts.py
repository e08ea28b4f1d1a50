"""Alert rules, each driven to fire and to resolve: an ``alert`` log event, the metrics, the webhook (bounded,
public addresses only unless allowed); and the shipped rules in config/example.toml are the defaults."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from aiohttp import web
from msgr_bridge_loopback import LoopbackNetwork
from structlog.testing import capture_logs

from msgr_bridge.config import load_settings
from msgr_bridge.config.ops_sections import SHIPPED_RULES, AlertRule
from msgr_bridge.observability import metrics as m
from msgr_bridge.observability.alerts import AlertEvaluator
from msgr_bridge.observability.sampled import Sampler
from msgr_bridge.observability.webhook import Webhook
from msgr_bridge.schema import Account, ConnectionState
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.repos.outbox import OutboxAction, OutboxRepo
from msgr_bridge.testing.waiting import wait_until

from .conftest import Start


class FakeSync:
    def __init__(self) -> None:
        self.last_ok: dict[str, float] = {}
        self.last_deaf: dict[str, float] = {}


class FakePipeline:
    def __init__(self) -> None:
        self.last_live: dict[str, float] = {}


class Rig:
    def __init__(self, db: Database, *rules: AlertRule, webhook: Webhook | None = None) -> None:
        self.db, self.metrics = db, m.Metrics()
        self.sync, self.pipeline = FakeSync(), FakePipeline()
        self.sampler = Sampler(
            db, "default", self.metrics, sync=self.sync, pipeline=self.pipeline, min_interval_s=0.0
        )
        self.evaluator = AlertEvaluator(rules, self.sampler, self.metrics, webhook=webhook)
        self.accounts = AccountRepo(db)

    async def account(self, account_id: str, state: ConnectionState = ConnectionState.CONNECTED) -> str:
        await self.accounts.create(Account(id=account_id, network="loopback", remote_user_id=account_id))
        await self.accounts.set_state(account_id, state, None)
        return account_id

    async def evaluate(self) -> tuple[list[str], list[dict[str, Any]]]:
        with capture_logs() as logs:
            started = await self.evaluator.evaluate_once()
        return [f.subject for f in started], logs

    def firing(self, rule: str) -> float:
        return self.metrics.value(m.ALERT_FIRING, rule=rule)


def alert_events(logs: list[dict[str, Any]], event: str = "alert") -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event]


async def test_failure_rate(db: Database) -> None:
    rule = AlertRule(name="failing", kind="failure_rate", threshold=0.5, window_s=60, min_events=4)
    rig = Rig(db, rule)
    assert await rig.evaluate() == ([], [])
    rig.metrics.add(m.MESSAGES_OUT, 3, network="loopback", outcome="sent")
    rig.metrics.add(m.MESSAGES_OUT, 3, network="loopback", outcome="failed")
    assert (await rig.evaluate())[0] == []  # half failed: not above the threshold
    rig.metrics.add(m.MESSAGES_OUT, 1, network="loopback", outcome="dead")
    subjects, logs = await rig.evaluate()
    assert subjects == ["bridge"]
    (event,) = alert_events(logs)
    assert event["alert"] == "failing" and event["kind"] == "failure_rate" and event["log_level"] == "error"
    assert event["value"] == pytest.approx(4 / 7, abs=1e-3)
    assert rig.metrics.value(m.ALERTS, rule="failing") == 1 and rig.firing("failing") == 1
    # still firing: nothing repeated
    assert (await rig.evaluate())[0] == []
    assert rig.metrics.value(m.ALERTS, rule="failing") == 1
    # outside the window, only fresh outcomes count: successes make it resolve
    for i in range(len(rig.evaluator._history)):
        at, totals = rig.evaluator._history[i]
        rig.evaluator._history[i] = (at - 120, totals)
    rig.metrics.add(m.MESSAGES_OUT, 10, network="loopback", outcome="sent")
    _, logs = await rig.evaluate()
    assert alert_events(logs, "alert.resolved")[0]["alert"] == "failing"
    assert rig.firing("failing") == 0


async def test_too_few_outcomes_never_fire(db: Database) -> None:
    rig = Rig(db, AlertRule(name="f", kind="failure_rate", threshold=0.1, min_events=5))
    await rig.evaluate()
    rig.metrics.add(m.MESSAGES_OUT, 4, network="loopback", outcome="failed")
    assert (await rig.evaluate())[0] == []


async def test_sync_lag(db: Database) -> None:
    rig = Rig(db, AlertRule(name="lag", kind="sync_lag", threshold=600))
    a = await rig.account("a")
    b = await rig.account("b")
    rig.sync.last_ok = {a: time.time() - 900, b: time.time() - 10}
    subjects, logs = await rig.evaluate()
    assert subjects == [a]
    assert alert_events(logs)[0]["value"] >= 900
    rig.sync.last_ok[a] = time.time()
    _, logs = await rig.evaluate()
    assert [e["subject"] for e in alert_events(logs, "alert.resolved")] == [a]


async def test_credential_expiry(db: Database) -> None:
    rig = Rig(db, AlertRule(name="expiry", kind="credential_expiry", threshold=86400))
    soon, later, gone = await rig.account("soon"), await rig.account("later"), await rig.account("gone")
    now = datetime.now(UTC)
    await rig.accounts.set_credentials_expiry(soon, now + timedelta(hours=2))
    await rig.accounts.set_credentials_expiry(later, now + timedelta(days=5))
    await rig.accounts.set_credentials_expiry(gone, now - timedelta(hours=1))
    subjects, logs = await rig.evaluate()
    assert sorted(subjects) == [gone, soon]
    reasons = {e["subject"]: e["reason"] for e in alert_events(logs)}
    assert "expired" in reasons[gone] and "expires" in reasons[soon]


async def test_dead_letters(db: Database) -> None:
    rig = Rig(db, AlertRule(name="dead", kind="dead_letters", threshold=2))
    outbox = OutboxRepo(db)
    a = await rig.account("a")
    ids = []
    for i in range(2):
        entry, _ = await outbox.create("default", a, "c", OutboxAction.SEND, {"text": f"t{i}"})
        ids.append(entry.id)
    await outbox.dead_letter(ids[0], "gave up")
    assert (await rig.evaluate())[0] == []  # one is below the threshold of two
    await outbox.dead_letter(ids[1], "gave up")
    subjects, logs = await rig.evaluate()
    assert subjects == ["outbox"] and alert_events(logs)[0]["value"] == 2
    assert "outbox list" in alert_events(logs)[0]["hint"]
    await outbox.cancel(ids[0])
    _, logs = await rig.evaluate()
    assert alert_events(logs, "alert.resolved")


async def test_bad_credentials(db: Database) -> None:
    rig = Rig(db, AlertRule(name="bad", kind="bad_credentials"))
    a = await rig.account("a")
    await rig.account("b")
    assert (await rig.evaluate())[0] == []
    await rig.accounts.set_state(a, ConnectionState.BAD_CREDENTIALS, "401 from the server")
    subjects, logs = await rig.evaluate()
    assert subjects == [a] and alert_events(logs)[0]["reason"] == "401 from the server"


async def test_deaf_is_what_a_periodic_sync_found(db: Database) -> None:
    rig = Rig(db, AlertRule(name="deaf", kind="deaf", window_s=600))
    a = await rig.account("a")
    assert (await rig.evaluate())[0] == []
    rig.sync.last_deaf[a] = time.monotonic() - 5
    assert (await rig.evaluate())[0] == [a]
    rig.sync.last_deaf[a] = time.monotonic() - 3600  # long ago, and not found deaf since
    _, logs = await rig.evaluate()
    assert alert_events(logs, "alert.resolved")


async def test_quiet_counts_from_the_last_live_payload_of_a_connected_account(db: Database) -> None:
    rig = Rig(db, AlertRule(name="quiet", kind="quiet", threshold=0.2, network="loopback"))
    a = await rig.account("a")
    await rig.account("stopped", ConnectionState.STOPPED)
    assert (await rig.evaluate())[0] == []  # just seen connected
    await anyio.sleep(0.3)
    assert (await rig.evaluate())[0] == [a]  # a stopped account is never quiet
    rig.pipeline.last_live[a] = time.monotonic()
    _, logs = await rig.evaluate()
    assert alert_events(logs, "alert.resolved")


async def test_the_running_bridge_evaluates_its_rules(start: Start, net: LoopbackNetwork) -> None:
    rules = [{"name": "bad", "kind": "bad_credentials"}]
    async with start(alerts={"interval_s": 0.05, "rules": rules}, metrics={"auth": "none"}) as api:
        alice = await api.link("alice", "pw-alice")
        assert api.bridge.alerts is not None and api.bridge.sampler is not None
        api.bridge.sampler.min_interval_s = 0.0
        await api.bridge.accounts.set_state(alice, ConnectionState.BAD_CREDENTIALS, "refused")
        await wait_until(lambda: api.bridge.metrics.value(m.ALERTS, rule="bad") == 1)
        async with api.http.get(api.base + "/metrics") as r:
            assert 'msgr_alert_firing{rule="bad"} 1.0' in await r.text()


# --- the webhook --------------------------------------------------------------------------------------


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[dict[str, Any]], list[int]]]:
    """A local endpoint: the bodies it received, and the statuses it answers with (default 200)."""
    received: list[dict[str, Any]] = []
    statuses: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", received, statuses
    await runner.cleanup()


async def test_the_webhook_gets_the_alert_and_its_resolution(db: Database, hook: Any) -> None:
    url, received, _ = hook
    webhook = Webhook(url, allow_networks=["127.0.0.0/8"], timeout_s=2)
    rig = Rig(db, AlertRule(name="bad", kind="bad_credentials"), webhook=webhook)
    a = await rig.account("a", ConnectionState.BAD_CREDENTIALS)
    await rig.evaluate()
    await rig.accounts.set_state(a, ConnectionState.CONNECTED, None)
    await rig.evaluate()
    assert [(b["status"], b["alert"], b["subject"]) for b in received] == [
        ("firing", "bad", a),
        ("resolved", "bad", a),
    ]
    assert received[0]["hint"] and received[0]["kind"] == "bad_credentials"


async def test_the_webhook_never_reaches_a_private_address_unless_allowed(hook: Any) -> None:
    url, received, _ = hook
    webhook = Webhook(url, retries=2, metrics=m.Metrics())
    with capture_logs() as logs:
        assert await webhook.post({"x": 1}) is False
    assert received == [] and webhook.calls == 0  # refused before any request, and not retried
    (failed,) = [e for e in logs if e["event"] == "alert.webhook_failed"]
    assert "webhook host" in failed["error"]
    assert webhook.metrics is not None and webhook.metrics.value(m.ALERT_WEBHOOK_FAILURES) == 1


async def test_webhook_retries_are_bounded(hook: Any) -> None:
    url, received, statuses = hook
    statuses.extend([500, 500, 500, 500])
    webhook = Webhook(url, retries=2, allow_networks=["127.0.0.1/32"])
    assert await webhook.post({"x": 1}) is False
    assert len(received) == 3 and webhook.calls == 3
    statuses.clear()
    statuses.extend([503])
    assert await webhook.post({"x": 2}) is True  # the second try passes
    assert len(received) == 5


async def test_a_webhook_that_hangs_is_timed_out(db: Database) -> None:
    async def slow(request: web.Request) -> web.Response:
        await anyio.sleep(5)
        return web.Response()

    app = web.Application()
    app.router.add_post("/", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        webhook = Webhook(
            f"http://127.0.0.1:{port}/", timeout_s=0.2, retries=0, allow_networks=["127.0.0.0/8"]
        )
        started = time.monotonic()
        assert await webhook.post({}) is False
        assert time.monotonic() - started < 2
    finally:
        await runner.cleanup()


# --- configuration ------------------------------------------------------------------------------------


def test_the_shipped_rules_are_the_default_and_bad_rules_are_refused() -> None:
    assert tuple(load_settings().alerts.rules) == SHIPPED_RULES
    with pytest.raises(ValueError, match="fraction"):
        AlertRule(name="x", kind="failure_rate", threshold=3)
    from msgr_bridge.errors import ConfigError

    with pytest.raises(ConfigError, match="name of its own"):
        load_settings(overrides={"alerts": {"rules": [{"name": "a", "kind": "bad_credentials"}] * 2}})
