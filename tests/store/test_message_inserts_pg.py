"""PostgreSQL: an inbound batch of messages is ONE statement (``message_inserts_pg``) that stores what the
session path (``message_inserts`` + ``EventLogRepo``) stores, takes the event log's lock the same way, and
leaves the rows of messages it already has as they are."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from sqlalchemy import event, select, text

from msgr_bridge.errors import DatabaseError
from msgr_bridge.inbound.persist import DatabaseInboundStore
from msgr_bridge.schema import Account, Attachment, Mention, Message, Sender, TextFormat
from msgr_bridge.store.db import Database
from msgr_bridge.store.models import BridgeChannel, EventLogRow, MessageAccount, MessageRow
from msgr_bridge.store.repos import message_inserts_pg
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.repos.event_log import EventLogRepo, NewEvent

NETWORK = "xmpp"


@pytest.fixture
async def pg(db: Database) -> AsyncIterator[Database]:
    if db.is_sqlite:
        pytest.skip("SQLite stores a batch through its writer thread (message_inserts_thread)")
    for account, me in (("acct-a", "a@x"), ("acct-b", "b@x")):
        await AccountRepo(db).create(Account(id=account, network=NETWORK, remote_user_id=me))
    yield db


AT = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))


def message(conv: str, remote_id: str, account: str = "acct-a", **fields: Any) -> Message:
    fields.setdefault("sender", Sender(user_id="bob@x", display_name="Bob"))
    fields.setdefault("timestamp", AT)
    return Message(network=NETWORK, account_id=account, conversation_id=conv, remote_id=remote_id, **fields)


def batches(conv: str) -> list[list[Message]]:
    """Two batches covering every column and outcome: created, a second account's copy (linked), a copy
    inside the batch and one of an earlier batch (duplicates), parts, a 1:1 chat, a 64-bit overflow."""
    rich = message(
        conv,
        "m1",
        text="héllo 🎉",
        formatted="<b>héllo</b> 🎉",
        format=TextFormat.HTML,
        attachments=(Attachment(name="a.png", mime_type="image/png", size=2**70),),
        mentions=(Mention(user_id="carol@x", offset=0, length=5),),
        reply_to="m0",
        thread_id="t1",
    )
    return [
        [
            rich,
            rich.model_copy(update={"account_id": "acct-b"}),
            rich.model_copy(),
            message(conv, "m2", part=1, sender=Sender(user_id="dave@x")),
            message(f"{conv}-dm", "m3", sender=Sender(user_id=f"{conv}-dm"), text=""),
        ],
        [rich.model_copy(update={"account_id": "acct-b"}), message(conv, "m4", account="acct-b")],
    ]


async def store_both_ways(db: Database, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    store = DatabaseInboundStore(db)
    outcomes: dict[str, list[Any]] = {}
    for path, conv in (("session", "room-s"), ("statement", "room-1")):
        with monkeypatch.context() as patch:
            if path == "session":
                patch.setattr(message_inserts_pg, "fits", lambda messages: False)
            outcomes[path] = [
                [(s.outcome, s.logged.payload if s.logged else None) for s in await store.persist("t", b, [])]
                for b in batches(conv)
            ]
    return outcomes


def same_room(value: Any) -> Any:
    """``value`` with the session path's conversation ids renamed to the statement path's."""
    if isinstance(value, str):
        return value.replace("room-s", "room-1")
    if isinstance(value, dict):
        return {k: same_room(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(same_room(v) for v in value)
    return value


async def rows(db: Database, conv_prefix: str) -> dict[str, Any]:
    async with db.read() as s:
        messages = (
            await s.scalars(
                select(MessageRow)
                .where(MessageRow.conversation_id.startswith(conv_prefix))
                .order_by(MessageRow.id)
            )
        ).all()
        ids = {m.id: m.remote_id for m in messages}
        links = (await s.execute(select(MessageAccount.account_id, MessageAccount.message_id))).all()
        channels = (
            await s.scalars(select(BridgeChannel).where(BridgeChannel.remote_id.startswith(conv_prefix)))
        ).all()
        log = (
            await s.scalars(
                select(EventLogRow)
                .where(EventLogRow.conversation_id.startswith(conv_prefix))
                .order_by(EventLogRow.seq)
            )
        ).all()
    skip = {"id", "_sa_instance_state", "updated_at"}
    return same_room(
        {
            "messages": [{k: v for k, v in vars(m).items() if k not in skip} for m in messages],
            "links": sorted((a, ids[m]) for a, m in links if m in ids),
            "channels": sorted(
                tuple(sorted((k, v) for k, v in vars(c).items() if k not in skip)) for c in channels
            ),
            "log": [(e.tenant, e.account_id, e.conversation_id, e.kind, e.payload) for e in log],
        }
    )


async def test_the_statement_stores_what_the_session_path_stores(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes = await store_both_ways(pg, monkeypatch)
    assert same_room(outcomes["session"]) == outcomes["statement"]
    assert [o for o, _ in outcomes["statement"][0]] == [
        "created",
        "linked",
        "duplicate",
        "created",
        "created",
    ]
    assert [o for o, _ in outcomes["statement"][1]] == ["duplicate", "created"]
    session, statement = await rows(pg, "room-s"), await rows(pg, "room-1")
    assert session == statement
    assert len(statement["messages"]) == 4 and len(statement["log"]) == 4 and len(statement["channels"]) == 3
    m1 = statement["messages"][0]
    assert m1["attachments"] == [{"name": "a.png", "mime_type": "image/png", "size": 2**70}]
    assert m1["sent_at"] == datetime(2024, 5, 1, 10, 30, 15, 123456, tzinfo=UTC)


def count_statements(db: Database) -> list[str]:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", before)
    return seen


async def test_a_batch_of_messages_is_one_statement_whatever_its_size(pg: Database) -> None:
    """One round trip per batch (the session path took seven), and always the same text, so asyncpg's
    prepared statement is reused rather than prepared again for each batch size."""
    store = DatabaseInboundStore(pg)
    seen = count_statements(pg)
    for size in (1, 7, 300):
        seen.clear()
        stored = await store.persist("t", [message("room", f"s{size}-{i}") for i in range(size)], [])
        assert [s.outcome for s in stored] == ["created"] * size
        assert seen == [message_inserts_pg.INGEST]


async def test_a_copy_of_a_message_stored_lately_leaves_its_row_as_it_is(pg: Database) -> None:
    """A second account's copy (every group message two linked accounts see) of a message the store has
    just stored is linked without writing the message's row again: no new row version, so no index
    (full-text included) is updated for it (``RecentIds``)."""
    store = DatabaseInboundStore(pg)
    await store.persist("t", [message("room", "m1")], [])
    version = text("SELECT xmin::text FROM messages WHERE remote_id = 'm1'")
    async with pg.read() as s:
        before = await s.scalar(version)
    (copy,) = await store.persist("t", [message("room", "m1", account="acct-b")], [])
    assert copy.outcome == "linked"
    async with pg.read() as s:
        assert await s.scalar(version) == before


async def test_a_remembered_id_of_a_message_deleted_since_fails_once_then_is_forgotten(pg: Database) -> None:
    """Retention may delete a message (an old one from a catch-up) between two accounts' copies: the copy's
    batch is refused once (the pipeline splits and retries it) and the retry stores the message anew."""
    store = DatabaseInboundStore(pg)
    await store.persist("t", [message("room", "m1")], [])
    async with pg.session() as s:
        await s.execute(text("DELETE FROM messages WHERE remote_id = 'm1'"))
    with pytest.raises(DatabaseError):
        await store.persist("t", [message("room", "m1", account="acct-b")], [])
    (again,) = await store.persist("t", [message("room", "m1", account="acct-b")], [])
    assert again.outcome == "created"


async def test_new_messages_are_logged_after_the_event_logs_current_writer_commits(pg: Database) -> None:
    """The event log's order is its commit order: the statement takes the same advisory lock as
    ``EventLogRepo.append_many`` and waits for a writer that holds it, then logs after it."""
    store = DatabaseInboundStore(pg)
    stored: list[Sequence[Any]] = []

    async def waiting_for_the_lock() -> bool:
        async with pg.read() as s:
            waiting = await s.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND wait_event = 'advisory' AND query LIKE '%WITH batch AS MATERIALIZED%'"
                )
            )
        return bool(waiting)

    async def persist() -> None:
        stored.append(await store.persist("t", [message("room", "late")], []))

    async with anyio.create_task_group() as tg, pg.session() as s:
        (held,) = await EventLogRepo(pg).append_many(s, [NewEvent("t", None, None, "test", {})])
        tg.start_soon(persist)
        with anyio.fail_after(10):
            for _ in range(1_000_000):
                if await waiting_for_the_lock():
                    break
                await anyio.sleep(0.02)
        assert stored == []
        # the session commits here (before the task group waits): the statement goes on
    ((late,),) = stored
    assert late.outcome == "created" and late.seq is not None and late.seq > held
