"""The canonical schema: every network's events, converted into one set of frozen, versioned types.

Connectors turn platform payloads into these types with pure conversion functions; everything after the
connector (dedupe, persistence, the API, relay routes) only ever sees these. ``SCHEMA_VERSION`` goes up
when a change is not backwards compatible; ``docs/schema/`` holds the exported JSON Schema, and a test fails
when that export is stale (regenerate it with ``python -m msgr_bridge.schema docs/schema``).

Identifiers: ``account_id`` is the bridge's own id of a linked account; every ``*_id`` that names something
on the network (conversation, message, user) is the network's own id, as a string.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class Frozen(BaseModel):
    """Base of all canonical types: immutable, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- building blocks --------------------------------------------------------------------------------------


class TextFormat(StrEnum):
    PLAIN = "plain"
    HTML = "html"
    MARKDOWN = "markdown"


class Attachment(Frozen):
    name: str
    mime_type: str = "application/octet-stream"
    size: int | None = Field(default=None, ge=0)
    url: str | None = None
    """Where the content can be fetched (network URL, share link or local storage key)."""
    remote_id: str | None = None
    sha256: str | None = None


class Mention(Frozen):
    user_id: str
    display: str | None = None
    offset: int | None = Field(default=None, ge=0)
    length: int | None = Field(default=None, ge=0)


class Sender(Frozen):
    user_id: str
    display_name: str | None = None
    is_self: bool = False
    """True when the sender is the linked account itself (an echo of our own send, or sent elsewhere)."""


# --- events -----------------------------------------------------------------------------------------------


class EventBase(Frozen):
    schema_version: int = SCHEMA_VERSION
    network: str
    account_id: str
    conversation_id: str
    timestamp: AwareDatetime = Field(default_factory=utcnow)


class Message(EventBase):
    kind: Literal["message"] = "message"
    remote_id: str
    part: int = Field(default=0, ge=0)
    """Networks that split one message into several remote messages number the parts."""
    sender: Sender
    text: str = ""
    formatted: str | None = None
    format: TextFormat = TextFormat.PLAIN
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None
    thread_id: str | None = None
    mentions: tuple[Mention, ...] = ()
    txn_id: str | None = None
    """Our outbound transaction id when the network echoes it back; used to match echoes."""


CONTENT_FIELDS = ("text", "formatted", "format", "attachments", "reply_to", "thread_id", "mentions")
"""The content a message carries, the same in ``Message``, ``OutboundMessage`` and what is stored."""


def content_of(obj: object) -> dict[str, Any]:
    """``obj``'s content fields, to build one message type from another."""
    return {name: getattr(obj, name) for name in CONTENT_FIELDS}


class Edit(EventBase):
    kind: Literal["edit"] = "edit"
    target_id: str
    remote_id: str | None = None
    sender: Sender
    text: str
    formatted: str | None = None
    format: TextFormat = TextFormat.PLAIN
    version: int | None = None
    """A monotonically increasing edit number where the network has one; timestamps order edits otherwise."""


class Delete(EventBase):
    kind: Literal["delete"] = "delete"
    target_id: str
    sender: Sender | None = None


class ReactionAction(StrEnum):
    ADD = "add"
    REMOVE = "remove"


class Reaction(EventBase):
    kind: Literal["reaction"] = "reaction"
    target_id: str
    sender: Sender
    emoji: str
    action: ReactionAction = ReactionAction.ADD


class ReadReceipt(EventBase):
    kind: Literal["read_receipt"] = "read_receipt"
    up_to_id: str
    reader: Sender


class ReceiptState(StrEnum):
    DELIVERED = "delivered"
    READ = "read"


