"""Linking a Teams work account by device code.

``start()`` asks the identity platform for a device code and shows it (``LinkStepKind.DEVICE_CODE`` with the
user code and the verification URL). The person opens the URL on any device, enters the code and signs
in; meanwhile the API client polls by answering the step with no answers (``POST /v1/links/{id}/answers``
with ``{}``): each ``submit`` asks the token endpoint once (msal's ``exit_condition`` makes its loop a single
poll) and returns the same step while Microsoft says ``authorization_pending``. Once signed in, it reads
``/me`` and returns the account with msal's token cache as its secret. A declined or expired code, or an
application the tenant does not know, raises ``AuthenticationFailed`` with Microsoft's AADSTS reason.

The authorization-code flow (``flow = "auth_code"``, a browser redirect back to the bridge) is in
``link_code.py``; both end in ``finish`` here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import msal

from msgr_bridge import LinkResult, LinkStep, LinkStepKind
from msgr_bridge.errors import AuthenticationFailed, TransientError

from .auth import Tokens, close_app, new_app, reason, refused
from .client import Graph
from .config import SECRET_TOKEN_CACHE, TeamsSettings

PENDING = ("authorization_pending", "slow_down")


class TeamsLinkFlow:
    refresh_on_poll = True
    """GET /v1/links/{id} answers the device-code step with nothing: one poll of the token endpoint."""

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.settings = TeamsSettings.from_mapping(defaults)
        self.cache = msal.SerializableTokenCache()
        self.app: Any = None
        self.flow: dict[str, Any] | None = None
        self.step: LinkStep | None = None

    async def start(self) -> LinkStep:
        self.app = await new_app(self.settings, self.cache)
        app, scopes = self.app, list(self.settings.scopes)
        try:
            flow = await anyio.to_thread.run_sync(lambda: app.initiate_device_flow(scopes=scopes))
        finally:
            close_app(app)  # drops its connections between steps (a flow may never be answered or cancelled)
        if "user_code" not in flow:
            await self.cancel()
            raise refused(flow)
        self.flow = flow
        self.step = LinkStep(
            kind=LinkStepKind.DEVICE_CODE,
            prompt=str(
                flow.get("message") or "Open the link and enter the code to sign in to Microsoft Teams"
            ),
            url=str(flow["verification_uri"]),
            user_code=str(flow["user_code"]),
            expires_at=datetime.fromtimestamp(float(flow.get("expires_at", time.time() + 900)), UTC),
        )
        return self.step

    async def submit(self, answers: Mapping[str, str]) -> LinkStep | LinkResult:
        if self.flow is None or self.app is None or self.step is None:
            await self.start()
        app, flow = self.app, self.flow
        assert flow is not None and self.step is not None
        try:
            result = await anyio.to_thread.run_sync(
                lambda: app.acquire_token_by_device_flow(flow, exit_condition=lambda f: True)
            )
        finally:
            close_app(app)  # the session stays usable: requests reconnects on the next poll
        if result.get("error") in PENDING:
            return self.step
        if "access_token" not in result:
            await self.cancel()
            if result.get("error") in ("authorization_declined", "expired_token", "bad_verification_code"):
                raise AuthenticationFailed(
                    f"Microsoft sign-in did not complete: {reason(result)}",
                    hint="start linking again and enter the new code",
                )
            raise refused(result)
        try:
            return await finish(self.settings, self.cache)
        finally:
            await self.cancel()

    async def cancel(self) -> None:
        if self.flow is not None:
            self.flow["expires_at"] = 0  # msal's documented way to end a device flow
        app, self.app = self.app, None
        if app is not None:
            close_app(app)


async def finish(settings: TeamsSettings, cache: msal.SerializableTokenCache, **extra: Any) -> LinkResult:
    """The signed-in account: ``/me`` read with the new tokens, msal's cache as its secret."""
    saved: list[str] = [cache.serialize()]
    tokens = Tokens(settings, load=_value(saved[0]), save=_keep(saved))
    graph = Graph(settings, tokens)
    try:
        me = await graph.request("GET", "/me")
    finally:
        await graph.close()
        tokens.close()
    if not isinstance(me, dict) or not isinstance(me.get("id"), str):
        raise TransientError("Microsoft Graph answered /me without an id")
    name = me.get("displayName")
    return LinkResult(
        remote_user_id=me["id"],
        display_name=name if isinstance(name, str) else None,
        settings={**settings.as_dict(), "user_principal_name": me.get("userPrincipalName"), **extra},
        secrets={SECRET_TOKEN_CACHE: saved[-1]},  # with what a renewal during /me changed
    )


def _value(text: str) -> Any:
    async def load() -> str:
        return text

    return load


def _keep(saved: list[str]) -> Any:
    async def save(text: str) -> None:
        saved.append(text)

    return save
