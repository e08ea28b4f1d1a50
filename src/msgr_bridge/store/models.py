"""The bridge's tables, as SQLAlchemy 2 typed declarative models. They run unchanged on SQLite and PostgreSQL.

Read these in the order a message travels: an **account** (bridge_accounts) of a **tenant** sees
**conversations** (bridge_channels) with **members**; a remote message becomes one canonical **messages** row,
linked through **message_accounts** to every linked account that saw it (so the same group message seen
through two accounts is stored once); edits, deletes, **reactions** and **read_markers** refer to it.
Outbound, a request becomes an **outbox** row first, each try a **delivery_attempts** row. Every stored
canonical event is appended to **event_log**, the stream the API's WebSocket resumes from.

Plugins own no tables: a connector keeps its own state in **connector_state** (namespaced JSON), and its
sync cursor in **sync_state**. Schema changes go through numbered alembic revisions in ``migrations/``; a
test compares these models with the migrated schema, so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import BigIntPK, UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


def _created() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


def _updated() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False)


def _account_fk() -> Mapped[str]:
    return mapped_column(ForeignKey("bridge_accounts.id", ondelete="CASCADE"), nullable=False)


# --- who --------------------------------------------------------------------------------------------------


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str | None]
    created_at: Mapped[datetime] = _created()


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None]
    created_at: Mapped[datetime] = _created()


class BridgeAccount(Base):
    """A linked account on one network. ``state`` is the connection state the supervisor last reported."""

    __tablename__ = "bridge_accounts"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    network: Mapped[str]
    remote_user_id: Mapped[str]
    display_name: Mapped[str | None]
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    capabilities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(default="stopped")
    state_reason: Mapped[str | None] = mapped_column(Text)
    credentials_expire_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    __table_args__ = (Index("ix_bridge_accounts_network_remote", "network", "remote_user_id"),)


# --- what an account sees ---------------------------------------------------------------------------------


class BridgeContact(Base):
    __tablename__ = "bridge_contacts"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = _account_fk()
    remote_id: Mapped[str]
    display_name: Mapped[str | None]
    avatar_url: Mapped[str | None] = mapped_column(Text)
    is_self: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = _updated()
    __table_args__ = (UniqueConstraint("account_id", "remote_id"),)


class BridgeChannel(Base):
    """A conversation (direct, group or channel) as one account sees it."""

    __tablename__ = "bridge_channels"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = _account_fk()
    network: Mapped[str]
    remote_id: Mapped[str]
    name: Mapped[str | None]
    type: Mapped[str] = mapped_column(default="group")
    topic: Mapped[str | None] = mapped_column(Text)
    last_sync_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = _updated()
    __table_args__ = (UniqueConstraint("account_id", "remote_id"),)


class Membership(Base):
    __tablename__ = "memberships"
    account_id: Mapped[str] = mapped_column(
        ForeignKey("bridge_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    conversation_id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(default="join")
    """The last membership action seen: join, leave, invite, kick, ban."""
    display_name: Mapped[str | None]
    updated_at: Mapped[datetime] = _updated()


# --- messages ---------------------------------------------------------------------------------------------


class MessageRow(Base):
    """One canonical message part. ``id`` only grows, so it doubles as the history cursor.

    The network's key (network, conversation, remote id, part) is unique: a duplicate arrival, or the same
    group message seen through a second linked account, hits the constraint instead of being stored twice.
    ``txn_id`` is our outbound transaction id when the message was sent by the bridge (echo matching).
    """

    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    network: Mapped[str]
    conversation_id: Mapped[str]
    remote_id: Mapped[str]
    part: Mapped[int] = mapped_column(Integer, default=0)
    sender_id: Mapped[str]
    sender_name: Mapped[str | None]
    text: Mapped[str] = mapped_column(Text, default="")
    formatted: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str] = mapped_column(default="plain")
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    reply_to: Mapped[str | None]
    thread_id: Mapped[str | None]
    mentions: Mapped[list[Any]] = mapped_column(default=list)
    sent_at: Mapped[datetime]
    edited_at: Mapped[datetime | None]
    edit_version: Mapped[int] = mapped_column(Integer, default=0)
    deleted_at: Mapped[datetime | None]
    txn_id: Mapped[str | None] = mapped_column(unique=True)
    outbox_id: Mapped[str | None]
    __table_args__ = (
        UniqueConstraint("network", "conversation_id", "remote_id", "part"),
        Index("ix_messages_conversation_cursor", "network", "conversation_id", "id"),
        Index("ix_messages_sender", "sender_id", "id"),
        Index("ix_messages_sent_at", "sent_at", "id"),
    )


class MessageAccount(Base):
    """Which linked accounts saw a message. Unique per (account, message)."""

    __tablename__ = "message_accounts"
    account_id: Mapped[str] = mapped_column(
        ForeignKey("bridge_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    message_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )


class ReactionRow(Base):
    __tablename__ = "reactions"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("messages.id", ondelete="CASCADE")
    )
    sender_id: Mapped[str]
    sender_name: Mapped[str | None]
    emoji: Mapped[str]
    created_at: Mapped[datetime] = _created()
    __table_args__ = (UniqueConstraint("message_id", "sender_id", "emoji"),)


class MessageReceiptRow(Base):
    """The other side's receipt of one of our messages: when ``recipient`` received it and read it
    (``MessageReceipt`` events). One row per (message, recipient); times are only ever set once."""

    __tablename__ = "message_receipts"
    message_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    )
    recipient_id: Mapped[str] = mapped_column(primary_key=True)
    recipient_name: Mapped[str | None]
    delivered_at: Mapped[datetime]
    """Read implies delivered: a read receipt that comes first sets both."""
    read_at: Mapped[datetime | None]


class ReadMarker(Base):
    """How far ``reader`` has read in a conversation, as seen by one account."""

    __tablename__ = "read_markers"
    account_id: Mapped[str] = mapped_column(
        ForeignKey("bridge_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    conversation_id: Mapped[str] = mapped_column(primary_key=True)
    reader_id: Mapped[str] = mapped_column(primary_key=True)
    up_to_id: Mapped[str]
    at: Mapped[datetime]


# --- outbound ---------------------------------------------------------------------------------------------


class OutboxRow(Base):
    """An accepted outbound action. Written before anything else happens to it (see OutboxRepo)."""

    __tablename__ = "outbox"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    tenant: Mapped[str]
    account_id: Mapped[str] = _account_fk()
    conversation_id: Mapped[str]
    action: Mapped[str]
    """send, edit, delete, react or mark_read."""
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None]
    txn_id: Mapped[str] = mapped_column(unique=True)
    state: Mapped[str] = mapped_column(default="queued")
    """scheduled, queued, sending, sent, delivered, read, failed, dead or cancelled."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    remote_id: Mapped[str | None]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key"),
        Index("ix_outbox_due", "state", "next_attempt_at", "created_at", "id"),
        Index("ix_outbox_conversation_state", "account_id", "conversation_id", "state", "created_at"),
    )


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    outbox_id: Mapped[str] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None]
    """None while claimed; ``on_wire`` while its send is being written (committed before the write); then
    sent, retry, failed, dead or interrupted (found on the wire after a crash)."""
    error: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (UniqueConstraint("outbox_id", "attempt"),)


