"""What the API uses of the running bridge: one narrow, typed service per concern, each under its own app key.

Routes never see the bridge. Each gets the services it calls from ``common.py`` (``accounts_of``,
``links_of``, ``outbound_of``, ``queries_of``, ...), each typed by a small Protocol here listing only what
routes call: account views, the link flows, the outbound service, read-only queries, health, the media URL
check, the outbox's operations, the owner's token and audit operations, full-text search, metrics, the
connectors' HTTP hooks and the web app's sign-in.
The composition root (``msgr_bridge.app``) builds ``RouteServices`` from its parts and hands it in with
``ApiHost`` (what the server itself needs to run: settings, database, bus, credentials); the API never imports
``app`` (not even for typing), so the dependency runs one way. ``tests/api/test_layering.py`` checks that a
route module reaches for nothing outside these services.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from aiohttp import web

    from ..bus import Bus
    from ..config import Settings
    from ..connectors.protocol import Connector, ConnectorClass
    from ..credentials import CredentialStore
    from ..linking import LiveFlow
    from ..outbound.policy import PolicyOutcome, PolicyRequest
    from ..outbound.requests import OutboundRequest
    from ..schema import ConnectionState
    from ..sdk.hooks import Hooks
    from ..store.audit import VerifyReport
    from ..store.db import Database
    from ..store.repos.accounts import AccountRecord
    from ..store.repos.messages import StoredMessage
    from ..store.repos.outbox import OutboxEntry, OutboxState
    from ..store.repos.receipts import StoredReceipt
    from ..store.repos.search import SearchFilters, SearchHit
    from ..store.search_terms import Term
    from ..store.tokens import NewToken, TokenInfo
    from ..store.web_auth import SessionInfo
    from .queries import ConversationSummary
    from .web_session import LoginThrottle


class AccountViews(Protocol):
    """This tenant's accounts as routes show them: lookup, list, live state, capabilities, sync progress."""

    @property
    def tenant(self) -> str: ...

    @property
    def networks(self) -> Mapping[str, ConnectorClass]: ...

    async def get(self, account_id: str) -> AccountRecord | None: ...

    async def list(self) -> builtins.list[AccountRecord]: ...

    def connector(self, account_id: str) -> Connector | None: ...

    def live_state(self, account_id: str) -> ConnectionState | None: ...

    def progress(self, account_id: str) -> dict[str, Any]: ...


class LinkFlows(Protocol):
    """Account linking (``linking.LinkService``)."""

    async def start(
        self,
        network: str,
        settings: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        actor: str = "system",
    ) -> LiveFlow: ...

    def get(self, flow_id: str) -> LiveFlow: ...

    async def poll(self, flow_id: str) -> LiveFlow:
        """The flow now, its step refreshed first when it rotates (a QR code)."""
        ...

    @property
    def flows(self) -> Mapping[str, LiveFlow]:
        """The live flows by id (the OAuth link callback finds its flow by ``state``)."""
        ...

    async def submit(self, flow_id: str, answers: Mapping[str, Any]) -> LiveFlow: ...

    async def cancel(self, flow_id: str) -> LiveFlow: ...

    async def unlink(self, account_id: str, *, actor: str = "system") -> AccountRecord: ...


class SendPolicy(Protocol):
    async def evaluate(self, request: PolicyRequest, *, dry_run: bool = False) -> PolicyOutcome: ...


class Outbound(Protocol):
    """Sends and changes into the outbox, typing, and the sending policy (``outbound.service``)."""

    @property
    def policy(self) -> SendPolicy: ...

    async def submit(self, request: OutboundRequest) -> OutboxEntry: ...

    async def send_typing(self, request: OutboundRequest) -> bool: ...


