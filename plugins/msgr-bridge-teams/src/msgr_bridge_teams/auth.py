"""Sign-in with msal: the device-code flow for linking, and the access token of a linked account.

msal is synchronous (it talks to the identity platform through ``requests``), so every msal call runs in a
worker thread (``anyio.to_thread``). Its ``requests`` session has ``trust_env=False``: an ambient
``REQUESTS_CA_BUNDLE`` would otherwise override the CA file given for the identity platform.

``Tokens`` keeps msal's serialized cache in the credential layer (``ctx.secrets['token_cache']``) and
writes it back whenever msal changed it (a refresh rotates the refresh token). The access token's expiry is
part of that cache, so the renewal schedule survives restarts: ``token()`` renews it ``refresh_margin_s``
before it expires. A refusal of the refresh token (``invalid_grant``: consent revoked, password changed,
conditional access) raises ``AuthenticationFailed`` with Microsoft's AADSTS reason.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msal
import requests

from msgr_bridge.errors import AuthenticationFailed, TransientError

from .config import TeamsSettings


def http_session(settings: TeamsSettings) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    http.verify = settings.ca_file or True
    return http


def build_app(
    settings: TeamsSettings, http: requests.Session, cache: msal.SerializableTokenCache | None = None
) -> Any:
    """A ``PublicClientApplication`` (blocking: msal fetches the OIDC discovery document here)."""
    try:
        return msal.PublicClientApplication(
            settings.client_id,
            authority=settings.authority,
            instance_discovery=False,  # the authority is the configured one; no lookup on microsoftonline.com
            http_client=http,
            token_cache=cache,
        )
    except ValueError as exc:  # msal raises ValueError for an unreachable or malformed authority
        raise TransientError(
            f"the Microsoft identity platform at {settings.authority} failed: {exc}"
        ) from exc


async def new_app(settings: TeamsSettings, cache: msal.SerializableTokenCache | None = None) -> Any:
    """The session is made here and closed on any failure, cancellation included: a result that a
    cancelled worker thread still produced would otherwise keep its connection open."""
    http = http_session(settings)
    try:
        return await anyio.to_thread.run_sync(lambda: build_app(settings, http, cache))
    except requests.RequestException as exc:
        http.close()
        raise TransientError(f"cannot reach the Microsoft identity platform: {exc}") from exc
    except BaseException:
        http.close()
        raise


def close_app(app: Any) -> None:
    http = getattr(app, "http_client", None)
    inner = getattr(http, "_http_client", http)  # msal wraps the session in a throttling client
    close = getattr(inner, "close", None)
    if callable(close):
        close()


def reason(result: dict[str, Any]) -> str:
    """The first line of Microsoft's error description: ``AADSTS50173: The provided grant has expired…``."""
    text = str(result.get("error_description") or result.get("error") or "unknown error")
    return text.splitlines()[0].strip()


def refused(result: dict[str, Any]) -> AuthenticationFailed:
    return AuthenticationFailed(
        f"Microsoft refused the account's sign-in ({result.get('error')}): {reason(result)}",
        hint="link the account again (POST /v1/links with network 'teams'); an administrator may have "
        "revoked consent, or the password or a conditional access policy changed",
    )


class Tokens:
    """The access token of one linked account, renewed before it expires."""

    def __init__(
        self,
        settings: TeamsSettings,
        load: Callable[[], Awaitable[str | None]],
        save: Callable[[str], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self._load, self._save = load, save
        self.cache = msal.SerializableTokenCache()
        self.app: Any = None
        self.account: dict[str, Any] | None = None
        self.renewals = 0

    async def open(self) -> None:
        serialized = await self._load()
        if not serialized:
            raise AuthenticationFailed(
                "no Microsoft token cache is stored for this Teams account", hint="link the account again"
            )
        self.cache.deserialize(serialized)
        self.app = await new_app(self.settings, self.cache)
        accounts = await anyio.to_thread.run_sync(self.app.get_accounts)
        if not accounts:
            raise AuthenticationFailed("the stored Microsoft token cache holds no account", hint="link again")
        self.account = accounts[0]

    def close(self) -> None:
        if self.app is not None:
            close_app(self.app)
            self.app = None

    def expires_at(self) -> float:
        """When the cached access token expires (epoch seconds; 0 when there is none)."""
        found = self.cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN, query=None)
        return max((float(at.get("expires_on", 0)) for at in found), default=0.0)

    def due(self) -> bool:
        return self.expires_at() - time.time() <= self.settings.refresh_margin_s

    async def token(self, *, force: bool = False) -> str:
        if self.app is None:
            await self.open()
        force = force or self.due()
        app, account, scopes = self.app, self.account, list(self.settings.scopes)
        try:
            result = await anyio.to_thread.run_sync(
                lambda: app.acquire_token_silent_with_error(scopes, account, force_refresh=force)
            )
        except requests.RequestException as exc:
            raise TransientError(f"cannot reach the Microsoft identity platform: {exc}") from exc
        if self.cache.has_state_changed:
            await self._save(self.cache.serialize())
            self.cache.has_state_changed = False
        if result is None:
            raise AuthenticationFailed("msal found no usable token for the Teams account", hint="link again")
        if "access_token" not in result:
            if result.get("error") in ("invalid_grant", "interaction_required", "invalid_client"):
                raise refused(result)
            raise TransientError(f"the Microsoft identity platform failed: {reason(result)}")
        if force:
            self.renewals += 1
        return str(result["access_token"])
