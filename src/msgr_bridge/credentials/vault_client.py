"""The bridge's connection to Vault (or OpenBao): authentication, retries and token renewal.

hvac is synchronous, so every call runs in a worker thread (``anyio.to_thread.run_sync``) and the event
loop never blocks on Vault. ``VaultConnection.call`` is the one door: it retries with exponential backoff
while Vault is sealed (HTTP 503) or unreachable, then raises ``VaultUnavailable`` with a hint; a refused
token is re-acquired once through AppRole when AppRole is configured; a policy refusal becomes
``CredentialAccessDenied`` naming the policy to fix.

Authentication is either a token (``token``) or AppRole (``role_id`` + ``secret_id``). Run
``run_renewal()`` as a background task: it renews the bridge's own token at about two thirds of its TTL,
and logs in again through AppRole when the token can no longer be renewed (its max TTL was reached).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import hvac
import hvac.exceptions
import structlog

from ..errors import CredentialAccessDenied, CredentialError, VaultUnavailable

_log = structlog.get_logger("msgr_bridge.credentials.vault")
_T = TypeVar("_T")

_RETRYABLE = (
    hvac.exceptions.VaultDown,
    hvac.exceptions.BadGateway,
    hvac.exceptions.RateLimitExceeded,
    OSError,  # requests' ConnectionError and Timeout are OSErrors
)


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultSettings:
    """How to reach and use Vault. Secrets live at ``{kv_mount}/{prefix}/{account_id}`` (KV v2); blobs
    are encrypted with the Transit key ``{transit_mount}/keys/{transit_key}`` (created as a derived key on
    first use, or beforehand with ``bao write -f transit/keys/msgr-bridge derived=true``)."""

    url: str
    token: str | None = None
    role_id: str | None = None
    secret_id: str | None = None
    approle_mount: str = "approle"
    namespace: str | None = None
    kv_mount: str = "secret"
    prefix: str = "msgr-bridge/accounts"
    transit_mount: str = "transit"
    transit_key: str = "msgr-bridge"
    verify: bool | str = True
    """TLS verification: True, False (never in production) or the path of a CA bundle."""
    timeout: float = 10.0
    retry_attempts: int = 5
    retry_base_delay: float = 0.2
    retry_max_delay: float = 5.0
    renew_min_interval: float = 1.0
    """Never renew more often than this many seconds, whatever the TTL."""

    def __repr__(self) -> str:
        auth = "approle" if self.role_id else "token"
        return f"VaultSettings(url={self.url!r}, auth={auth})"


class VaultConnection:
    """One authenticated hvac client shared by the credential store and the ``vault://`` resolver."""

    def __init__(self, settings: VaultSettings) -> None:
        if not settings.token and not (settings.role_id and settings.secret_id):
            raise CredentialError(
                "Vault is configured without a way to log in",
                hint="set [credentials.vault] token, or role_id and secret_id for AppRole",
            )
        self.settings = settings
        self._client = hvac.Client(
            url=settings.url,
            token=settings.token,
            verify=settings.verify,
            timeout=settings.timeout,
            namespace=settings.namespace,
        )
        self._login_lock = anyio.Lock()
        self.token_expires_at: datetime | None = None
        """When the bridge's own token expires (None: unknown, or it never expires)."""
        self.renewals = 0

    @property
    def uses_approle(self) -> bool:
        return bool(self.settings.role_id and self.settings.secret_id)

    async def open(self) -> None:
        """Log in (AppRole) or check the token, so a bad configuration fails at startup, not later."""
        if self.uses_approle:
            await self._approle_login()
        else:
            info = await self.call(
                lambda c: c.auth.token.lookup_self(), "check the Vault token", relogin=False
            )
            self._note_ttl(int(info["data"].get("ttl") or 0))

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._client.adapter.close)

    # --- the one door ---------------------------------------------------------------------------------

    async def call(self, fn: Callable[[hvac.Client], _T], what: str, *, relogin: bool = True) -> _T:
        """Run ``fn(client)`` in a worker thread with retries; ``what`` names the operation in errors."""
        s = self.settings
        attempt = 0
        while True:
            try:
                return await anyio.to_thread.run_sync(fn, self._client)
            except _RETRYABLE as exc:
                attempt += 1
                if attempt >= s.retry_attempts:
                    raise self._unavailable(exc, what) from None
                delay = min(s.retry_max_delay, s.retry_base_delay * 2 ** (attempt - 1))
                delay *= random.uniform(0.8, 1.2)
                _log.warning("vault.retry", operation=what, attempt=attempt, delay_s=round(delay, 3))
                await anyio.sleep(delay)
            except (hvac.exceptions.Unauthorized, hvac.exceptions.Forbidden):
                # Vault answers 403 both for an expired token and for a policy refusal: ask which.
                if await self._token_valid():
                    raise CredentialAccessDenied(
                        f"Vault's policy does not allow the bridge to {what}",
                        hint=f"grant the bridge's policy access under {s.kv_mount}/data/{s.prefix}/* "
                        f"and {s.transit_mount}/encrypt|decrypt/{s.transit_key}",
                    ) from None
                if relogin and self.uses_approle:
                    _log.warning("vault.token_refused_relogin", operation=what)
                    await self._approle_login()
                    relogin = False
                    continue
                raise CredentialError(
                    f"Vault refused the bridge's token while trying to {what}",
                    hint="the token expired or was revoked (or may not look itself up): "
                    "issue a new one, or configure AppRole login",
                ) from None

            except hvac.exceptions.VaultError as exc:
                detail = "; ".join(exc.errors or []) or type(exc).__name__
                raise CredentialError(
                    f"Vault could not {what}: {detail.strip()}",
                    hint="check Vault's logs, and that the mounts in [credentials.vault] exist",
                ) from None

    async def _token_valid(self) -> bool:
        def lookup(c: hvac.Client) -> bool:
            try:
                c.auth.token.lookup_self()
            except (hvac.exceptions.Unauthorized, hvac.exceptions.Forbidden):
                return False
            except (hvac.exceptions.VaultError, OSError):
                return True  # cannot tell; the original error stands
            return True

        return await anyio.to_thread.run_sync(lookup, self._client)

    def _unavailable(self, exc: BaseException, what: str) -> VaultUnavailable:
        url = self.settings.url
        if isinstance(exc, hvac.exceptions.VaultDown) and "sealed" in str(exc).lower():
            return VaultUnavailable(
                f"Vault at {url} is sealed; could not {what}",
                hint="unseal it (`bao operator unseal`); the bridge keeps retrying meanwhile",
            )
        if isinstance(exc, OSError):
            return VaultUnavailable(
                f"cannot reach Vault at {url}; could not {what} ({type(exc).__name__})",
                hint="check that Vault is running and that [credentials.vault] url is right",
            )
        return VaultUnavailable(
            f"Vault at {url} is not answering normally ({type(exc).__name__}); could not {what}",
            hint="check Vault's own logs and status (`bao status`)",
        )

    # --- authentication and renewal -------------------------------------------------------------------

    async def _approle_login(self) -> None:
        s = self.settings
        async with self._login_lock:
            try:
                result: dict[str, Any] = await self.call(
                    lambda c: c.auth.approle.login(
                        role_id=s.role_id, secret_id=s.secret_id, mount_point=s.approle_mount
                    ),
                    "log in with AppRole",
                    relogin=False,
                )
            except CredentialError as exc:
                if isinstance(exc, VaultUnavailable):
                    raise
                raise CredentialError(
                    "Vault refused the AppRole login",
                    hint="check role_id and secret_id (secret ids expire or run out of uses)",
                ) from None
            except hvac.exceptions.InvalidRequest:
                raise CredentialError(
                    "Vault refused the AppRole login (invalid role_id or secret_id)",
                    hint="check role_id and secret_id in [credentials.vault] (secret ids expire or run out)",
                ) from None
        self._note_ttl(int(result["auth"].get("lease_duration") or 0))
        _log.info("vault.logged_in", method="approle", ttl_s=result["auth"].get("lease_duration"))

    def _note_ttl(self, ttl: int) -> None:
        self.token_expires_at = datetime.now(UTC) + timedelta(seconds=ttl) if ttl > 0 else None

    async def renew_once(self) -> int:
        """Renew the token now (or log in again through AppRole); return its remaining TTL in seconds."""
        info = await self.call(lambda c: c.auth.token.lookup_self(), "look up the bridge's token")
        old_ttl = int(info["data"].get("ttl") or 0)
        ttl: int | None = None
        if info["data"].get("renewable"):

            def renew(c: hvac.Client) -> int | None:
                try:
                    return int(c.auth.token.renew_self()["auth"].get("lease_duration") or 0)
                except (hvac.exceptions.InvalidRequest, hvac.exceptions.InternalServerError):
                    return None  # past its max TTL

            ttl = await self.call(renew, "renew the bridge's token")
        if ttl is not None and (ttl > old_ttl or not self.uses_approle):
            self.renewals += 1
            self._note_ttl(ttl)
            _log.info("vault.token_renewed", ttl_s=ttl)
            return ttl
        if self.uses_approle:  # the token cannot live longer: get a new one
            await self._approle_login()
            self.renewals += 1
            return self._remaining()
        _log.warning(
            "vault.token_expiring",
            expires_at=self.token_expires_at.isoformat() if self.token_expires_at else None,
            hint="the token cannot be renewed any more; give the bridge a renewable token or AppRole",
        )
        return old_ttl

    def _remaining(self) -> int:
        if self.token_expires_at is None:
            return 0
        return max(0, int((self.token_expires_at - datetime.now(UTC)).total_seconds()))

    async def run_renewal(self) -> None:
        """Keep the bridge's token alive for as long as this task runs (start it in the app's task group).

        Renews at about 2/3 of the remaining TTL; a token that never expires ends the task at once.
        While Vault is unavailable it logs and tries again after ``retry_max_delay``.
        """
        info = await self.call(lambda c: c.auth.token.lookup_self(), "look up the bridge's token")
        ttl = int(info["data"].get("ttl") or 0)
        self._note_ttl(ttl)
        if ttl <= 0:
            _log.info("vault.token_never_expires")
            return
        while True:
            await anyio.sleep(max(self.settings.renew_min_interval, ttl * 2 / 3))
            try:
                ttl = await self.renew_once()
            except VaultUnavailable as exc:
                _log.warning("vault.renewal_failed", error=exc.message)
                ttl = max(0, min(self._remaining(), int(self.settings.retry_max_delay * 1.5)))
            if ttl <= 0 and not self.uses_approle:
                _log.error("vault.token_expired", hint="the bridge can no longer reach its secrets")
                return
