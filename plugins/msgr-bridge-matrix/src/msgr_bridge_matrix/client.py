"""The Matrix wire client: a mautrix ``Client`` set up for a bridge, error mapping, logging in, and linking.

The link flow, the connector and tests share one way of logging in and one way of turning homeserver answers
into ``AuthenticationFailed`` / ``RateLimited`` / ``TransientError`` / ``PermanentError``. mautrix's own
retry loop is off (``default_retry_count=0``): back-off belongs to the supervisor and the delivery stage.

``MatrixLinkFlow``: the settings form plus a password or an access token, verified by logging in (a password
login creates a device named ``msgr-bridge``; its token and device id are stored, with the password, so the
connector can log in again if the token is revoked). The account keeps the homeserver, the user id and the
settings answered differently from the defaults, so later ``[networks.matrix]`` changes still reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from mautrix.api import HTTPAPI, Method, PathBuilder
from mautrix.client import Client
from mautrix.client.state_store import MemoryStateStore
from mautrix.errors import (
    MatrixConnectionError,
    MatrixInvalidToken,
    MatrixRequestError,
    MatrixResponseError,
    MForbidden,
    MLimitExceeded,
    make_request_error,
)
from mautrix.types import ContentURI, DeviceID, FilterID, SpecVersions, SyncToken, UserID
from yarl import URL

from msgr_bridge.connectors.protocol import FormField, LinkResult
from msgr_bridge.errors import AuthenticationFailed, PermanentError, RateLimited, TransientError
from msgr_bridge.sdk.linking import SettingsLinkFlow

from .config import MatrixSettings

DEVICE_NAME = "msgr-bridge"


class LimitExceeded(MLimitExceeded):
    """``M_LIMIT_EXCEEDED`` with the server's ``retry_after_ms`` kept (mautrix drops it)."""

    def __init__(self, http_status: int, message: str, retry_after_ms: int | None) -> None:
        super().__init__(http_status, message)
        self.retry_after_ms = retry_after_ms


class BridgeHTTPAPI(HTTPAPI):
    """mautrix's HTTP layer, keeping ``retry_after_ms`` (body) or ``Retry-After`` (header) of a rate limit."""

    async def _send(
        self, method: Method, url: URL, content: Any, query_params: dict[str, str], headers: dict[str, str]
    ) -> tuple[Any, aiohttp.ClientResponse]:
        request = self.session.request(str(method), url, data=content, params=query_params, headers=headers)
        async with request as response:
            if 200 <= response.status < 300:
                return await response.json(), response
            text = await response.text()
            try:
                data = json.loads(text)
            except ValueError:
                data = {}
            data = data if isinstance(data, dict) else {}
            if data.get("errcode") == "M_LIMIT_EXCEEDED" or response.status == 429:
                retry_ms = data.get("retry_after_ms")
                if (
                    not isinstance(retry_ms, int)
                    and (header := response.headers.get("Retry-After", "")).isdigit()
                ):
                    retry_ms = int(header) * 1000
                raise LimitExceeded(response.status, str(data.get("error", "")), retry_ms)
            raise make_request_error(
                http_status=response.status,
                text=text,
                errcode=data.get("errcode"),
                message=data.get("error"),
                unstable_errcode=data.get("org.matrix.msc3848.unstable.errcode"),
            )


def make_client(homeserver: str, *, token: str = "", sync_timeout_s: float = 30.0) -> Client:
    """A mautrix ``Client`` with an in-memory state store and no internal retries."""
    url = URL(homeserver)
    if url.scheme not in {"http", "https"} or not url.host:
        raise PermanentError(
            f"matrix homeserver {homeserver!r} is not an http(s) URL",
            hint="set the account's homeserver to the client-server API base, e.g. https://matrix.example.org",
        )
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=sync_timeout_s + 60, sock_connect=10))
    api = BridgeHTTPAPI(url, token, client_session=session, default_retry_count=0)
    return Client(api=api, state_store=MemoryStateStore())


async def close_client(client: Client) -> None:
    await client.api.session.close()


def retry_after_s(exc: LimitExceeded) -> float:
    return max((exc.retry_after_ms or 1000) / 1000, 0.001)


