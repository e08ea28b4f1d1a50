"""Reactions, read markers, memberships, contacts and conversations: idempotent upserts.

Every write here can be replayed (a catch-up sync, a restart, a second linked account) and leaves the same
rows; the ``changed`` counts say what actually changed, so the diff engine can tell "nothing new" from news.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, tuple_, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from ...schema import (
    Contact,
    Conversation,
    ConversationKind,
    MembershipAction,
    MembershipChange,
    Message,
    Reaction,
    ReactionAction,
    ReadReceipt,
)
from ..models import (
    BridgeAccount,
    BridgeChannel,
    BridgeContact,
    Membership,
    MessageRow,
    ReactionRow,
    ReadMarker,
)
from ..types import utcnow
from ._base import Repository, dialect_insert, in_session, table

MESSAGE_KEY = (MessageRow.network, MessageRow.conversation_id, MessageRow.remote_id, MessageRow.part)


@dataclass(frozen=True, slots=True)
class ReactionOutcome:
    target_exists: bool
    changed: bool
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class StoredReaction:
    sender_id: str
    sender_name: str | None
    emoji: str


@dataclass(frozen=True, slots=True)
class MembershipDiff:
    joined: tuple[str, ...]
    left: tuple[str, ...]


class ReactionRepo(Repository):
    async def apply(self, session: AsyncSession, reaction: Reaction) -> ReactionOutcome:
        """Add or remove one reaction. ``target_exists=False`` means the message has not arrived yet."""
        key = (reaction.network, reaction.conversation_id, reaction.target_id, 0)
        message_id = await session.scalar(select(MessageRow.id).where(tuple_(*MESSAGE_KEY) == key))
        if message_id is None:
            return ReactionOutcome(target_exists=False, changed=False)
        if reaction.action is ReactionAction.ADD:
            stmt = (
                dialect_insert(session, table(ReactionRow))
                .values(
                    message_id=message_id,
                    sender_id=reaction.sender.user_id,
                    sender_name=reaction.sender.display_name,
                    emoji=reaction.emoji,
                    created_at=reaction.timestamp,
                )
                .on_conflict_do_nothing()
                .returning(table(ReactionRow).c.id)
            )
        else:
            stmt = (
                delete(ReactionRow)
                .where(
                    ReactionRow.message_id == message_id,
                    ReactionRow.sender_id == reaction.sender.user_id,
                    ReactionRow.emoji == reaction.emoji,
                )
                .returning(ReactionRow.id)
                .execution_options(synchronize_session=False)
            )
        changed = (await session.execute(stmt)).first() is not None
        return ReactionOutcome(target_exists=True, changed=changed, message_id=message_id)

    async def list_for(self, message_id: int, *, session: AsyncSession | None = None) -> list[StoredReaction]:
        stmt = (
            select(ReactionRow.sender_id, ReactionRow.sender_name, ReactionRow.emoji)
            .where(ReactionRow.message_id == message_id)
            .order_by(ReactionRow.id)
        )
        async with self._read(session) as s:
            return [StoredReaction(*row) for row in (await s.execute(stmt))]


class ReadMarkerRepo(Repository):
    async def upsert(self, session: AsyncSession, receipt: ReadReceipt) -> bool:
        """Move a reader's marker; an older receipt than the stored one changes nothing. True when changed."""
        tbl = table(ReadMarker)
        stmt = dialect_insert(session, tbl).values(
            account_id=receipt.account_id,
            conversation_id=receipt.conversation_id,
            reader_id=receipt.reader.user_id,
            up_to_id=receipt.up_to_id,
            at=receipt.timestamp,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[tbl.c.account_id, tbl.c.conversation_id, tbl.c.reader_id],
            set_={"up_to_id": stmt.excluded.up_to_id, "at": stmt.excluded.at},
            where=(tbl.c.at < stmt.excluded.at) & (tbl.c.up_to_id != stmt.excluded.up_to_id),
        ).returning(tbl.c.reader_id)
        return (await session.execute(stmt)).first() is not None

    async def get(
        self, account_id: str, conversation_id: str, reader_id: str, *, session: AsyncSession | None = None
    ) -> tuple[str, datetime] | None:
        """``(up_to_id, at)`` of the reader's marker, or None."""
        stmt = select(ReadMarker.up_to_id, ReadMarker.at).where(
            ReadMarker.account_id == account_id,
            ReadMarker.conversation_id == conversation_id,
            ReadMarker.reader_id == reader_id,
        )
        async with self._read(session) as s:
            row = (await s.execute(stmt)).one_or_none()
            return (row[0], row[1]) if row else None