# --- streams and logs -------------------------------------------------------------------------------------


class EventLogRow(Base):
    """Every stored canonical event, in order. ``seq`` is the resume cursor of the API's event stream."""

    __tablename__ = "event_log"
    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant: Mapped[str]
    account_id: Mapped[str | None]
    conversation_id: Mapped[str | None]
    kind: Mapped[str]
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (Index("ix_event_log_tenant_seq", "tenant", "seq"),)


class AuditLog(Base):
    """Append-only, hash-chained record of security-relevant actions (the triggers of migration 0002
    refuse UPDATE and DELETE on both backends)."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = _created()
    actor: Mapped[str]
    action: Mapped[str]
    target: Mapped[str | None]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str | None]
    hash: Mapped[str]


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    tenant: Mapped[str] = mapped_column(index=True)
    user_id: Mapped[str | None]
    name: Mapped[str]
    token_hash: Mapped[str] = mapped_column(unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None]


class WebOwner(Base):
    """The web app's owner login of a tenant (one per tenant): a name and a scrypt password hash."""

    __tablename__ = "web_owners"
    tenant: Mapped[str] = mapped_column(String, primary_key=True)
    username: Mapped[str]
    password_hash: Mapped[str]
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class WebSession(Base):
    """A signed-in browser: only the SHA-256 of its cookie is stored; bounded per tenant, expiring."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_tenant_created", "tenant", "created_at"),)
    id: Mapped[str] = mapped_column(String, primary_key=True)
    tenant: Mapped[str]
    token_hash: Mapped[str] = mapped_column(unique=True)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    last_seen_at: Mapped[datetime | None]


class ShareLink(Base):
    __tablename__ = "share_links"
    id: Mapped[str] = mapped_column(String, primary_key=True)
    tenant: Mapped[str] = mapped_column(default="default")
    token_hash: Mapped[str] = mapped_column(unique=True)
    kind: Mapped[str]
    target: Mapped[dict[str, Any]] = mapped_column(default=dict)
    storage_key: Mapped[str | None]
    expires_at: Mapped[datetime | None]
    max_views: Mapped[int | None] = mapped_column(Integer)
    views: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()


class QuarantineRow(Base):
    """A payload that failed conversion. ``payload`` is already redacted by the caller."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    network: Mapped[str]
    account_id: Mapped[str | None]
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


# --- plugin state -----------------------------------------------------------------------------------------


class ConnectorStateRow(Base):
    """One key of a connector's state. ``expires_at`` ends a key with a TTL; ``used_seq`` orders the keys of
    a bounded map by last use (the least recently used is dropped first)."""

    __tablename__ = "connector_state"
    account_id: Mapped[str] = mapped_column(
        ForeignKey("bridge_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    namespace: Mapped[str] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = _updated()
    expires_at: Mapped[datetime | None]
    used_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    __table_args__ = (
        Index("ix_connector_state_used", "account_id", "namespace", "used_seq"),
        Index("ix_connector_state_expiry", "account_id", "namespace", "expires_at"),
    )


class ConnectorStateMap(Base):
    """A bounded map of connector state: its bound and how many entries it has dropped to keep it."""

    __tablename__ = "connector_state_maps"
    account_id: Mapped[str] = mapped_column(
        ForeignKey("bridge_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    namespace: Mapped[str] = mapped_column(primary_key=True)
    max_entries: Mapped[int] = mapped_column(Integer)
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = _updated()


class SyncStateRow(Base):
    __tablename__ = "sync_state"
    account_id: Mapped[str] = mapped_column(
        ForeignKey("bridge_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    cursor: Mapped[str | None] = mapped_column(Text)
    last_sync_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _updated()


ALL_TABLES = tuple(Base.metadata.sorted_tables)
"""Every table, parents before children (the order the test fixtures truncate them in reverse)."""