@asynccontextmanager
async def wire_errors(what: str) -> AsyncIterator[None]:
    """Map mautrix and aiohttp failures of one call to msgr-bridge errors, naming ``what`` was attempted."""
    try:
        yield
    except LimitExceeded as exc:
        raise RateLimited(retry_after_s(exc), f"matrix rate limit during {what}") from exc
    except MatrixInvalidToken as exc:
        raise AuthenticationFailed(
            f"the homeserver refused the access token during {what}: {exc}",
            hint="relink the account (the token was logged out or expired)",
        ) from exc
    except (MatrixConnectionError, aiohttp.ClientError, TimeoutError, MatrixResponseError) as exc:
        raise TransientError(f"matrix {what} failed: {exc!r}", hint="the homeserver is unreachable") from exc
    except MatrixRequestError as exc:
        if exc.http_status >= 500 or exc.http_status == 0:
            raise TransientError(f"matrix {what} failed: HTTP {exc.http_status} {exc}") from exc
        raise PermanentError(f"matrix {what} refused: HTTP {exc.http_status} {exc.errcode}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    access_token: str
    device_id: str


async def login_password(client: Client, user: str, password: str, device_id: str | None = None) -> Session:
    """Log in with a password (reusing ``device_id`` when given); ``AuthenticationFailed`` when refused."""
    try:
        async with wire_errors("login"):
            resp = await client.login(
                identifier=UserID(user),
                password=password,
                device_id=device_id or None,
                device_name=DEVICE_NAME,
            )
    except PermanentError as exc:
        cause, status = exc.__cause__, getattr(exc.__cause__, "http_status", 0)
        if isinstance(cause, MForbidden | MatrixRequestError) and status in (401, 403):
            raise AuthenticationFailed(
                f"the homeserver refused the password for {user}", hint="check the user id and password"
            ) from cause
        raise
    return Session(user_id=str(resp.user_id), access_token=resp.access_token, device_id=str(resp.device_id))


async def login_token(client: Client, token: str) -> Session:
    """Use an existing access token; ``whoami`` proves it and tells who we are."""
    client.api.token = token
    async with wire_errors("whoami"):
        who = await client.whoami()
    client.mxid = who.user_id
    client.device_id = DeviceID(who.device_id or "")
    return Session(user_id=str(who.user_id), access_token=token, device_id=str(who.device_id or ""))


async def raw(
    client: Client, method: Method, path: PathBuilder, what: str, *, query: Mapping[str, str] | None = None
) -> Any:
    """A call whose answer stays the homeserver's JSON: only for answers that carry whole events
    (``/messages``, ``/state``, relations). mautrix's typed ``get_messages``/``get_state`` deserialize every
    event and raise ``MatrixResponseError`` for the whole page when one does not parse: one malformed event
    would fail every sync (a transient error, retried forever) instead of being quarantined alone."""
    async with wire_errors(what):
        return await client.api.request(method, path, query_params=dict(query or {}))


async def sync(client: Client, since: str | None, timeout_ms: int, filter_json: str) -> dict[str, Any]:
    """One ``/sync`` (mautrix's ``ClientAPI.sync``: the answer stays raw JSON), with an inline filter."""
    async with wire_errors("sync"):
        resp = await client.sync(
            since=SyncToken(since) if since else None, timeout=timeout_ms, filter_id=FilterID(filter_json)
        )
    if not isinstance(resp, dict) or not isinstance(resp.get("next_batch"), str):
        raise TransientError("matrix sync answered without next_batch", hint="is this a Matrix homeserver?")
    return resp


async def download_stream(client: Client, mxc: str) -> AsyncIterator[bytes]:
    """The bytes behind an ``mxc://`` URL in chunks, never whole (authenticated media where offered)."""
    if not mxc.startswith("mxc://"):
        raise PermanentError(f"{mxc!r} is not an mxc:// URL")
    async with wire_errors("media download"):
        authenticated = bool((await client.versions()).supports(SpecVersions.V111))
        url = client.api.get_download_url(ContentURI(mxc), authenticated=authenticated)
        headers = {"Authorization": f"Bearer {client.api.token}"} if authenticated else {}
        async with client.api.session.get(url, params={"allow_redirect": "true"}, headers=headers) as resp:
            if resp.status == 404:
                raise PermanentError(f"matrix media {mxc} does not exist")
            resp.raise_for_status()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                yield chunk


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel a helper task and wait for it, whatever it ended with."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


class MatrixLinkFlow(SettingsLinkFlow):
    settings_model = MatrixSettings
    network = "matrix"
    prompt = "Sign in to your Matrix account (give a password, or an access token from your client)."
    secret_fields = (
        FormField(name="password", label="Password", secret=True, required=False),
        FormField(name="access_token", label="Access token", secret=True, required=False),
    )

    async def verify(
        self, settings: MatrixSettings, secrets: Mapping[str, str], identity: Mapping[str, Any]
    ) -> LinkResult:
        user = (settings.user_id or "").strip()
        password = secrets.get("password", "")
        token = secrets.get("access_token", "").strip()
        if not token and not (user and password):
            raise AuthenticationFailed("give a user id and password, or an access token")
        client = make_client(settings.homeserver)
        self.probe(lambda: close_client(client))
        if token:
            session = await login_token(client, token)
        else:
            session = await login_password(client, user, password)
        kept = {"homeserver": settings.homeserver, "user_id": session.user_id}
        for name, value in settings.model_dump(mode="json").items():
            info = MatrixSettings.model_fields[name]
            default = self.defaults.get(name, info.get_default(call_default_factory=True))
            if name not in kept and value != default:
                kept[name] = value
        stored = {"access_token": session.access_token, "device_id": session.device_id}
        if password:
            stored["password"] = password
        return LinkResult(
            remote_user_id=session.user_id, display_name=session.user_id, settings=kept, secrets=stored
        )
