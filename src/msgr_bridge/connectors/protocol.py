"""The connector contract: one typed Protocol every network implements, and what the core hands it.

A connector is a class registered by a plugin (``register_connectors`` hook). The supervisor creates one
instance per linked account with a ``ConnectorContext`` and drives it::

    connect()  ->  subscribe()  (runs until the connection ends)  ->  disconnect()

Inbound, the connector hands each raw platform payload (a JSON-compatible mapping) to ``ctx.sink``; the
inbound pipeline converts it with the connector's pure ``convert`` function, so a payload that fails to
convert is quarantined instead of crashing anything. Outbound, the core calls ``send_message``, ``edit``,
``delete``, ``react``, ``mark_read`` and ``set_typing`` after checking the declared ``capabilities``; a
connector raises ``NotSupported`` for anything it declares false. Back-off travels as exceptions
(``RateLimited(retry_after)``, ``TransientError``, ``AuthenticationFailed``, ``PermanentError``), never as a
sleep inside the connector.

Connectors never touch the database or the bus: their only doors are the context's sink, secrets handle,
namespaced state store and progress reporter; and they never open files or fetch URLs: attachments go through
``ctx.media``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import structlog
from pydantic import Field

from ..schema import (
    Account,
    Attachment,
    Capabilities,
    Contact,
    Conversation,
    Event,
    Frozen,
    OutboundMessage,
    ReactionAction,
    SendResult,
)
from ..sdk.hooks import Hooks
from ..sdk.message_ids import MemoryMessageIds, MessageIds
from ..sdk.progress import ProgressReporter, RecordingProgress
from ..sdk.state import KeyedStateStore

RawPayload = Mapping[str, Any]
"""A platform payload as the connector received it, JSON-compatible."""

Ack = Callable[[], Awaitable[None]]
"""Called by the pipeline once a payload is committed (for protocols that acknowledge deliveries)."""


# --- what the core gives a connector ----------------------------------------------------------------------


class InboundSink(Protocol):
    """Where a connector hands what it receives. ``push`` may wait (backpressure); it never drops."""

    async def push(self, payload: RawPayload, *, ack: Ack | None = None) -> None: ...


class AccountSecrets(Protocol):
    """A handle to the secrets of exactly one account; it can read nothing else."""

    async def get(self, key: str) -> str: ...

    async def get_optional(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, *, expires_at: datetime | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...


class ConnectorStateStore(Protocol):
    """Namespaced, persisted JSON values for one account (sync tokens, cursors). Plugins own no tables.

    The whole-value part of ``msgr_bridge.sdk.state.KeyedStateStore`` (what ``ctx.state`` is): helpers
    that only get and set may ask for this narrower type."""

    async def get(self, key: str, default: Any = None) -> Any: ...

    async def set(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class MediaStream:
    """An attachment handed to a connector: its size (known before the first byte) and its bytes in chunks,
    never the whole file at once. Valid inside the ``MediaAccess.open`` block that produced it."""

    name: str
    mime_type: str
    size: int
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True, slots=True)
class StoredMedia:
    """A platform's file stored by the core: the share-link URL clients fetch it from, and its size."""

    url: str
    size: int


class MediaAccess(Protocol):
    """Attachments in and out: the only way a connector reads or stores a file (``msgr_bridge.sdk.media``).

    ``open`` streams an outbound attachment (from share-link storage, or fetched when the operator allows
    remote URLs; local files never), refusing it past ``max_bytes`` with ``AttachmentRefused``.
    ``receive`` streams a platform's file into share-link storage, size capped while reading.
    """

    def open(
        self, attachment: Attachment, *, max_bytes: int | None = None
    ) -> AbstractAsyncContextManager[MediaStream]: ...

    async def receive(
        self, chunks: AsyncIterable[bytes], *, name: str, mime_type: str, max_bytes: int | None = None
    ) -> StoredMedia: ...


def _default_media() -> MediaAccess:
    from ..sdk.media import Media  # the core's media helper; imported late (it pulls in the store)

    return Media()


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorContext:
    """Everything a connector instance may use. Built by the supervisor, one per linked account."""

    account: Account
    sink: InboundSink
    secrets: AccountSecrets
    state: KeyedStateStore
    """get/set/delete/list by prefix, per-key TTL, bounded maps (``msgr_bridge.sdk.state``)."""
    clock: Clock
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Non-secret per-account settings chosen at link time (server address, nick, rooms to join)."""
    typed_settings: Any = None
    """The validated instance of the connector's ``settings_model`` (None when it declares none)."""
    log: Any = field(default_factory=lambda: structlog.get_logger("msgr_bridge.connector"))
    media: MediaAccess = field(default_factory=_default_media)
    """Attachments in and out (default: no storage, no remote fetch: only what the network hosts)."""
    messages: MessageIds = field(default_factory=MemoryMessageIds)
    """Read-only lookups: remote message id to canonical message and back (``msgr_bridge.sdk.message_ids``),
    for this account's conversations. The default knows no messages (tests add what they need)."""
    progress: ProgressReporter = field(default_factory=RecordingProgress)
    """History import and catch-up progress per conversation (``msgr_bridge.sdk.progress``): shown on the
    event stream, by the API and the CLI. The default only records the calls (tests read them)."""
    hooks: Hooks = field(default_factory=Hooks)
    """HTTP callbacks from the platform through the bridge's API (``msgr_bridge.sdk.hooks``); the default
    has no public URL (``register`` returns None: receive some other way)."""