class MembershipRepo(Repository):
    async def apply(self, session: AsyncSession, change: MembershipChange) -> bool:
        """Record one membership event (join, leave, kick, ...; a rename updates the display name)."""
        tbl = table(Membership)
        name = change.new_name if change.action is MembershipAction.RENAME else change.user.display_name
        state = (
            MembershipAction.JOIN.value if change.action is MembershipAction.RENAME else change.action.value
        )
        stmt = dialect_insert(session, tbl).values(
            account_id=change.account_id,
            conversation_id=change.conversation_id,
            user_id=change.user.user_id,
            state=state,
            display_name=name,
            updated_at=utcnow(),
        )
        if change.action is MembershipAction.RENAME:
            set_ = {"display_name": stmt.excluded.display_name, "updated_at": stmt.excluded.updated_at}
            where = tbl.c.display_name.is_distinct_from(stmt.excluded.display_name)
        else:
            set_ = {"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at}
            where = tbl.c.state != stmt.excluded.state
            if name is not None:
                set_["display_name"] = stmt.excluded.display_name
                where = where | tbl.c.display_name.is_distinct_from(stmt.excluded.display_name)
        stmt = stmt.on_conflict_do_update(
            index_elements=[tbl.c.account_id, tbl.c.conversation_id, tbl.c.user_id],
            set_=set_,
            where=where,
        ).returning(tbl.c.user_id)
        return (await session.execute(stmt)).first() is not None

    async def replace_snapshot(
        self, session: AsyncSession, account_id: str, conversation_id: str, members: Sequence[str]
    ) -> MembershipDiff:
        """Make the joined members exactly ``members``: missing ones join, absent ones leave."""
        current = set(await self.members(account_id, conversation_id, session=session))
        wanted = set(members)
        joined, left = sorted(wanted - current), sorted(current - wanted)
        now = utcnow()
        if joined:
            tbl = table(Membership)
            stmt = dialect_insert(session, tbl)
            stmt = stmt.on_conflict_do_update(
                index_elements=[tbl.c.account_id, tbl.c.conversation_id, tbl.c.user_id],
                set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
            )
            rows = [
                {"account_id": account_id, "conversation_id": conversation_id, "user_id": u, "state": "join",
                 "display_name": None, "updated_at": now}
                for u in joined
            ]  # fmt: skip
            await session.execute(stmt, rows)
        if left:
            await session.execute(
                update(Membership)
                .where(
                    Membership.account_id == account_id,
                    Membership.conversation_id == conversation_id,
                    Membership.user_id.in_(left),
                )
                .values(state=MembershipAction.LEAVE.value, updated_at=now)
                .execution_options(synchronize_session=False)
            )
        return MembershipDiff(joined=tuple(joined), left=tuple(left))

    async def members(
        self, account_id: str, conversation_id: str, *, session: AsyncSession | None = None
    ) -> list[str]:
        """Remote user ids currently joined, sorted."""
        stmt = (
            select(Membership.user_id)
            .where(
                Membership.account_id == account_id,
                Membership.conversation_id == conversation_id,
                Membership.state == MembershipAction.JOIN.value,
            )
            .order_by(Membership.user_id)
        )
        async with self._read(session) as s:
            return list((await s.scalars(stmt)).all())


class ContactRepo(Repository):
    async def upsert(self, session: AsyncSession, contacts: Sequence[Contact]) -> int:
        """Insert or update contacts from a snapshot; returns how many rows were new or changed."""
        if not contacts:
            return 0
        tbl = table(BridgeContact)
        now = utcnow()
        rows = {
            (c.account_id, c.remote_id): {
                "account_id": c.account_id,
                "remote_id": c.remote_id,
                "display_name": c.display_name,
                "avatar_url": c.avatar_url,
                "is_self": c.is_self,
                "updated_at": now,
            }
            for c in contacts
        }
        stmt = dialect_insert(session, tbl)
        fields = ("display_name", "avatar_url", "is_self")
        stmt = stmt.on_conflict_do_update(
            index_elements=[tbl.c.account_id, tbl.c.remote_id],
            set_={**{f: stmt.excluded[f] for f in fields}, "updated_at": stmt.excluded.updated_at},
            where=or_(*(tbl.c[f].is_distinct_from(stmt.excluded[f]) for f in fields)),
        ).returning(tbl.c.id)
        return len((await session.execute(stmt, list(rows.values()))).all())

    async def list(self, account_id: str, *, session: AsyncSession | None = None) -> builtins.list[Contact]:
        stmt = (
            select(BridgeContact)
            .where(BridgeContact.account_id == account_id)
            .order_by(BridgeContact.remote_id)
        )
        async with self._read(session) as s:
            rows = (await s.scalars(stmt)).all()
            network = await _network_of(s, account_id)
            return [
                Contact(
                    network=network,
                    account_id=r.account_id,
                    remote_id=r.remote_id,
                    display_name=r.display_name,
                    avatar_url=r.avatar_url,
                    is_self=r.is_self,
                )
                for r in rows
            ]


class ChannelRepo(Repository):
    async def upsert(self, session: AsyncSession, conversations: Sequence[Conversation]) -> int:
        """Insert or update conversations from a snapshot; returns how many rows were new or changed.
        Members are not touched here: use ``MembershipRepo.replace_snapshot``."""
        if not conversations:
            return 0
        tbl = table(BridgeChannel)
        now = utcnow()
        rows = {
            (c.account_id, c.remote_id): {
                "account_id": c.account_id,
                "network": c.network,
                "remote_id": c.remote_id,
                "name": c.name,
                "type": c.type.value,
                "topic": c.topic,
                "last_sync_at": now,
                "updated_at": now,
            }
            for c in conversations
        }
        stmt = dialect_insert(session, tbl)
        fields = ("name", "type", "topic")
        stmt = stmt.on_conflict_do_update(
            index_elements=[tbl.c.account_id, tbl.c.remote_id],
            set_={**{f: stmt.excluded[f] for f in fields}, "last_sync_at": stmt.excluded.last_sync_at,
                  "updated_at": stmt.excluded.updated_at},
            where=or_(*(tbl.c[f].is_distinct_from(stmt.excluded[f]) for f in fields)),
        ).returning(tbl.c.id)  # fmt: skip
        return len((await session.execute(stmt, list(rows.values()))).all())

    @staticmethod
    async def ensure_for_messages(session: AsyncSession, messages: Sequence[Message]) -> None:
        """``ensure_for_messages_in`` in the session's transaction."""
        if messages:
            await in_session(session, lambda conn: ChannelRepo.ensure_for_messages_in(conn, messages))

    @staticmethod
    def ensure_for_messages_in(session: Connection, messages: Sequence[Message]) -> None:
        """Make sure every (account, conversation) these stored messages are in has a conversation row.

        Networks list their rooms in a sync snapshot, but a 1:1 chat (XMPP, an IRC query) or a room the
        snapshot did not name exists only through its messages; without a row it never appears in the
        conversation list. Such an implicit row has no name and ``last_sync_at`` NULL; its type is a guess
        (``direct`` when a message's sender is the conversation itself, as in a 1:1 chat, else ``group``)
        that a later snapshot replaces. One or two statements per batch, whatever its size."""
        if not messages:
            return
        groups, directs = ChannelRepo.implicit_rows(messages)
        group, direct = _implicit_inserts(session.dialect.name)
        if groups:
            session.execute(group, groups)
        if directs:
            session.execute(direct, directs)

    @staticmethod
    def implicit_rows(messages: Sequence[Message]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The implicit conversation rows of ``ensure_for_messages``: (group rows, direct rows)."""
        guessed: dict[tuple[str, str], dict[str, Any]] = {}
        now = utcnow()
        for m in messages:
            row = guessed.setdefault(
                (m.account_id, m.conversation_id),
                {"account_id": m.account_id, "network": m.network, "remote_id": m.conversation_id,
                 "name": None, "type": ConversationKind.GROUP.value, "topic": None, "last_sync_at": None,
                 "updated_at": now},
            )  # fmt: skip
            if m.sender.user_id == m.conversation_id:
                row["type"] = ConversationKind.DIRECT.value
        groups = [r for r in guessed.values() if r["type"] == ConversationKind.GROUP.value]
        directs = [r for r in guessed.values() if r["type"] == ConversationKind.DIRECT.value]
        return groups, directs

    @staticmethod
    def implicit_group(insert: Any) -> Any:
        """A group row is only added: a snapshot's row (or an earlier guess) is never overwritten."""
        return insert.on_conflict_do_nothing()

    @staticmethod
    def implicit_direct(insert: Any) -> Any:
        """A direct row also corrects an earlier guess of ``group``, unless a snapshot named the type."""
        tbl = table(BridgeChannel)
        return insert.on_conflict_do_update(
            index_elements=[tbl.c.account_id, tbl.c.remote_id],
            set_={"type": insert.excluded.type},
            where=tbl.c.last_sync_at.is_(None) & (tbl.c.type != insert.excluded.type),
        )

    async def get(
        self, account_id: str, remote_id: str, *, session: AsyncSession | None = None
    ) -> Conversation | None:
        stmt = select(BridgeChannel).where(
            BridgeChannel.account_id == account_id, BridgeChannel.remote_id == remote_id
        )
        async with self._read(session) as s:
            row = (await s.scalars(stmt)).one_or_none()
            if row is None:
                return None
            members = await MembershipRepo(self.db).members(account_id, remote_id, session=s)
            return _conversation(row, tuple(members))

    async def list(
        self, account_id: str, *, session: AsyncSession | None = None
    ) -> builtins.list[Conversation]:
        stmt = (
            select(BridgeChannel)
            .where(BridgeChannel.account_id == account_id)
            .order_by(BridgeChannel.remote_id)
        )
        async with self._read(session) as s:
            return [_conversation(row, ()) for row in (await s.scalars(stmt)).all()]


def _conversation(row: BridgeChannel, members: tuple[str, ...]) -> Conversation:
    return Conversation(
        network=row.network,
        account_id=row.account_id,
        remote_id=row.remote_id,
        name=row.name,
        type=ConversationKind(row.type),
        topic=row.topic,
        members=members,
    )


async def _network_of(session: AsyncSession, account_id: str) -> str:
    return (await session.scalar(select(BridgeAccount.network).where(BridgeAccount.id == account_id))) or ""


@functools.cache
def _implicit_inserts(dialect: str) -> tuple[Any, Any]:
    """``ensure_for_messages_in``'s two statements for a backend, built once (SQLAlchemy's PostgreSQL
    dialect imported only for PostgreSQL: a SQLite bridge never loads it)."""
    insert: Any = sqlite.insert
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        insert = postgresql.insert
    tbl = table(BridgeChannel)
    return ChannelRepo.implicit_group(insert(tbl)), ChannelRepo.implicit_direct(insert(tbl))
