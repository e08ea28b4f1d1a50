"""Scheduled sends (``send_at``) on SQLite and PostgreSQL: they wait ``scheduled`` in the outbox, survive a
restart, go out at their time through rate limits and delivery statuses, and can be changed or cancelled
before then (policy and capabilities checked again on a new text)."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from msgr_bridge.bus import topic
from msgr_bridge.cli_outbox import cancel_entry
from msgr_bridge.errors import ImpersonationDenied, NotSupported, OutboundRejected, PolicyDenied
from msgr_bridge.outbound.policy import Decision, PolicyEngine, PolicyRequest
from msgr_bridge.outbound.scheduled import MAX_AHEAD, NotScheduled, Scheduler
from msgr_bridge.schema import DeliveryState, DeliveryStatus
from msgr_bridge.store.repos import EventLogRepo, OutboxState
from msgr_bridge.store.types import utcnow

from .conftest import TENANT, Harness, caps

SOON = timedelta(seconds=0.6)


async def _statuses(h: Harness, outbox_id: str) -> list[str]:
    events = await EventLogRepo(h.db).read_after(0, limit=1000)
    return [e.payload["state"] for e in events if e.payload.get("outbox_id") == outbox_id]


async def test_a_scheduled_send_waits_then_goes_out_like_any_send(harness: Harness) -> None:
    async with harness.live() as h:
        await h.connect()
        async with h.bus.subscribe(topic(TENANT, "loopback", "delivery")) as sub:
            await h.start_worker()
            send_at = utcnow() + SOON
            entry = await h.service.submit(h.request("later", send_at=send_at))
            assert entry.state is OutboxState.SCHEDULED and entry.next_attempt_at == send_at
            now_entry = await h.service.submit(h.request("now"))  # not held behind the scheduled one
            await h.wait_for(now_entry.id, OutboxState.SENT)
            assert h.sent_texts() == ["now"]
            assert (await h.outbox.get(entry.id)).state is OutboxState.SCHEDULED  # type: ignore[union-attr]
            sent = await h.wait_for(entry.id, OutboxState.SENT, timeout=10)
            assert utcnow() >= send_at and h.sent_texts() == ["now", "later"]
            assert sent.remote_id is not None
            seen: list[DeliveryStatus] = []
            with anyio.fail_after(5):
                while not any(s.outbox_id == entry.id and s.state is DeliveryState.SENT for s in seen):
                    seen += [env.message for env in await sub.receive_batch()]
        assert [s.state.value for s in seen if s.outbox_id == entry.id] == ["scheduled", "queued", "sent"]
        assert await _statuses(h, entry.id) == ["scheduled", "queued", "sent"]


async def test_a_scheduled_send_survives_a_restart_and_goes_out_after_it(harness: Harness) -> None:
    async with harness.live() as h:
        await h.connect()
        await h.start_worker()
        send_at = utcnow() + timedelta(seconds=2)
        entry = await h.service.submit(h.request("after the restart", send_at=send_at))
    # the bridge is gone (worker, service, connector): only the database holds the entry
    stored = await harness.outbox.get(entry.id)
    assert stored is not None and stored.state is OutboxState.SCHEDULED
    await anyio.sleep((send_at - utcnow()).total_seconds() + 0.1)  # it came due while the bridge was down
    async with harness.live() as h:
        await h.connect()
        await h.start_worker()
        await h.wait_for(entry.id, OutboxState.SENT)
        assert h.sent_texts() == ["after the restart"]


async def test_list_change_and_cancel_before_it_goes(harness: Harness) -> None:
    async with harness.live() as h:
        await h.connect()
        await h.start_worker()
        first = await h.service.submit(h.request("first", send_at=utcnow() + timedelta(hours=2)))
        second = await h.service.submit(h.request("second", send_at=utcnow() + timedelta(hours=1)))
        listed = await h.outbox.list(OutboxState.SCHEDULED, by_due=True)
        assert [e.id for e in listed] == [second.id, first.id]

        scheduler = Scheduler(h.service)
        changed = await scheduler.reschedule(first, "alice", text="first, edited", send_at=utcnow() + SOON)
        assert changed.payload["text"] == "first, edited" and changed.state is OutboxState.SCHEDULED
        await h.wait_for(first.id, OutboxState.SENT)
        assert h.sent_texts() == ["first, edited"]
        with pytest.raises(NotScheduled):
            await scheduler.reschedule(changed, "alice", text="too late")

        cancelled = await cancel_entry(h.db, second.id)
        assert cancelled.state is OutboxState.CANCELLED
        assert (await _statuses(h, second.id))[-1] == "cancelled"
        await anyio.sleep(0.2)
        assert h.sent_texts() == ["first, edited"]


async def test_send_at_must_be_in_the_future_and_within_a_year(harness: Harness) -> None:
    async with harness.live() as h:
        with pytest.raises(OutboundRejected, match="not in the future"):
            await h.service.submit(h.request("past", send_at=utcnow() - timedelta(seconds=1)))
        with pytest.raises(OutboundRejected, match="days ahead"):
            await h.service.submit(h.request("far", send_at=utcnow() + MAX_AHEAD + timedelta(minutes=1)))
        with pytest.raises(ValueError, match="only a send"):
            h.request("x", action="delete", target_id="m1", send_at=utcnow() + SOON)
        assert await h.outbox.list() == []


async def test_a_changed_text_is_checked_by_policy_and_capabilities_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoSecrets:
        name = "no-secrets"

        async def check(self, request: PolicyRequest) -> Decision:
            if "secret" in request.message.text:
                return Decision.deny(self.name, "no secrets here")
            return Decision.allow(self.name)

    async with harness.live(policy=PolicyEngine([NoSecrets()])) as h:
        await h.connect()
        entry = await h.service.submit(h.request("harmless", send_at=utcnow() + timedelta(hours=1)))
        scheduler = Scheduler(h.service)
        with pytest.raises(PolicyDenied, match="no secrets"):
            await scheduler.reschedule(entry, "alice", text="the secret plan")
        short = caps(max_text_length=10)
        monkeypatch.setattr(h.connector, "conversation_capabilities", lambda conversation_id: short)
        with pytest.raises((OutboundRejected, NotSupported)):
            await scheduler.reschedule(entry, "alice", text="far longer than ten characters")
        kept = await h.outbox.get(entry.id)
        assert kept is not None and kept.payload["text"] == "harmless"
        assert kept.state is OutboxState.SCHEDULED


async def test_a_scheduled_send_refused_by_policy_fails_at_once(harness: Harness) -> None:
    class DenyAll:
        name = "deny-all"

        async def check(self, request: PolicyRequest) -> Decision:
            return Decision.deny(self.name, "not today")

    async with harness.live(policy=PolicyEngine([DenyAll()])) as h:
        entry = await h.service.submit(h.request("x", send_at=utcnow() + timedelta(hours=1)))
        assert entry.state is OutboxState.FAILED and entry.last_error == "not today"
        assert await _statuses(h, entry.id) == ["failed"]


async def test_only_a_user_who_may_speak_through_the_account_changes_it(harness: Harness) -> None:
    async with harness.live() as h:
        entry = await h.service.submit(h.request("mine", send_at=utcnow() + timedelta(hours=1)))
        with pytest.raises(ImpersonationDenied):
            await Scheduler(h.service).reschedule(entry, "mallory", send_at=utcnow() + timedelta(hours=2))
        kept = await h.outbox.get(entry.id)
        assert kept is not None and kept.next_attempt_at == entry.next_attempt_at