class Queries(Protocol):
    """Read-only lookups of stored conversations, messages and outbox entries (``queries.ApiQueries``)."""

    async def conversation_exists(self, account_id: str, conversation_id: str) -> bool: ...

    async def message_exists(
        self, account_id: str, network: str, conversation_id: str, remote_id: str
    ) -> bool: ...

    async def conversation_page(
        self, account_id: str, network: str, me: str, *, after: str | None, limit: int
    ) -> list[ConversationSummary]: ...

    async def history(
        self, account_id: str, network: str, conversation_id: str, *, before: int | None, limit: int
    ) -> list[StoredMessage]: ...

    async def members(self, account_id: str, conversation_id: str) -> list[str]: ...

    async def outbox_entry(self, outbox_id: str) -> OutboxEntry | None: ...

    async def receipts(self, message_ids: Sequence[int]) -> dict[int, list[StoredReceipt]]:
        """Message row id -> who received and read it (the account's own messages in a history page)."""
        ...


class Health(Protocol):
    """``/health`` and ``/ready``."""

    @property
    def started(self) -> bool: ...

    async def health(self) -> dict[str, Any]: ...


class UrlCheck(Protocol):
    """The media URL rules (``sdk.media.Media``): a client's attachment URL is refused before it is queued."""

    def check_reference(self, url: str | None) -> None: ...


class OutboxOps(Protocol):
    """The outbox's operations (``outbox_ops.OutboxService``): entries of this tenant, cancel, retry and
    reschedule; a cancel or retry publishes the entry's new ``delivery_status``."""

    async def get(self, outbox_id: str) -> OutboxEntry | None:
        """The entry, or None when there is none in this tenant."""
        ...

    async def list(
        self, state: OutboxState | None, *, account_id: str | None, limit: int
    ) -> builtins.list[OutboxEntry]: ...

    async def cancel(self, entry: OutboxEntry, *, actor: str) -> OutboxEntry: ...

    async def retry(self, entry: OutboxEntry, *, actor: str) -> OutboxEntry: ...

    async def reschedule(
        self, entry: OutboxEntry, user: str | None, *, text: str | None, send_at: datetime | None
    ) -> OutboxEntry: ...


class OwnerAdmin(Protocol):
    """API tokens of this tenant and the audit log's check (``admin_ops.AdminService``), changes audited."""

    async def tokens(self) -> builtins.list[TokenInfo]: ...

    async def create_token(
        self, actor: str, *, name: str, scopes: builtins.list[str], ttl: timedelta | None
    ) -> NewToken: ...

    async def revoke_token(self, actor: str, token_id: str) -> TokenInfo:
        """Raises ``TokenUnknown`` for a token of no tenant or another tenant."""
        ...

    async def verify_audit(self) -> VerifyReport: ...


class SearchIndex(Protocol):
    """Full-text search (``store.repos.search.SearchRepo``)."""

    async def search(
        self,
        terms: Sequence[Term],
        filters: SearchFilters,
        *,
        limit: int = 20,
        self_ids: Mapping[str, str] | None = None,
    ) -> builtins.list[SearchHit]: ...


class MetricsSource(Protocol):
    async def scrape(self) -> bytes:
        """The Prometheus exposition of every metric, gauges sampled now (``/metrics``)."""
        ...


class Metrics(MetricsSource, Protocol):
    """``/metrics``: who may scrape (``[metrics] auth``) and the exposition."""

    @property
    def auth(self) -> str: ...


@dataclass(frozen=True)
class MetricsEndpoint:
    """``Metrics`` over the configured auth rule and what renders the metrics (the bridge)."""

    auth: str
    source: MetricsSource

    async def scrape(self) -> bytes:
        return await self.source.scrape()


class ConnectorHooks(Protocol):
    """Connectors' HTTP hooks (``sdk.hooks.HookRegistry``) with the route's bounds (``[api] hook_*``)."""

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def timeout_s(self) -> float: ...

    def find(self, network: str, account_id: str) -> Hooks | None: ...


class HookFinder(Protocol):
    def find(self, network: str, account_id: str) -> Hooks | None: ...


