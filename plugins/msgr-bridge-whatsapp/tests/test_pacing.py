"""Ban avoidance: logins spaced with growing delays (kept in the account's state, so restarts are spaced
too) and an alert after repeated failures; sends paced with jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import structlog
from msgr_bridge_whatsapp.pacing import Relogin, SendPacer
from msgr_bridge_whatsapp.testing import FakeWhatsmeow
from neonize.proto import Neonize_pb2 as N
from structlog.testing import capture_logs

from conftest import build
from msgr_bridge.errors import TransientError
from msgr_bridge.testing.fakes import MemoryStateStore


class FakeClock:
    """Time moves only when someone sleeps."""

    def __init__(self) -> None:
        self.t = 1_000.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def relogin(clock: FakeClock, state: MemoryStateStore) -> Relogin:
    log = structlog.get_logger("test")
    return Relogin(state, clock, log, base_s=10, cap_s=100, alert_after=3)


async def test_relogins_wait_longer_after_each_failure_and_alert_after_three() -> None:
    clock, state = FakeClock(), MemoryStateStore()
    waits = []
    with capture_logs() as logs:
        for _ in range(5):
            waits.append(await relogin(clock, state).before_attempt())  # a new instance: a restarted bridge
            await relogin(clock, state).failed("connect failure")
    assert waits[0] == 0
    assert 10 <= waits[1] <= 12.5 and 20 <= waits[2] <= 25 and 40 <= waits[3] <= 50 and 80 <= waits[4] <= 100
    alerts = [e for e in logs if e["event"] == "whatsapp.relogin_alert"]
    assert [a["failures"] for a in alerts] == [3, 4, 5] and all(a["log_level"] == "error" for a in alerts)
    await relogin(clock, state).succeeded()
    assert await relogin(clock, state).before_attempt() == 0


async def test_a_temporary_ban_is_waited_out() -> None:
    clock, state = FakeClock(), MemoryStateStore()
    await relogin(clock, state).failed("banned", not_before=clock.now().timestamp() + 3600)
    assert await relogin(clock, state).before_attempt() == pytest.approx(3600)


async def test_a_failed_connect_counts_and_the_next_one_waits(fake: FakeWhatsmeow) -> None:
    async def refuse(go: FakeWhatsmeow, uuid: bytes) -> None:
        go.emit(
            N.ConnectFailure(Reason=N.INTERNAL_SERVER_ERROR, Message="try later", Raw=N.Node(Tag="failure")),
            uuid,
        )

    fake.on_connect = refuse
    clock, state = FakeClock(), MemoryStateStore()
    connector = build({"relogin_base_s": 30}, state=state, clock=clock)
    with pytest.raises(TransientError, match="connect_failure"):
        await connector.connect()
    with pytest.raises(TransientError):
        await connector.connect()
    assert len(clock.sleeps) == 1 and 30 <= clock.sleeps[0] <= 37.5
    assert (await state.get("relogin"))["failures"] == 2


async def test_sends_are_spaced_with_jitter() -> None:
    clock = FakeClock()
    pacer = SendPacer(clock, interval_s=1.0, jitter_s=1.5)
    for _ in range(4):
        await pacer.wait()
    assert len(clock.sleeps) == 3 and all(1.0 <= s <= 2.5 for s in clock.sleeps)
    assert len(set(clock.sleeps)) > 1  # not machine-regular


async def test_a_temporary_ban_at_login_is_recorded_once_with_its_expiry(fake: FakeWhatsmeow) -> None:
    async def ban(go: FakeWhatsmeow, uuid: bytes) -> None:
        go.emit(N.TemporaryBan(Code=N.TemporaryBan.SEND_TO_TOO_MANY_PEOPLE, Expire=7200), uuid)

    fake.on_connect = ban
    clock, state = FakeClock(), MemoryStateStore()
    connector = build(state=state, clock=clock)
    with pytest.raises(TransientError, match="banned"):
        await connector.connect()
    record = await state.get("relogin")
    assert record["failures"] == 1 and record["not_before"] == pytest.approx(clock.now().timestamp() + 7200)
    with pytest.raises(TransientError):
        await connector.connect()  # waits the ban out first
    assert clock.sleeps and clock.sleeps[0] == pytest.approx(7200, abs=1)