class MessageReceipt(EventBase):
    """The other side's receipt of a message *we* sent: ``recipient`` received (``delivered``) or read it.

    One event per message and recipient. Networks that report receipts per message (Signal, WhatsApp)
    emit one for each message named; networks that say "read up to X" (Matrix read receipts, Telegram's
    read outbox) emit one for X. ``read`` implies ``delivered``; a receipt never moves a message back.
    Stored per message and recipient (the message's ``receipts`` in the API), and a message the bridge
    sent moves its outbox entry to ``delivered`` or ``read`` (a ``delivery_status`` event) on its first
    such receipt. Distinct from ``ReadReceipt``, which moves a reader's read marker in a conversation."""

    kind: Literal["message_receipt"] = "message_receipt"
    target_id: str
    """The remote id of our message."""
    recipient: Sender
    state: ReceiptState


class Typing(EventBase):
    kind: Literal["typing"] = "typing"
    user: Sender
    active: bool = True


class MembershipAction(StrEnum):
    JOIN = "join"
    LEAVE = "leave"
    INVITE = "invite"
    KICK = "kick"
    BAN = "ban"
    RENAME = "rename"


class MembershipChange(EventBase):
    kind: Literal["membership"] = "membership"
    user: Sender
    action: MembershipAction
    new_name: str | None = None
    reason: str | None = None
    actor: Sender | None = None


class SyncPhase(StrEnum):
    HISTORY = "history"
    """The history import when an account is linked."""
    CATCHUP = "catchup"
    """Fetching what was missed while disconnected."""


class SyncProgress(EventBase):
    """How far a connector's history import or catch-up got in one conversation (``ctx.progress``).

    Not an inbound ``Event``: it is never stored in the event log, only streamed live (``seq`` null) and
    kept as the latest per conversation (``GET /v1/accounts/{id}``, field ``sync``)."""

    kind: Literal["sync_progress"] = "sync_progress"
    phase: SyncPhase = SyncPhase.HISTORY
    done: int = Field(ge=0)
    """Messages (or the connector's unit) fetched so far in this conversation."""
    total: int | None = Field(default=None, ge=0)
    """How many there are in all, when the connector knows."""
    finished: bool = False


Event = Annotated[
    Message | Edit | Delete | Reaction | ReadReceipt | MessageReceipt | Typing | MembershipChange,
    Field(discriminator="kind"),
]
"""Any inbound event, discriminated on ``kind``."""

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: Mapping[str, Any] | str | bytes) -> Event:
    """Validate a JSON document (or already-decoded mapping) into a canonical event."""
    if isinstance(data, str | bytes):
        return EVENT_ADAPTER.validate_json(data)
    return EVENT_ADAPTER.validate_python(data)


# --- entities ---------------------------------------------------------------------------------------------


class Contact(Frozen):
    kind: Literal["contact"] = "contact"
    network: str
    account_id: str
    remote_id: str
    display_name: str | None = None
    avatar_url: str | None = None
    is_self: bool = False


class ConversationKind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"
    CHANNEL = "channel"


class Conversation(Frozen):
    kind: Literal["conversation"] = "conversation"
    network: str
    account_id: str
    remote_id: str
    name: str | None = None
    type: ConversationKind = ConversationKind.GROUP
    topic: str | None = None
    members: tuple[str, ...] = ()
    """Remote user ids of the members, when the network lets us see them."""


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    TRANSIENT_DISCONNECT = "transient_disconnect"
    BAD_CREDENTIALS = "bad_credentials"
    CREDENTIALS_EXPIRING = "credentials_expiring"
    STOPPED = "stopped"


class Account(Frozen):
    kind: Literal["account"] = "account"
    id: str
    tenant: str = "default"
    network: str
    remote_user_id: str
    display_name: str | None = None
    state: ConnectionState = ConnectionState.STOPPED


# --- outbound ---------------------------------------------------------------------------------------------


