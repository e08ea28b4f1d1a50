"""Discord's REST API over aiohttp: the routes the connector uses, per-route rate-limit buckets, errors.

Rate limits: every answer's ``X-RateLimit-Bucket/Remaining/Reset-After`` headers are remembered per route and
major parameter (channel or webhook); a request whose bucket is known to be empty, or sent while a
global limit holds, raises ``RateLimited`` before it leaves (Discord bans clients that keep hitting 429s).
A 429 raises ``RateLimited(retry_after)`` from its JSON body; the core waits and tries again, nothing
sleeps here. 401 raises ``AuthenticationFailed``; other 4xx ``PermanentError``; 5xx and connection
failures ``TransientError``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from msgr_bridge.errors import AuthenticationFailed, PermanentError, RateLimited, TransientError

FilePart = tuple[str, bytes | AsyncIterator[bytes]]
"""A file to upload: its name and its bytes, whole or as chunks (streamed into the multipart body)."""
MAX_RESPONSE_BYTES = 8 << 20
MAX_BUCKETS = 10_000


@dataclass
class BucketState:
    remaining: int
    reset_at: float


class RateLimits:
    """What Discord's headers said, per (route, major parameter); bounded."""

    def __init__(self) -> None:
        self.bucket_of: dict[str, str] = {}
        self.state: dict[tuple[str, str], BucketState] = {}
        self.global_until = 0.0

    def check(self, route: str, major: str) -> None:
        now = time.monotonic()
        if now < self.global_until:
            raise RateLimited(self.global_until - now, "Discord's global rate limit holds")
        found = self.state.get((self.bucket_of.get(route, route), major))
        if found is not None and found.remaining <= 0 and now < found.reset_at:
            raise RateLimited(found.reset_at - now, f"Discord rate-limit bucket for {route} is empty")

    def update(self, route: str, major: str, headers: Mapping[str, str]) -> None:
        bucket = headers.get("X-RateLimit-Bucket")
        if bucket is None:
            return
        self.bucket_of[route] = bucket
        try:
            remaining = int(headers.get("X-RateLimit-Remaining", "1"))
            reset_after = float(headers.get("X-RateLimit-Reset-After", "0"))
        except ValueError:
            return
        if len(self.state) >= MAX_BUCKETS:
            now = time.monotonic()
            self.state = {k: v for k, v in self.state.items() if v.reset_at > now}
        self.state[(bucket, major)] = BucketState(remaining, time.monotonic() + reset_after)

    def limited(self, route: str, major: str, body: Any, headers: Mapping[str, str]) -> RateLimited:
        retry = body.get("retry_after") if isinstance(body, dict) else None
        if not isinstance(retry, int | float):
            retry = float(headers.get("Retry-After", "1"))
        is_global = headers.get("X-RateLimit-Global") == "true" or (
            isinstance(body, dict) and body.get("global")
        )
        if is_global:
            self.global_until = time.monotonic() + retry
        else:
            bucket = self.bucket_of.get(route, route)
            self.state[(bucket, major)] = BucketState(0, time.monotonic() + retry)
        scope = "global" if is_global else f"bucket {route}"
        return RateLimited(float(retry), f"Discord answered 429 ({scope}); retry after {retry:.2f}s")


class WebhookGone(PermanentError):
    """A webhook route answered 401 or 404: someone deleted the webhook (the bot's token is fine)."""


