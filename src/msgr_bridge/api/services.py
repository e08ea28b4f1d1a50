"""What the API uses of the running bridge, and nothing more: one narrow, typed interface.

The composition root (``app.Bridge``) satisfies it structurally and hands itself in; the API never imports
``app`` (not even for typing), so the dependency runs one way: ``app`` -> ``api`` -> services. Routes reach
the outbound service, the link service, account lookups and the database through these names only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..bus import Bus
    from ..config import Settings
    from ..connectors.protocol import Connector, ConnectorClass
    from ..credentials import CredentialStore
    from ..linking import LinkService
    from ..outbound.impersonation import Impersonation
    from ..outbound.service import OutboundService
    from ..schema import ConnectionState
    from ..sdk.hooks import HookRegistry
    from ..sdk.media import Media
    from ..store.db import Database
    from ..store.repos.accounts import AccountRepo
    from ..sync.progress import ProgressService


class ConnectorRegistry(Protocol):
    """The installed networks (``plugins.Registry``)."""

    @property
    def connectors(self) -> Mapping[str, ConnectorClass]: ...


class AccountRuntime(Protocol):
    """Live per-account state (``connectors.supervisor.Supervisor``)."""

    def connector(self, account_id: str) -> Connector | None: ...

    def state(self, account_id: str) -> ConnectionState: ...

    def runtime(self, account_id: str) -> object | None: ...


class ApiServices(Protocol):
    """The bridge as the API sees it."""

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

    @property
    def accounts(self) -> AccountRepo: ...

    @property
    def impersonation(self) -> Impersonation: ...

    @property
    def outbound(self) -> OutboundService | None: ...

    @property
    def links(self) -> LinkService: ...

    @property
    def media(self) -> Media: ...

    @property
    def registry(self) -> ConnectorRegistry: ...

    @property
    def progress(self) -> ProgressService: ...

    @property
    def supervisor(self) -> AccountRuntime: ...

    @property
    def hooks(self) -> HookRegistry: ...

    @property
    def started(self) -> bool: ...

    async def health(self) -> dict[str, Any]: ...

    async def scrape(self) -> bytes:
        """The Prometheus exposition of every metric, gauges sampled now (``/metrics``)."""
        ...
