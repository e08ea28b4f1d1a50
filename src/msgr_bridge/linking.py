"""Account linking: run a connector's ``LinkFlow`` step by step, then store, create and start the account.

The API calls ``LinkService``: ``start(network, settings)`` asks the connector class for a flow and returns
its first step; ``submit(flow_id, answers)`` passes a person's answers and returns the next step or, once the
flow returns a ``LinkResult``, the linked account. Live flows are kept in memory (they hold connections and
one-time codes that must never be written down) and expire ``[api] link_flow_ttl_s`` after their last
step; an expired or finished flow is cancelled and forgotten.

A refused answer (any exception from the flow's ``submit``, or settings its connector's ``settings_model``
refuses) keeps the flow on the same step with a reason a person can act on (``describe_error``); after
``MAX_FAILED_ANSWERS`` refusals in a row it fails. Answers are passed as given to flows that declare
``typed_answers`` and as strings to the others. A connector class with ``link_callback = True`` gets
``link_callback_url`` among its flow's settings: the OAuth ``redirect_uri`` on the bridge
(``/hooks/<network>/link-callback``), which submits the browser's query to the flow (``api/routes/hooks.py``).

``poll(flow_id)`` (the API's ``GET /v1/links/{id}``) refreshes a step that changes by itself: when the
current step is a QR code or a device code and the flow declares ``refresh_on_poll = True`` (WhatsApp and
Telegram rotate their QR codes; a device code waits for the person to sign in), it answers the step with
nothing (``{}``), as a client polling by ``POST .../answers`` would, at most once per ``POLL_EVERY_S``;
otherwise it returns the flow as it is. Answers and polls of one flow never run at the same time.

On a ``LinkResult`` the service, in this order: closes the flow (``close()``, when it has one: its test
connection goes before the real one), stores each secret through the credential store
(``ScopedSecrets.put`` with ``secrets_expire_at``), creates the account (with the connector's declared
capabilities) and its ``account.link`` audit entry in one transaction, then starts it in the bridge. If the
database step fails the stored secrets are deleted again. ``unlink`` stops the account, deletes its
secrets and the account, and writes ``account.unlink``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import structlog

from .connectors.protocol import LinkFlow, LinkResult, LinkStep, LinkStepKind
from .credentials.scoped import ScopedSecrets
from .errors import BridgeError, NotSupported, describe_error
from .schema import Account, ConnectionState
from .sdk.hooks import LINK_CALLBACK_KEY, link_callback_url
from .sdk.settings import refuse_operator_keys, settings_model_of, validate_settings
from .store import audit
from .store.repos._base import new_id
from .store.repos.accounts import AccountRecord

if TYPE_CHECKING:
    from .api.services import ConnectorRegistry
    from .config import Settings
    from .credentials import CredentialStore
    from .store.db import Database
    from .store.repos.accounts import AccountRepo

log = structlog.get_logger("msgr_bridge.linking")

Status = Literal["pending", "linked", "failed", "cancelled", "expired"]

POLL_EVERY_S = 1.0
"""A poll within this long of the previous one returns the flow as it is (several tabs polling one flow)."""
POLLED_STEPS = frozenset({LinkStepKind.QR_CODE, LinkStepKind.DEVICE_CODE})
MAX_FAILED_ANSWERS = 5
"""Refused answers in a row after which a flow fails (it holds a connection and guesses are bounded)."""


class LinkFlowNotFound(BridgeError):
    code = "link_flow_not_found"


class AccountNotFound(BridgeError):
    code = "account_not_found"


@dataclass
class LiveFlow:
    """One link session: its current step, status, and (once linked) the account."""

    id: str
    network: str
    flow: LinkFlow
    user_id: str | None
    actor: str
    expires_at: float
    status: Status = "pending"
    step: LinkStep | None = None
    account: AccountRecord | None = None
    error: str | None = None
    """Why the last answer was refused (or the flow failed); cleared by an accepted answer."""
    hint: str | None = None
    failed_answers: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    """Held while the flow is answered or polled: a connector's flow sees one call at a time."""
    polled_at: float = 0.0


class Stoppable(Protocol):
    async def stop(self, account_id: str, timeout: float = 10.0) -> None: ...


class Forgets(Protocol):
    def forget(self, account_id: str) -> None: ...


class NetworkFlags(Protocol):
    """Feature flags (``flags.FeatureFlags``): may this user link an account of this network?"""

    def check_network(self, network: str, tenant: str, user: str | None) -> None: ...


