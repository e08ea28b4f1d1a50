"""Accepting requests: idempotency, capability checks, impersonation scopes, policy, statuses."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from msgr_bridge.errors import ImpersonationDenied, NotSupported, OutboundRejected
from msgr_bridge.outbound.policy import PolicyEngine
from msgr_bridge.outbound.policy_rules import rules_from_config
from msgr_bridge.outbound.requests import OutboundRequest
from msgr_bridge.schema import Attachment, DeliveryState, DeliveryStatus, TextFormat
from msgr_bridge.store import audit
from msgr_bridge.store.models import OutboxRow
from msgr_bridge.store.repos import AccountRepo, OutboxState

from .conftest import ROOM, TENANT, Harness


async def outbox_count(h: Harness) -> int:
    async with h.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(OutboxRow)) or 0)


async def test_idempotency_key_returns_the_existing_entry_and_sends_once(harness: Harness) -> None:
    async with harness.live() as h:
        await h.connect()
        first = await h.service.submit(h.request("once", idempotency_key="k-1"))
        again = await h.service.submit(h.request("once", idempotency_key="k-1"))
        assert again.id == first.id and again.txn_id == first.txn_id
        await h.start_worker()
        await h.wait_for(first.id, OutboxState.SENT)
        after_sent = await h.service.submit(h.request("once", idempotency_key="k-1"))
        assert after_sent.id == first.id and after_sent.state is OutboxState.SENT
        assert await outbox_count(h) == 1
        assert h.sent_texts() == ["once"]
        with pytest.raises(OutboundRejected, match="already used for another request"):
            await h.service.submit(h.request("other", conversation_id="room-2", idempotency_key="k-1"))


@pytest.mark.parametrize(
    ("fields", "capability"),
    [
        ({"thread_id": "t-1"}, "threads"),
        ({"format": TextFormat.HTML, "formatted": "<b>x</b>"}, "formatted_text"),
    ],
)
async def test_undeclared_capability_is_refused_naming_it(
    harness: Harness, fields: dict[str, object], capability: str
) -> None:
    async with harness.live() as h:
        await h.connect()
        with pytest.raises(NotSupported) as info:
            await h.service.submit(h.request("x", **fields))
        assert info.value.capability == capability
        assert await outbox_count(h) == 0


async def test_limits_give_clear_errors(harness: Harness) -> None:
    async with harness.live() as h:  # not connected: the capabilities stored at link time apply
        with pytest.raises(OutboundRejected, match="at most 10000"):
            await h.service.submit(h.request("x" * 10_001))
        huge = Attachment(name="big.bin", size=200 * 1024 * 1024)
        with pytest.raises(OutboundRejected, match=r"big\.bin"):
            await h.service.submit(h.request("", attachments=(huge,)))
        with pytest.raises(ValueError, match="needs target_id"):
            h.request("x", action="edit")
        assert await outbox_count(h) == 0


async def test_impersonation_scopes(harness: Harness) -> None:
    async with harness.live() as h:
        with pytest.raises(ImpersonationDenied, match="belongs to another user"):
            await h.service.submit(h.request("x", user="mallory"))
        with pytest.raises(ImpersonationDenied, match="not a linked account of tenant"):
            await h.service.submit(h.request("x", tenant="other"))
        with pytest.raises(ImpersonationDenied):
            await h.service.submit(h.request("x", account_id="nope"))
        assert await outbox_count(h) == 0


async def test_queued_status_is_stored_and_published(harness: Harness) -> None:
    async with harness.live() as h:
        async with h.bus.subscribe(f"{TENANT}.loopback.delivery") as sub:
            entry = await h.service.submit(h.request("hi"))
            (env,) = await sub.receive_batch()
        status = env.message
        assert isinstance(status, DeliveryStatus)
        assert (status.outbox_id, status.state) == (entry.id, DeliveryState.QUEUED)
        assert entry.state is OutboxState.QUEUED  # not connected: accepted and waiting


async def test_policy_denial_fails_the_entry_with_the_reason_and_audits(harness: Harness) -> None:
    policy = PolicyEngine(
        rules_from_config({"destinations": [{"tenant": TENANT, "conversations": ["room-2"]}]})
    )
    async with harness.live(policy=policy) as h:
        await h.connect()
        await h.start_worker()
        async with h.bus.subscribe(f"{TENANT}.loopback.delivery") as sub:
            result = await h.service.submit_with_outcome(h.request("not here"))
            (env,) = await sub.receive_batch()
        assert result.created and result.policy is not None and not result.policy.allowed
        assert result.entry.state is OutboxState.FAILED and result.entry.last_error
        stored = await h.outbox.get(result.entry.id)
        assert stored is not None and stored.state is OutboxState.FAILED
        assert stored.last_error == result.policy.reason
        assert env.message.state is DeliveryState.FAILED and env.message.reason == result.policy.reason
        async with h.db.session() as s:
            actions = [e.action for e in await audit.entries(s)]
        assert actions == ["policy.deny"]
        allowed = await h.service.submit(h.request("fine here", conversation_id="room-2"))
        await h.wait_for(allowed.id, OutboxState.SENT)
        assert h.sent_texts() == [] and h.sent_texts("room-2") == ["fine here"]
        async with h.db.session() as s:
            assert [e.action for e in await audit.entries(s)] == ["policy.deny", "message.send"]


async def test_redaction_never_stores_the_original(harness: Harness) -> None:
    policy = PolicyEngine(rules_from_config({"dlp": {"builtin": ["card"], "action": "redact"}}))
    card = "4111 1111 1111 1111"
    async with harness.live(policy=policy) as h:
        await h.connect()
        await h.start_worker()
        entry = await h.service.submit(h.request(f"my card is {card}"))
        assert card not in str(entry.payload)
        await h.wait_for(entry.id, OutboxState.SENT)
        (text,) = h.sent_texts()
        assert card not in text and text.startswith("my card is")


async def test_unowned_account_is_shared_by_the_tenant(harness: Harness) -> None:
    from msgr_bridge.schema import Account

    await AccountRepo(harness.db).create(
        Account(id="shared", tenant=TENANT, network="loopback", remote_user_id="me")
    )
    async with harness.live() as h:
        entry = await h.service.submit(
            OutboundRequest(tenant=TENANT, user="anyone", account_id="shared", conversation_id=ROOM, text="x")
        )
        assert entry.account_id == "shared" and entry.state is OutboxState.QUEUED


async def test_typing_is_sent_directly_and_never_queued(harness: Harness) -> None:
    async with harness.live() as h:
        assert await h.service.send_typing(h.request(action="typing")) is False  # not connected
        await h.connect()
        assert await h.service.send_typing(h.request(action="typing")) is True
        assert [p["type"] for p in h.net.log] == ["typing"]
        assert await outbox_count(h) == 0
        with pytest.raises(OutboundRejected, match="not queued"):
            await h.service.submit(h.request(action="typing"))


async def test_submit_many_is_one_transaction_with_one_audit_row(harness: Harness) -> None:
    async with harness.live() as h:
        results = await h.service.submit_many(
            [
                h.request("a", idempotency_key="k-a"),
                h.request("b"),
                h.request("a", idempotency_key="k-a"),  # the same request twice in one batch
            ]
        )
        assert [r.created for r in results] == [True, True, False]
        assert results[2].entry.id == results[0].entry.id
        assert await outbox_count(h) == 2
        async with h.db.session() as s:
            (row,) = await audit.entries(s)
        assert row.action == "message.send" and row.actor == "user:alice"
        assert [e["outbox_id"] for e in row.details["entries"]] == [r.entry.id for r in results[:2]]
        with pytest.raises(NotSupported):  # all or nothing: a refused request writes nothing
            await h.service.submit_many([h.request("c"), h.request("d", thread_id="t")])
        assert await outbox_count(h) == 2