@dataclass(frozen=True)
class HookService:
    """``ConnectorHooks`` over the hook registry and the ``[api]`` bounds."""

    registry: HookFinder
    max_body_bytes: int
    timeout_s: float

    def find(self, network: str, account_id: str) -> Hooks | None:
        return self.registry.find(network, account_id)


class WebSignIn(Protocol):
    """The web app's owner sign-in (``web_session.WebAuth``): setup, login, sessions in a cookie."""

    @property
    def throttle(self) -> LoginThrottle: ...

    def check_origin(self, request: web.Request) -> None: ...

    async def from_cookie(self, request: web.Request) -> tuple[SessionInfo, str] | None: ...

    async def owner_exists(self) -> bool: ...

    async def setup_owner(self, token: str, username: str, password: str) -> bool:
        """False when the setup token is not valid; ``WebAuthError`` when the login is refused."""
        ...

    async def verify(self, username: str, password: str) -> bool: ...

    async def open_session(
        self, request: web.Request, body: Mapping[str, Any], status: int = 200
    ) -> web.Response:
        """A new session: the answer holds ``body``, the name and the CSRF token, and sets the cookie."""
        ...

    async def sign_out(self, request: web.Request, response: web.StreamResponse) -> None: ...


@dataclass(frozen=True)
class RouteServices:
    """Everything routes may use, one service per key (``keys.py``); composed by ``msgr_bridge.app``."""

    accounts: AccountViews
    links: LinkFlows
    outbound: Outbound | None
    queries: Queries
    health: Health
    urls: UrlCheck
    outbox: OutboxOps
    admin: OwnerAdmin
    search: SearchIndex
    hooks: ConnectorHooks
    metrics: Metrics


class ApiHost(Protocol):
    """What the API server itself needs (storage, share links, the event hub, tokens); not for routes."""

    @property
    def tenant(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def bus(self) -> Bus: ...

    @property
    def credentials(self) -> CredentialStore | None: ...


# --- the account views, composed from the bridge's parts -----------------------------------------------


class ConnectorRegistry(Protocol):
    """The installed networks (``plugins.Registry``)."""

    @property
    def connectors(self) -> Mapping[str, ConnectorClass]: ...


class AccountRuntime(Protocol):
    """Live per-account state (``connectors.supervisor.Supervisor``)."""

    def connector(self, account_id: str) -> Connector | None: ...

    def state(self, account_id: str) -> ConnectionState: ...

    def runtime(self, account_id: str) -> object | None: ...


class AccountLookup(Protocol):
    async def account(self, account_id: str) -> AccountRecord | None: ...


class AccountList(Protocol):
    async def list(self, tenant: str | None = None) -> builtins.list[AccountRecord]: ...


class ProgressSnapshot(Protocol):
    def snapshot(self, account_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class AccountService:
    """``AccountViews`` over the account repository, its cached lookup, the supervisor, the installed
    networks and the sync progress board."""

    tenant: str
    lookup: AccountLookup
    repo: AccountList
    runtime: AccountRuntime
    registry: ConnectorRegistry
    board: ProgressSnapshot

    @property
    def networks(self) -> Mapping[str, ConnectorClass]:
        return self.registry.connectors

    async def get(self, account_id: str) -> AccountRecord | None:
        return await self.lookup.account(account_id)

    async def list(self) -> builtins.list[AccountRecord]:
        return await self.repo.list(tenant=self.tenant)

    def connector(self, account_id: str) -> Connector | None:
        return self.runtime.connector(account_id)

    def live_state(self, account_id: str) -> ConnectionState | None:
        """The supervisor's state while the account runs, else None (the stored state then holds)."""
        return self.runtime.state(account_id) if self.runtime.runtime(account_id) is not None else None

    def progress(self, account_id: str) -> dict[str, Any]:
        return self.board.snapshot(account_id)
