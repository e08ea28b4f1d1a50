"""The composition root and lifespan: config -> store -> credentials -> bus -> pipelines -> connectors -> api.

``Bridge`` owns every long-lived part and starts them in that order inside one anyio task group; it stops
them in reverse, each within the shutdown bound. ``run_bridge`` adds signal handling for ``msgr-bridge run``.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from sqlalchemy import text

from .api.admin_ops import AdminService
from .api.app import ApiServer
from .api.outbox_ops import OutboxService
from .api.queries import ApiQueries
from .api.services import AccountService, HookService, MetricsEndpoint, RouteServices
from .bus import MemoryBus
from .connectors.clock import SystemClock
from .connectors.protocol import Connector, ConnectorContext
from .connectors.supervisor import AccountRuntime, Supervisor
from .credentials.base import CredentialStore
from .credentials.expiry import ExpiryWatcher
from .credentials.factory import build_credential_store
from .credentials.scoped import ScopedSecrets
from .errors import BridgeError, ConfigError
from .flags import FeatureFlags
from .inbound.dedupe import DedupeCache
from .inbound.notify import BusNotifier
from .inbound.persist import DatabaseInboundStore
from .inbound.pipeline import InboundPipeline
from .inbound.sink import AccountSink
from .linking import LinkService
from .memory import QuietTrim, freeze_start_up
from .observability.alerts import AlertEvaluator
from .observability.logging import configure_logging
from .observability.metrics import Metrics
from .observability.otel_setup import TracingHandle, configure_tracing
from .observability.sampled import Sampler
from .observability.webhook import Webhook
from .outbound.delivery import DeliverySettings, DeliveryWorker
from .outbound.impersonation import Impersonation
from .outbound.policy import PolicyEngine
from .outbound.ratelimit import make_rate_limiter
from .outbound.service import OutboundService
from .plugins import PluginManager, Registry
from .retention import RetentionJob
from .schema import Account, ConnectionState
from .sdk.hooks import HookRegistry
from .sdk.media import Media, MediaRules
from .sdk.settings import settings_model_of, validate_settings
from .store.audit_events import CredentialAudit, record_config_change
from .store.db import Database
from .store.repos.accounts import AccountRecord, AccountRepo
from .store.repos.connector_state import AccountState
from .store.repos.message_ids import AccountMessageIds
from .store.repos.search import SearchRepo
from .sync.jobs import SyncJob
from .sync.progress import ProgressService

log = structlog.get_logger("msgr_bridge.app")


class Bridge:
    def __init__(self, settings: Any, *, plugin_manager: PluginManager | None = None) -> None:
        self.settings = settings
        self.tenant: str = settings.bridge.tenant
        self.pm = plugin_manager or PluginManager(allow=settings.plugins.allow, deny=settings.plugins.deny)
        self.registry: Registry = Registry()
        self.db = Database(settings.database.url, pool_size=settings.database.pool_size)
        self.bus = MemoryBus()
        self.accounts = AccountRepo(self.db)
        self.credentials: CredentialStore | None = None
        self.metrics = Metrics()
        self.credential_audit = CredentialAudit(self.db)
        self.expiry: ExpiryWatcher | None = None
        self.pipeline: InboundPipeline | None = None
        self.dedupe = DedupeCache()
        """Shared by the inbound pipeline and the delivery recorder (which enters our own sends)."""
        self.sync: SyncJob | None = None
        self.supervisor = Supervisor(on_state=self._on_state, on_connected=self._on_connected)
        self.api: ApiServer | None = None
        # outbound (wired in _start_parts) and account linking, both used by the API
        self.impersonation = Impersonation(self.db, self.supervisor)
        self.delivery: DeliveryWorker | None = None
        self.outbound: OutboundService | None = None
        self.flags = FeatureFlags(settings.flags)
        self.links = LinkService(self, ttl_s=settings.api.link_flow_ttl_s)
        self.media = Media(
            MediaRules.from_settings(settings.media),
            shares=lambda: self.api.shares if self.api is not None else None,
        )
        """Attachments in and out for every connector (``ctx.media``) and the API's URL check."""
        self.progress = ProgressService(self.bus, self.tenant, self.db)
        self.hooks = HookRegistry(settings.api.public_base_url)
        """Connectors' HTTP callbacks (``ctx.hooks``), served at ``/hooks/`` by the API."""
        """Import progress per account and conversation (``ctx.progress``), streamed, stored, shown."""
        self.retention: RetentionJob | None = None
        self.memory = QuietTrim(self.db)
        """Gives memory back once a burst is over (``memory.py``)."""
        self.sampler: Sampler | None = None
        self.alerts: AlertEvaluator | None = None
        self.tracing: TracingHandle | None = None
        self.started = False
        self._tg: TaskGroup | None = None

    # --- lifespan -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self, host: str | None = None, port: int | None = None) -> AsyncIterator[Bridge]:
        """Start everything, yield the running bridge, and stop it all (in reverse) on exit."""
        s = self.settings
        async with AsyncExitStack() as stack:
            self.registry = self.pm.load()
            self.pm.collect_policy_rules(s)
            new_database = s.embedded_database and self.db.is_new_file()
            self.tracing = configure_tracing(s)
            if self.tracing is not None:
                stack.callback(self.tracing.shutdown)  # last: exports what is still queued
            await self.db.connect()
            stack.push_async_callback(self.db.close)
            self.memory.attach()  # before anything else uses the engine
            if new_database:  # nothing to back up, nothing to upgrade: create the schema (migrate stays
                await self.db.migrate()  # the way for an existing database, after a backup)
                log.info("database.created", path=str(self.db.sqlite_file))
            await self.db.check_schema()
            await self.accounts.ensure_tenant(self.tenant)
            await record_config_change(self.db, s)
            self.credentials = await build_credential_store(s)
            stack.push_async_callback(self.credentials.aclose)
            async with anyio.create_task_group() as tg, self.supervisor:
                self._tg = tg
                try:
                    await self._start_parts(tg, host, port)
                    yield self
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(s.bridge.shutdown_timeout_s):
                        await self._shutdown()
                    tg.cancel_scope.cancel()
        log.info("bridge.stopped")

    async def _start_parts(self, tg: TaskGroup, host: str | None, port: int | None) -> None:
        s = self.settings
        self.pipeline = InboundPipeline(
            bus=self.bus,
            tenant=self.tenant,
            converters={net: cls.convert for net, cls in self.registry.connectors.items()},
            store=DatabaseInboundStore(self.db),
            notifier=BusNotifier(self.bus),
            dedupe=self.dedupe,
            metrics=self.metrics,
        )
        await tg.start(self.pipeline.run)
        assert self.credentials is not None
        self.expiry = ExpiryWatcher(
            self.credentials,
            self.accounts,
            self._on_state,
            warn_before=timedelta(seconds=s.credentials.expiry_warn_before_s),
            interval=s.credentials.expiry_check_interval_s,
            metrics=self.metrics,
            current_state=self.supervisor.state,
            tenant=self.tenant,
        )
        await tg.start(self.expiry.run)
        self.sync = SyncJob(self.db, self.pipeline, reconnect=self.supervisor.reconnect)
        await tg.start(self.progress.run)
        for record in await self.accounts.list(tenant=self.tenant):
            await self.progress.load(record.to_schema())
            self.start_account(record)
        self.delivery = DeliveryWorker(
            self.db,
            self.bus,
            self.impersonation,
            make_rate_limiter(s.redis.url),
            settings=DeliverySettings.from_config(s.outbound),
            dedupe=self.dedupe,
            metrics=self.metrics,
        )
        await tg.start(self.delivery.run)
        self.outbound = OutboundService(
            self.db,
            self.bus,
            self.impersonation,
            PolicyEngine(self.registry.policy_rules),
            wake=self.delivery.wake,
            holds=self.delivery.holds,
            flags=self.flags,
            metrics=self.metrics,
        )
        self.api = ApiServer(
            self, self._route_services(), host or s.api.host, s.api.port if port is None else port
        )
        await self.api.start(tg)
        self.retention = RetentionJob(self.db, self.api.storage, s.retention, tenant=self.tenant)
        tg.start_soon(self.retention.run_periodic)
        await tg.start(self.memory.run)
        await self._start_observing(tg)
        for name, result in self.pm.call_each("startup", bridge=self):
            if isinstance(result, Awaitable):
                await _hook_awaitable(name, result)
        self.started = True
        log.info(
            "bridge.started",
            tenant=self.tenant,
            api=f"{self.api.host}:{self.api.bound_port}",
            connectors=sorted(self.registry.connectors),
            database=self.db.redacted_url,
        )

    async def _start_observing(self, tg: TaskGroup) -> None:
        """The sampler behind /metrics and the alert rules (``[metrics]``, ``[alerts]``)."""
        s = self.settings
        self.sampler = Sampler(
            self.db,
            self.tenant,
            self.metrics,
            sync=self.sync,
            pipeline=self.pipeline,
            hub=lambda: self.api.hub if self.api is not None else None,
            max_account_series=s.metrics.max_account_series,
        )
        webhook = None
        if s.alerts.webhook_url:
            webhook = Webhook(
                s.alerts.webhook_url,
                timeout_s=s.alerts.webhook_timeout_s,
                retries=s.alerts.webhook_retries,
                allow_networks=s.alerts.webhook_allow_networks,
                metrics=self.metrics,
            )
        if s.alerts.rules:
            self.alerts = AlertEvaluator(
                s.alerts.rules, self.sampler, self.metrics, interval_s=s.alerts.interval_s, webhook=webhook
            )
            await tg.start(self.alerts.run)

    async def scrape(self) -> bytes:
        """``/metrics``: the gauges sampled now, then every metric in Prometheus text form."""
        if self.sampler is not None:
            await self.sampler.refresh()
        return self.metrics.render()

    def _route_services(self) -> RouteServices:
        """The services API routes use, each narrow (``api/services.py``)."""
        accounts = AccountService(
            self.tenant, self.impersonation, self.accounts, self.supervisor, self.registry, self.progress
        )
        api = self.settings.api
        return RouteServices(
            accounts=accounts,
            links=self.links,
            outbound=self.outbound,
            queries=ApiQueries(self.db),
            health=self,
            urls=self.media,
            outbox=OutboxService(self.db, self.bus, self.tenant, self.accounts, self.outbound),
            admin=AdminService(self.db, self.tenant),
            search=SearchRepo(self.db),
            hooks=HookService(self.hooks, api.hook_max_body_bytes, api.hook_timeout_s),
            metrics=MetricsEndpoint(self.settings.metrics.auth, self),
        )

    async def _shutdown(self) -> None:
        """Stop in reverse order: hooks, API, connectors, then let the pipeline drain the bus."""
        timeout = self.settings.bridge.shutdown_timeout_s
        self.started = False
        for name, result in self.pm.call_each("shutdown", bridge=self):
            if isinstance(result, Awaitable):
                await _hook_awaitable(name, result)
        if self.api is not None:
            # Bounded, so the connectors always keep their share of the bound (IRC sends its QUIT then).
            with anyio.move_on_after(timeout / 4):
                await self.api.stop()
        await self.supervisor.stop_all(timeout=timeout / 2)
        with anyio.move_on_after(timeout / 4):
            await self.progress.flush()  # the last reports (a finished import) are stored
        left = await self.bus.drain(timeout / 2)
        if left:
            log.error("bridge.shutdown_discarded", events=left)

    # --- accounts -----------------------------------------------------------------------------------

    def start_account(self, record: AccountRecord) -> AccountRuntime | None:
        cls = self.registry.connectors.get(record.network)
        if cls is None:
            log.error(
                "account.no_connector",
                account=record.id,
                network=record.network,
                hint="install and allow the plugin for this network ([plugins] allow)",
            )
            return None
        if self.credentials is None:
            raise BridgeError("the bridge is not started")
        account = record.to_schema()
        settings: dict[str, Any] = {**self.settings.networks.get(account.network, {}), **record.settings}
        typed = self._validated_settings(cls, account, settings)
        if typed is False:
            return None
        if typed is not None:
            settings |= typed.model_dump(mode="json")  # the model's defaults filled in
        clock = SystemClock()
        ctx = ConnectorContext(
            account=account,
            sink=AccountSink(self.bus, account),
            secrets=self.credential_audit.wrap(
                ScopedSecrets(self.credentials, account.id),
                account_id=account.id,
                actor=f"connector:{account.network}",
            ),
            state=AccountState(self.db, account.id, namespace=account.network, now=clock.now),
            clock=clock,
            settings=settings,
            typed_settings=typed,
            log=structlog.get_logger("msgr_bridge.connector").bind(
                network=account.network, account=account.id
            ),
            media=self.media,
            messages=AccountMessageIds(self.db, account.id, account.network),
            progress=self.progress.reporter(account),
            hooks=self.hooks.for_account(account.network, account.id),
        )
        connector: Connector = cls(ctx)
        runtime = self.supervisor.start(account.id, connector)
        if self._tg is not None and self.sync is not None:
            self._tg.start_soon(self._periodic_sync, account, connector)
        return runtime

    def _validated_settings(self, cls: Any, account: Account, settings: dict[str, Any]) -> Any:
        """The connector's settings model instance (None: it declares none; False: invalid, not started)."""
        model = settings_model_of(cls)
        if model is None:
            return None
        try:
            return validate_settings(model, settings, network=account.network)
        except ConfigError as exc:
            reason = f"invalid settings: {exc.message}"
            log.error(
                "account.bad_settings", account=account.id, network=account.network, error=exc.explain()
            )
            if self._tg is not None:
                self._tg.start_soon(self._on_state, account.id, ConnectionState.STOPPED, reason)
            return False

    async def _periodic_sync(self, account: Account, connector: Connector) -> None:
        assert self.sync is not None
        await self.sync.run_periodic(
            account,
            connector,
            self.settings.sync.interval_s,
            lambda: self.supervisor.state(account.id) == ConnectionState.CONNECTED,
        )

    async def _on_state(self, account_id: str, state: ConnectionState, reason: str | None) -> None:
        await self.accounts.set_state(account_id, state, reason)

    async def _on_connected(self, rt: AccountRuntime) -> None:
        if self.sync is not None:
            await self.sync.run_once(rt.connector.ctx.account, rt.connector)

    # --- health -------------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        db_ok, db_error = True, None
        try:
            with anyio.fail_after(5):
                async with self.db.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as exc:
            db_ok, db_error = False, f"{type(exc).__name__}: {exc}".splitlines()[0]
        return {
            "status": "ok" if db_ok and not self.registry.errors else "degraded",
            "database": {"ok": db_ok, "error": db_error},
            "connectors": sorted(self.registry.connectors),
            "plugin_errors": [r.as_dict() for r in self.registry.errors],
            "accounts": self.supervisor.snapshot(),
        }


async def _hook_awaitable(name: str, result: Awaitable[Any]) -> None:
    try:
        await result
    except Exception as exc:
        log.error("plugin.hook_failed", plugin=name, error=f"{type(exc).__name__}: {exc}")


async def run_bridge(settings: Any, *, host: str | None = None, port: int | None = None) -> int:
    """``msgr-bridge run``: start, serve until SIGTERM/SIGINT, stop cleanly within the bound."""
    configure_logging(settings.logging.level, settings.logging.format)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with Bridge(settings).running(host, port):
            freeze_start_up()
            async for signum in signals:
                log.info("bridge.signal", signal=signal.Signals(signum).name)
                break
    return 0
