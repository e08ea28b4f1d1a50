"""Linking a Teams work account through a browser: the authorization-code flow with PKCE (``flow =
"auth_code"``).

The bridge gives the flow its redirect URI, ``<public_base_url>/hooks/teams/link-callback`` (the connector
sets ``link_callback = True``; the operator adds that URI to the app registration as a "Mobile and desktop
applications" redirect). ``start()`` asks msal for the sign-in URL: msal makes the ``state`` (checked when
the browser comes back), the ``nonce`` and the PKCE verifier with its S256 challenge; the answer comes back
as a form POST (``response_mode=form_post``: the code is never in a URL). The step is
``LinkStepKind.OAUTH_URL``; the person opens the URL and signs in, and Microsoft sends the browser back to
the bridge, whose callback route finds this flow by its ``state`` and submits the answer (``code``,
``state``; or ``error`` when consent was declined). A person whose browser cannot reach the bridge
pastes the address it was sent to as the answer ``redirect_url`` instead. ``submit`` redeems the code with
the verifier (``acquire_token_by_auth_code_flow``, which refuses a foreign ``state``), reads ``/me`` and
returns the account, as the device-code flow does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import msal

from msgr_bridge import FormField, LinkResult, LinkStep, LinkStepKind, NotSupported
from msgr_bridge.errors import AuthenticationFailed
from msgr_bridge.sdk.hooks import LINK_CALLBACK_KEY

from .auth import close_app, new_app, reason
from .config import TeamsSettings
from .link import finish

ANSWER = FormField(
    name="redirect_url",
    label="The address your browser was sent to after signing in (only if the bridge did not finish it)",
    required=False,
)


class AuthCodeLinkFlow:
    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self.settings = TeamsSettings.from_mapping(defaults)
        self.redirect_uri = str(defaults.get(LINK_CALLBACK_KEY) or "")
        self.cache = msal.SerializableTokenCache()
        self.flow: dict[str, Any] | None = None
        self.step: LinkStep | None = None

    async def start(self) -> LinkStep:
        if not self.redirect_uri:
            raise NotSupported(
                "the authorization-code flow",
                network="teams",
                hint="the bridge gives its redirect URI only to the Teams connector it runs; "
                "link by device code",
            )
        app, scopes = await new_app(self.settings, self.cache), list(self.settings.scopes)
        try:
            flow = await anyio.to_thread.run_sync(
                lambda: app.initiate_auth_code_flow(
                    scopes, redirect_uri=self.redirect_uri, response_mode="form_post"
                )
            )
        finally:
            close_app(app)
        self.flow = flow
        self.step = LinkStep(
            kind=LinkStepKind.OAUTH_URL,
            prompt="Open the link and sign in with your work account; the bridge finishes when Microsoft "
            "sends your browser back",
            url=str(flow["auth_uri"]),
            fields=(ANSWER,),
        )
        return self.step

    async def submit(self, answers: Mapping[str, Any]) -> LinkStep | LinkResult:
        if self.flow is None or self.step is None:
            return await self.start()
        response = {str(k): str(v) for k, v in answers.items() if k != "redirect_url"}
        pasted = str(answers.get("redirect_url") or "")
        if pasted:
            response.update(parse_qsl(urlsplit(pasted).query))
        if "code" not in response and "error" not in response:
            return self.step  # nothing yet: the person is still signing in
        if "error" in response:
            raise AuthenticationFailed(
                f"Microsoft sign-in did not complete: {reason(response)}",
                hint="open the link again and accept the permissions, or ask an administrator to consent",
            )
        app, flow = await new_app(self.settings, self.cache), self.flow
        try:
            result = await anyio.to_thread.run_sync(
                lambda: app.acquire_token_by_auth_code_flow(flow, response)
            )
        except ValueError as exc:  # msal: the state does not match this flow's
            raise AuthenticationFailed(
                "the sign-in answer does not belong to this link flow (its state differs)",
                hint="open this flow's link again",
            ) from exc
        finally:
            close_app(app)
        if "access_token" not in result:
            raise AuthenticationFailed(
                f"Microsoft refused the sign-in code ({result.get('error')}): {reason(result)}",
                hint="start linking again",
            )
        self.flow = None
        return await finish(self.settings, self.cache)

    async def cancel(self) -> None:
        self.flow = None
