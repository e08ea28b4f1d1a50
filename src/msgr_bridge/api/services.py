"""What the API uses of the running bridge: one narrow, typed service per concern, each under its own app key.

Routes never see the bridge. Each gets the services it calls from ``common.py`` (``accounts_of``,
``links_of``, ``outbound_of``, ``queries_of``, ...), each typed by a small Protocol here listing only what
routes call: account views, the link flows, the outbound service, read-only queries, health, the media URL
check. The composition root (``msgr_bridge.app``) builds ``RouteServices`` from its parts and hands it in with
``ApiHost`` (what the server itself needs to run: settings, database, bus, credentials); the API never imports
``app`` (not even for typing), so the dependency runs one way. ``tests/api/test_layering.py`` checks that a
route module reaches for nothing outside these services.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..bus import Bus
    from ..config import Settings
    from ..connectors.protocol import Connector, ConnectorClass
    from ..credentials import CredentialStore
    from ..linking import LiveFlow
    from ..outbound.policy import PolicyOutcome, PolicyRequest
    from ..outbound.requests import OutboundRequest
    from ..schema import ConnectionState
    from ..store.db import Database
    from ..store.repos.accounts import AccountRecord
    from ..store.repos.messages import StoredMessage
    from ..store.repos.outbox import OutboxEntry
    from .queries import ConversationSummary


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


class Health(Protocol):
    """``/health`` and ``/ready``."""

    @property
    def started(self) -> bool: ...

    async def health(self) -> dict[str, Any]: ...


class UrlCheck(Protocol):
    """The media URL rules (``sdk.media.Media``): a client's attachment URL is refused before it is queued."""

    def check_reference(self, url: str | None) -> None: ...


@dataclass(frozen=True)
class RouteServices:
    """Everything routes may use, one service per key (``keys.py``); composed by ``msgr_bridge.app``."""

    accounts: AccountViews
    links: LinkFlows
    outbound: Outbound | None
    queries: Queries
    health: Health
    urls: UrlCheck


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