class DeliveryState(StrEnum):
    """A delivery status is the outbox entry's state, named the same (``sending`` is never published)."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


class DeliveryStatus(Frozen):
    kind: Literal["delivery_status"] = "delivery_status"
    outbox_id: str
    account_id: str
    conversation_id: str
    state: DeliveryState
    remote_id: str | None = None
    reason: str | None = None
    timestamp: AwareDatetime = Field(default_factory=utcnow)
    _logged: Any = PrivateAttr(default=None)

    @property
    def logged(self) -> Any:
        """Its event-log entry as written (``store.repos.event_log.LoggedEvent``), when the publisher set it:
        the event stream sends it without reading the log back. Not part of the status itself."""
        return self._logged


class OutboundMessage(Frozen):
    """What the core asks a connector to send. ``txn_id`` is unique per outbox entry."""

    txn_id: str
    text: str = ""
    formatted: str | None = None
    format: TextFormat = TextFormat.PLAIN
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None
    thread_id: str | None = None
    mentions: tuple[Mention, ...] = ()


class SendResult(Frozen):
    """What a connector reports after a successful send: the network's id(s) for what it created."""

    remote_id: str
    extra_parts: tuple[str, ...] = ()
    """Remote ids of further parts when the connector had to split the message."""
    timestamp: AwareDatetime = Field(default_factory=utcnow)


# --- capabilities -----------------------------------------------------------------------------------------


class AttachmentRule(Frozen):
    mime_pattern: str = "*/*"
    """A MIME type, or a wildcard like ``image/*``."""
    max_size: int | None = Field(default=None, ge=0)


class Capabilities(Frozen):
    """What a network (or one conversation on it) can do. The core checks these before calling a connector;
    a connector raises ``NotSupported`` for anything it declares false."""

    send: bool = True
    formatted_text: bool = False
    edits: bool = False
    edit_max_age_s: int | None = None
    """How long after sending a message can still be edited; None means no limit."""
    deletes: bool = False
    delete_max_age_s: int | None = None
    reactions: bool = False
    replies: bool = False
    threads: bool = False
    read_receipts: bool = False
    typing: bool = False
    max_text_length: int | None = None
    attachments: tuple[AttachmentRule, ...] = ()
    """Empty means no attachments at all."""
    history_catchup: bool = False
    """Whether sync_state can fetch messages missed while disconnected."""
    e2ee: bool = False
    rate_limit_per_s: float | None = None
    """Default sustained send rate per conversation, for the outbound rate limiter."""
    rate_limit_burst: int | None = None
    echoes_own_sends: bool = False
    """The network hands our own sends back to us with their transaction id (an echo), so a send found on
    the wire after a crash can be matched instead of sent again."""
    dedupes_txn_id: bool = False
    """The network drops a second send carrying the same transaction id (Matrix ``PUT /send/{txnId}``).
    A network with neither this nor ``echoes_own_sends`` (IRC) can duplicate a send interrupted by a crash:
    the delivery worker keeps at most one send per conversation on the wire, so a crash duplicates at most
    that one."""

    def supports(self, capability: str) -> bool:
        value = getattr(self, capability)
        return bool(value)


# --- export -----------------------------------------------------------------------------------------------

EXPORTED: dict[str, Any] = {
    "event": EVENT_ADAPTER,
    "contact": Contact,
    "conversation": Conversation,
    "account": Account,
    "delivery_status": DeliveryStatus,
    "sync_progress": SyncProgress,
    "outbound_message": OutboundMessage,
    "capabilities": Capabilities,
}


def json_schemas() -> dict[str, str]:
    """File name -> JSON Schema text for every exported type (deterministic, for the staleness test)."""
    out: dict[str, str] = {}
    for name, target in EXPORTED.items():
        schema = target.json_schema() if isinstance(target, TypeAdapter) else target.model_json_schema()
        schema = {"$id": f"msgr-bridge/v{SCHEMA_VERSION}/{name}", **schema}
        out[f"{name}.v{SCHEMA_VERSION}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in json_schemas().items():
        path = directory / filename
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    for p in export(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schema")):
        print(p)