# --- state sync -------------------------------------------------------------------------------------------


class SyncSnapshot(Frozen):
    """What ``sync_state`` found: entity snapshots plus raw history payloads missed while disconnected.

    History goes through the same inbound pipeline as live payloads (so dedupe makes catch-up idempotent).
    ``cursor`` is stored by the core and passed back on the next sync.
    """

    contacts: tuple[Contact, ...] = ()
    conversations: tuple[Conversation, ...] = ()
    history: tuple[RawPayload, ...] = ()
    cursor: str | None = None
    complete: bool = True
    """False when the snapshot is partial (e.g. the network only lets us see recent history)."""


# --- account linking --------------------------------------------------------------------------------------


class LinkStepKind(StrEnum):
    CREDENTIALS_FORM = "credentials_form"
    QR_CODE = "qr_code"
    OAUTH_URL = "oauth_url"
    DEVICE_CODE = "device_code"
    CODE_ENTRY = "code_entry"


FieldType = Literal["string", "integer", "number", "boolean", "list"]


class FormField(Frozen):
    name: str
    label: str
    secret: bool = False
    required: bool = True
    default: str | int | float | bool | tuple[str, ...] | None = None
    type: FieldType = "string"
    """How the answer is given: numbers and booleans as JSON numbers and booleans (strings are accepted
    too), a list as a JSON list or one comma-separated string."""
    help: str | None = None


class LinkStep(Frozen):
    """One step a person has to complete to link an account."""

    kind: LinkStepKind
    prompt: str = ""
    fields: tuple[FormField, ...] = ()
    qr_data: str | None = None
    """The payload to render as a QR code (the API renders PNG and data URI)."""
    url: str | None = None
    """OAuth authorize URL, or the verification URL of a device-code flow."""
    user_code: str | None = None
    expires_at: datetime | None = None


class LinkResult(Frozen):
    """The end of a link flow: who the account is, its non-secret settings and the secrets to store."""

    remote_user_id: str
    display_name: str | None = None
    settings: Mapping[str, Any] = Field(default_factory=dict)
    secrets: Mapping[str, str] = Field(default_factory=dict, repr=False)
    secrets_expire_at: datetime | None = None


class LinkFlow(Protocol):
    """A live link session; the API keeps it in memory between a person's steps."""

    async def start(self) -> LinkStep: ...

    async def submit(self, answers: Mapping[str, Any]) -> LinkStep | LinkResult:
        """Answer the current step. Raise (with a reason) to refuse an answer: the person answers the same
        step again. Answers are strings unless the flow sets ``typed_answers = True`` (then numbers and
        booleans arrive as such). A flow may also define ``async close()``: called once it has returned
        its ``LinkResult``, before the account's real connection starts (close test connections there).
        A flow whose QR-code or device-code step changes by itself (a rotating code, a sign-in elsewhere)
        and that takes an empty answer as a poll sets ``refresh_on_poll = True``: the API's
        ``GET /v1/links/{id}`` then answers the step with ``{}`` for the client."""
        ...

    async def cancel(self) -> None: ...


# --- the contract -----------------------------------------------------------------------------------------


@runtime_checkable
class Connector(Protocol):
    """What every network connector implements (``BaseConnector`` gives the defaults)."""

    network: ClassVar[str]
    """Short, stable network name: ``xmpp``, ``irc``, ``matrix``, ``loopback``..."""
    display_name: ClassVar[str]
    version: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    ctx: ConnectorContext

    def __init__(self, ctx: ConnectorContext) -> None: ...

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        """Start linking an account; ``settings`` are operator-provided defaults for the network."""
        ...

    @staticmethod
    def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
        """Pure conversion of one raw payload into canonical events. Raises on malformed input."""
        ...

    def conversation_capabilities(self, conversation_id: str) -> Capabilities:
        """Capabilities in one conversation (defaults to the network's)."""
        ...

    async def connect(self) -> None: ...

    async def subscribe(self) -> None:
        """Receive until the connection ends; raise ``TransientError`` on a lost connection."""
        ...

    async def disconnect(self) -> None: ...

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult: ...

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult: ...

    async def delete(self, conversation_id: str, target_id: str) -> None: ...

    async def react(
        self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction
    ) -> None: ...

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None: ...

    async def set_typing(self, conversation_id: str, active: bool) -> None: ...

    async def sync_state(self, cursor: str | None) -> SyncSnapshot: ...


ConnectorClass = type[Connector]