class LinkHost(Protocol):
    """What linking uses of the bridge (``app.Bridge`` satisfies it; this module never imports ``app``)."""

    @property
    def tenant(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def registry(self) -> ConnectorRegistry: ...

    @property
    def credentials(self) -> CredentialStore | None: ...

    @property
    def accounts(self) -> AccountRepo: ...

    @property
    def db(self) -> Database: ...

    @property
    def supervisor(self) -> Stoppable: ...

    @property
    def impersonation(self) -> Forgets: ...

    @property
    def flags(self) -> NetworkFlags: ...

    def start_account(self, record: AccountRecord) -> object: ...


class LinkService:
    def __init__(self, bridge: LinkHost, *, ttl_s: float = 600.0) -> None:
        self.bridge = bridge
        self.ttl_s = ttl_s
        self.flows: dict[str, LiveFlow] = {}

    async def start(
        self,
        network: str,
        settings: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        actor: str = "system",
    ) -> LiveFlow:
        """Begin linking an account of ``network``; returns the flow with its first step."""
        await self.expire()
        cls = self.bridge.registry.connectors.get(network)
        if cls is None:
            raise NotSupported(
                "network",
                network=network,
                hint=f"installed networks: {', '.join(sorted(self.bridge.registry.connectors)) or 'none'}",
            )
        unsupported: str | None = getattr(cls, "unsupported_reason", None)
        if unsupported is not None:
            raise NotSupported("account linking", network=network, hint=unsupported)
        self.bridge.flags.check_network(network, self.bridge.settings.bridge.tenant, user_id)
        refuse_operator_keys(settings_model_of(cls), settings or {}, network=network)
        defaults = {**self.bridge.settings.networks.get(network, {}), **dict(settings or {})}
        if getattr(cls, "link_callback", False):  # the flow asked for the OAuth redirect URI on the bridge
            defaults[LINK_CALLBACK_KEY] = link_callback_url(self.bridge.settings.api.public_base_url, network)
        flow = cls.link_flow(defaults)
        live = LiveFlow(
            id=new_id("link"),
            network=network,
            flow=flow,
            user_id=user_id,
            actor=actor,
            expires_at=time.monotonic() + self.ttl_s,
            settings=defaults,
        )
        live.step = await flow.start()
        self.flows[live.id] = live
        return live

    def get(self, flow_id: str) -> LiveFlow:
        live = self.flows.get(flow_id)
        if live is None:
            raise LinkFlowNotFound(
                f"no link flow {flow_id!r}", hint="it finished, expired or never existed; start a new one"
            )
        if live.status == "pending" and time.monotonic() > live.expires_at:
            live.status, live.step = "expired", None
        return live

    async def submit(self, flow_id: str, answers: Mapping[str, Any]) -> LiveFlow:
        """Answer the current step. A refused answer (a wrong password, port or setting: any exception
        from the connector's ``submit``) keeps the flow on the same step with the reason in ``error``, so
        the person can answer again; after ``MAX_FAILED_ANSWERS`` refusals in a row the flow fails."""
        live = self.get(flow_id)
        async with live.lock:
            return await self._answer(live, answers)

    async def poll(self, flow_id: str) -> LiveFlow:
        """The flow with its current step, refreshed when it changes by itself (see the module docstring)."""
        live = self.get(flow_id)
        if not self._polled(live):
            return live
        async with live.lock:
            if not self._polled(live) or time.monotonic() - live.polled_at < POLL_EVERY_S:
                return live  # answered, or refreshed by another poll, while this one waited
            try:
                return await self._answer(live, {})
            finally:
                live.polled_at = time.monotonic()

    @staticmethod
    def _polled(live: LiveFlow) -> bool:
        step = live.step
        return (
            live.status == "pending"
            and step is not None
            and step.kind in POLLED_STEPS
            and bool(getattr(live.flow, "refresh_on_poll", False))
        )

    async def _answer(self, live: LiveFlow, answers: Mapping[str, Any]) -> LiveFlow:
        if live.status != "pending":
            raise BridgeError(
                f"link flow {live.id} is {live.status}", hint="start a new link flow to try again"
            )
        live.expires_at = time.monotonic() + self.ttl_s
        try:
            outcome = await live.flow.submit(answers_for(live.flow, answers))
            if isinstance(outcome, LinkResult):
                self._check_settings(live, outcome)
        except Exception as exc:
            live.error, live.hint = describe_error(exc), getattr(exc, "hint", None)
            live.failed_answers += 1
            log.info("link.answer_refused", flow=live.id, network=live.network, reason=live.error)
            if live.failed_answers >= MAX_FAILED_ANSWERS:
                live.status, live.step = "failed", None
                await _quietly_cancel(live.flow)
            return live
        live.error, live.hint, live.failed_answers = None, None, 0
        if isinstance(outcome, LinkResult):
            await _quietly_close(live.flow)  # the test connection goes before the real one starts
            live.account = await self._finish(live, outcome)
            live.status, live.step = "linked", None
        else:
            live.step = outcome
        return live

    def _check_settings(self, live: LiveFlow, result: LinkResult) -> None:
        model = settings_model_of(self.bridge.registry.connectors[live.network])
        if model is not None:
            defaults = self.bridge.settings.networks.get(live.network, {})
            validate_settings(model, {**defaults, **result.settings}, network=live.network)

    async def cancel(self, flow_id: str) -> LiveFlow:
        live = self.get(flow_id)
        if live.status == "pending":
            await _quietly_cancel(live.flow)
            live.status, live.step = "cancelled", None
        return live

    async def expire(self) -> int:
        """Cancel and forget flows past their expiry (and finished ones older than the TTL)."""
        now = time.monotonic()
        old = [f for f in self.flows.values() if now > f.expires_at]
        for live in old:
            if live.status == "pending":
                await _quietly_cancel(live.flow)
            del self.flows[live.id]
        return len(old)

    async def _finish(self, live: LiveFlow, result: LinkResult) -> AccountRecord:
        bridge = self.bridge
        if bridge.credentials is None:
            raise BridgeError("the bridge is not started")
        cls = bridge.registry.connectors[live.network]
        account_id = new_id("acct")
        secrets = ScopedSecrets(bridge.credentials, account_id)
        for key, value in result.secrets.items():
            await secrets.put(key, value, expires_at=result.secrets_expire_at)
        account = Account(
            id=account_id,
            tenant=bridge.tenant,
            network=live.network,
            remote_user_id=result.remote_user_id,
            display_name=result.display_name,
            state=ConnectionState.STOPPED,
        )
        try:
            if live.user_id is not None:
                await bridge.accounts.ensure_user(bridge.tenant, live.user_id)
            async with bridge.db.session() as s:
                record = await bridge.accounts.create(
                    account,
                    user_id=live.user_id,
                    settings=result.settings,
                    capabilities=cls.capabilities,
                    session=s,
                )
                if result.secrets_expire_at is not None:
                    await bridge.accounts.set_credentials_expiry(
                        account_id, result.secrets_expire_at, session=s
                    )
                await audit.append(
                    s,
                    live.actor,
                    "account.link",
                    f"account:{account_id}",
                    {
                        "network": live.network,
                        "remote_user_id": result.remote_user_id,
                        "secret_keys": sorted(result.secrets),
                    },
                )
        except BaseException:
            await bridge.credentials.delete_account(account_id)
            raise
        bridge.start_account(record)
        log.info("account.linked", account=account_id, network=live.network)
        return record

    async def unlink(self, account_id: str, *, actor: str = "system") -> AccountRecord:
        """Stop the account, delete its secrets and the account (with everything only it owns), audit."""
        bridge = self.bridge
        record = await bridge.accounts.get(account_id)
        if record is None or record.tenant != bridge.tenant:
            raise AccountNotFound(f"no account {account_id!r}", hint="list accounts with GET /v1/accounts")
        await bridge.supervisor.stop(account_id)
        if bridge.credentials is not None:
            await bridge.credentials.delete_account(account_id)
        async with bridge.db.session() as s:
            await bridge.accounts.delete(account_id, session=s)
            await audit.append(
                s,
                actor,
                "account.unlink",
                f"account:{account_id}",
                {"network": record.network, "remote_user_id": record.remote_user_id},
            )
        bridge.impersonation.forget(account_id)
        log.info("account.unlinked", account=account_id, network=record.network)
        return record


def answers_for(flow: LinkFlow, answers: Mapping[str, Any]) -> dict[str, Any]:
    """Answers as the flow takes them: as given when it declares ``typed_answers`` (numbers and booleans as
    such), else as strings (``true``/``false``, ``6697``, a list comma-joined), as flows always got them."""
    if getattr(flow, "typed_answers", False):
        return dict(answers)
    return {k: _as_text(v) for k, v in answers.items()}


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(_as_text(v) for v in value)
    return str(value)


async def _quietly_close(flow: LinkFlow) -> None:
    close = getattr(flow, "close", None)
    if close is None:
        return
    try:
        await close()
    except Exception as exc:  # the account is linked; a failing close is logged, not fatal
        log.warning("link.close_failed", error=describe_error(exc))


async def _quietly_cancel(flow: LinkFlow) -> None:
    try:
        await flow.cancel()
    except Exception as exc:  # a connector's cancel failing must not fail the API call
        log.warning("link.cancel_failed", error=describe_error(exc))
