"""Receipts of our own messages (``MessageReceipt``): stored per message and recipient, only ever forward, a
missing message held, and the outbox entry of a message the bridge sent moved to delivered, then read, with
its ``delivery_status`` in the event log; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from msgr_bridge.inbound.persist import DatabaseInboundStore
from msgr_bridge.schema import Account, Message, MessageReceipt, ReceiptState, Sender
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.repos.event_log import EventLogRepo
from msgr_bridge.store.repos.outbox import OutboxAction, OutboxRepo, OutboxState
from msgr_bridge.store.repos.receipts import ReceiptRepo

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def receipt(target: str, who: str, state: ReceiptState, minutes: int, conv: str = "bob@x") -> MessageReceipt:
    return MessageReceipt(
        network="xmpp",
        account_id="acct-a",
        conversation_id=conv,
        timestamp=T0 + timedelta(minutes=minutes),
        target_id=target,
        recipient=Sender(user_id=who),
        state=state,
    )


async def test_receipts_move_forward_only_and_move_the_outbox_entry(db: Database) -> None:
    await AccountRepo(db).create(Account(id="acct-a", network="xmpp", remote_user_id="a@x"))
    outbox = OutboxRepo(db)
    entry, _ = await outbox.create(
        "default", "acct-a", "bob@x", OutboxAction.SEND, {"text": "hi"}, txn_id="t1"
    )
    await outbox.claim_due()
    assert await outbox.mark_sent(entry.id, "m1") is not None
    store = DatabaseInboundStore(db)
    early = await store.persist("default", [receipt("m1", "bob@x", ReceiptState.DELIVERED, 1)], [])
    assert [s.outcome for s in early] == ["missing_target"]  # held by the pipeline until m1 is stored

    mine = Message(
        network="xmpp",
        account_id="acct-a",
        conversation_id="bob@x",
        remote_id="m1",
        sender=Sender(user_id="a@x", is_self=True),
        text="hi",
        txn_id="t1",
    )
    await store.persist("default", [mine], [])
    before = await EventLogRepo(db).last_seq()
    steps = [
        receipt("m1", "bob@x", ReceiptState.DELIVERED, 1),
        receipt("m1", "bob@x", ReceiptState.DELIVERED, 2),  # again: nothing new
        receipt("m1", "bob@x", ReceiptState.READ, 3),
        receipt("m1", "bob@x", ReceiptState.DELIVERED, 4),  # late: never moves it back
        receipt("m1", "carol@x", ReceiptState.READ, 5),  # read first: delivered then too
    ]
    outcomes = [(await store.persist("default", [r], []))[0].outcome for r in steps]
    assert outcomes == ["applied", "stale", "applied", "stale", "applied"]

    [row] = (await ReceiptRepo(db).for_messages([await _row_id(db)])).values()
    got = [(r.recipient_id, r.state, r.delivered_at, r.read_at) for r in row]
    assert got == [
        ("bob@x", ReceiptState.READ, T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)),
        ("carol@x", ReceiptState.READ, T0 + timedelta(minutes=5), T0 + timedelta(minutes=5)),
    ]
    after = await outbox.get(entry.id)
    assert after is not None and after.state is OutboxState.READ
    logged = [(e.kind, e.payload["state"]) for e in await EventLogRepo(db).read_after(before)]
    assert logged == [
        ("message_receipt", "delivered"),
        ("delivery_status", "delivered"),
        ("message_receipt", "read"),
        ("delivery_status", "read"),
        ("message_receipt", "read"),  # carol's: the entry is read already
    ]


async def _row_id(db: Database) -> int:
    from sqlalchemy import select

    from msgr_bridge.store.models import MessageRow

    async with db.read() as s:
        found = await s.scalar(select(MessageRow.id).where(MessageRow.remote_id == "m1"))
    assert found is not None
    return int(found)


def test_a_receipt_waits_for_its_message_like_an_edit() -> None:
    from msgr_bridge.inbound.pipeline import target_key

    assert target_key(receipt("m9", "bob@x", ReceiptState.READ, 0)) == ("xmpp", "bob@x", "m9")