class DiscordRest:
    def __init__(self, api_base: str, token: str, *, timeout_s: float = 20.0) -> None:
        self.api_base = api_base.rstrip("/")
        self.token = token
        self.limits = RateLimits()
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def close(self) -> None:
        await self.http.close()

    async def request(
        self,
        method: str,
        route: str,
        params: Mapping[str, str],
        *,
        query: Mapping[str, str] | None = None,
        json: Any = None,
        files: Sequence[FilePart] = (),
        auth: bool = True,
    ) -> Any:
        """``route`` is the template (``/channels/{channel_id}/messages``); ``params`` fill it."""
        path = route.format(**{k: quote(v, safe="") for k, v in params.items()})
        major = params.get("channel_id") or params.get("webhook_id") or ""
        self.limits.check(route, major)
        headers = {"Authorization": f"Bot {self.token}"} if auth else {}
        data: Any = None
        if files:
            form = aiohttp.FormData()
            form.add_field("payload_json", orjson.dumps(json or {}).decode(), content_type="application/json")
            for index, (name, content) in enumerate(files):
                form.add_field(f"files[{index}]", content, filename=name)
            data, json = form, None
        try:
            async with self.http.request(
                method, self.api_base + path, params=query, json=json, data=data, headers=headers
            ) as resp:
                raw = await resp.content.read(MAX_RESPONSE_BYTES + 1)
                status, resp_headers = resp.status, resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"Discord {method} {route} failed: {exc!r}") from exc
        if len(raw) > MAX_RESPONSE_BYTES:
            raise TransientError(
                f"Discord answered {method} {route} with more than {MAX_RESPONSE_BYTES} bytes"
            )
        body: Any = None
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = raw[:200].decode(errors="replace")
        self.limits.update(route, major, resp_headers)
        if status < 300:
            return body
        if status == 429:
            raise self.limits.limited(route, major, body, resp_headers)
        message = body.get("message", "") if isinstance(body, dict) else str(body)
        detail = f"Discord {method} {route}: {status} {message}"
        if not auth and status in (401, 404):
            raise WebhookGone(detail, hint="the webhook was deleted or its token reset in Discord")
        if status == 401:
            raise AuthenticationFailed(
                detail, hint="the bot token was reset or revoked: link the account again"
            )
        if status >= 500:
            raise TransientError(detail)
        errors = body.get("errors") if isinstance(body, dict) else None
        raise PermanentError(detail + (f" {errors}" if errors else ""))

    # --- the routes ------------------------------------------------------------------------------------

    async def me(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/users/@me", {}))

    async def gateway_url(self) -> str:
        return str((await self.request("GET", "/gateway/bot", {}))["url"])

    async def history(
        self, channel_id: str, *, before: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` messages, newest first (Discord's order)."""
        query = {"limit": str(limit)}
        if before is not None:
            query["before"] = before
        if after is not None:
            query["after"] = after
        return list(
            await self.request(
                "GET", "/channels/{channel_id}/messages", {"channel_id": channel_id}, query=query
            )
        )

    async def send(self, channel_id: str, body: dict[str, Any], files: Sequence[FilePart] = ()) -> Any:
        return await self.request(
            "POST", "/channels/{channel_id}/messages", {"channel_id": channel_id}, json=body, files=files
        )

    async def edit(self, channel_id: str, message_id: str, body: dict[str, Any]) -> Any:
        return await self.request(
            "PATCH",
            "/channels/{channel_id}/messages/{message_id}",
            {"channel_id": channel_id, "message_id": message_id},
            json=body,
        )

    async def delete(self, channel_id: str, message_id: str) -> None:
        await self.request(
            "DELETE",
            "/channels/{channel_id}/messages/{message_id}",
            {"channel_id": channel_id, "message_id": message_id},
        )

    async def react(self, channel_id: str, message_id: str, emoji: str, add: bool) -> None:
        await self.request(
            "PUT" if add else "DELETE",
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me",
            {"channel_id": channel_id, "message_id": message_id, "emoji_name": emoji},
        )

    async def typing(self, channel_id: str) -> None:
        await self.request("POST", "/channels/{channel_id}/typing", {"channel_id": channel_id})

    async def webhooks(self, channel_id: str) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/channels/{channel_id}/webhooks", {"channel_id": channel_id}))

    async def create_webhook(self, channel_id: str, name: str) -> dict[str, Any]:
        return dict(
            await self.request(
                "POST", "/channels/{channel_id}/webhooks", {"channel_id": channel_id}, json={"name": name}
            )
        )

    async def execute_webhook(
        self,
        hook: Mapping[str, str],
        body: dict[str, Any],
        *,
        thread_id: str | None,
        files: Sequence[FilePart] = (),
    ) -> dict[str, Any]:
        query = {"wait": "true"} | ({"thread_id": thread_id} if thread_id else {})
        return dict(
            await self.request(
                "POST",
                "/webhooks/{webhook_id}/{webhook_token}",
                {"webhook_id": hook["id"], "webhook_token": hook["token"]},
                query=query,
                json=body,
                files=files,
                auth=False,
            )
        )

    async def webhook_message(
        self, hook: Mapping[str, str], message_id: str, body: dict[str, Any] | None, *, thread_id: str | None
    ) -> Any:
        """Edit (``body``) or delete (``None``) a message our webhook sent."""
        query = {"thread_id": thread_id} if thread_id else None
        return await self.request(
            "PATCH" if body is not None else "DELETE",
            "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
            {"webhook_id": hook["id"], "webhook_token": hook["token"], "message_id": message_id},
            query=query,
            json=body,
            auth=False,
        )
