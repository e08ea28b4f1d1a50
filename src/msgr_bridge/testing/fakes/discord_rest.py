"""The REST half of the Discord fake: spec checks, authentication, rate limits, faults, then the handlers.

Every request under ``/api/v10`` is recorded, checked against the vendored OpenAPI subset
(``SpecChecker``), authenticated (``Authorization: Bot <token>``; webhook execution authenticates by the
token in its path), and counted against its rate-limit bucket: one bucket per route and major parameter
(channel, webhook), answered with Discord's ``X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket``
headers, plus a global per-token limit per second. Over a limit, or when a test injected one, the answer is
Discord's 429: ``{"message", "retry_after", "global"}`` with ``Retry-After`` and, for the global limit,
``X-RateLimit-Global: true``. Errors use Discord's JSON shape ``{"message", "code"}``.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import BodyPartReader, web

from .discord_spec import SpecViolation

if TYPE_CHECKING:
    from .discord import DiscordFake

MAX_JSON_BYTES = 1 << 20
MAX_UPLOAD_BYTES = 10 << 20
"""Discord's upload limit for a bot without boosts (per request)."""


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Recorded:
    method: str
    path: str
    template: str | None
    query: dict[str, str]
    body: Any
    files: dict[str, tuple[str, bytes]]
    status: int = 0


@dataclass
class Bucket:
    limit: int
    window_s: float
    remaining: int = 0
    reset_at: float = 0.0


@dataclass
class Injected:
    """A fault for the next ``count`` requests on ``template`` (any route when None)."""

    template: str | None
    status: int
    retry_after: float = 0.0
    is_global: bool = False
    count: int = 1


@dataclass
class RateLimits:
    default: tuple[int, float] = (1000, 1.0)
    per_route: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Route template -> (requests, seconds). Discord's message send is about (5, 5.0) per channel."""
    global_per_s: int = 50
    buckets: dict[tuple[str, str], Bucket] = field(default_factory=dict)
    global_counts: dict[str, tuple[int, int]] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    if status == 204:
        return web.Response(status=204, headers=headers)
    return web.Response(
        status=status, body=orjson.dumps(payload), content_type="application/json", headers=headers
    )


def _bucket_key(template: str, params: dict[str, str]) -> tuple[str, str]:
    major = params.get("channel_id") or params.get("webhook_id") or params.get("guild_id") or ""
    return template, major


class RestApi:
    def __init__(self, fake: DiscordFake) -> None:
        self.fake = fake
        self.limits = RateLimits()
        self.injected: list[Injected] = []
        self.requests: deque[Recorded] = deque(maxlen=10_000)
        """The latest requests, oldest first (bounded, for a fake that runs for long)."""

    # --- faults ----------------------------------------------------------------------------------------

    def inject_429(
        self,
        template: str | None = None,
        *,
        retry_after: float = 1.0,
        is_global: bool = False,
        count: int = 1,
    ) -> None:
        self.injected.append(Injected(template, 429, retry_after, is_global, count))

    def inject_error(self, status: int = 500, template: str | None = None, count: int = 1) -> None:
        self.injected.append(Injected(template, status, count=count))

    def _take_injected(self, template: str) -> Injected | None:
        for fault in self.injected:
            if fault.template in (None, template):
                fault.count -= 1
                if fault.count <= 0:
                    self.injected.remove(fault)
                return fault
        return None

    # --- the request path --------------------------------------------------------------------------------

    async def _read(self, request: web.Request) -> tuple[Any, dict[str, tuple[str, bytes]]]:
        if not request.can_read_body:
            return None, {}
        if request.content_type == "multipart/form-data":
            body: Any = None
            files: dict[str, tuple[str, bytes]] = {}
            total = 0
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    raise ApiError(400, 50035, "Invalid Form Body: nested multipart")
                data = bytearray()
                with warnings.catch_warnings():
                    # aiohttp's reader of a part without Content-Length (a streamed file) calls its own
                    # deprecated unread_data(); nothing the client did.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    while chunk := await part.read_chunk():
                        data += chunk
                        total += len(chunk)
                        if total > MAX_UPLOAD_BYTES:
                            raise ApiError(413, 40005, "Request entity too large")
                if part.name == "payload_json":
                    body = orjson.loads(data)
                else:
                    files[part.name or ""] = (part.filename or "file", bytes(data))
            return body, files
        raw = await request.content.read(MAX_JSON_BYTES + 1)
        if len(raw) > MAX_JSON_BYTES:
            raise ApiError(413, 40005, "Request entity too large")
        if not raw:
            return None, {}
        try:
            return orjson.loads(raw), {}
        except orjson.JSONDecodeError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None

    def _auth(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        user_id = self.fake.tokens.get(token) if scheme == "Bot" else None
        if user_id is None:
            raise ApiError(401, 0, "401: Unauthorized")
        return user_id

    def _rate_limit(
        self, template: str, params: dict[str, str], who: str
    ) -> tuple[dict[str, str], float | None]:
        now = time.time()
        key = _bucket_key(template, params)
        limit, window = self.limits.per_route.get(template, self.limits.default)
        bucket = self.limits.buckets.setdefault(key, Bucket(limit, window))
        if now >= bucket.reset_at:
            bucket.remaining, bucket.reset_at = bucket.limit, now + bucket.window_s
        retry: float | None = None
        if bucket.remaining <= 0:
            retry = bucket.reset_at - now
        else:
            bucket.remaining -= 1
        headers = {
            "X-RateLimit-Limit": str(bucket.limit),
            "X-RateLimit-Remaining": str(bucket.remaining),
            "X-RateLimit-Reset": f"{bucket.reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{bucket.reset_at - now:.3f}",
            "X-RateLimit-Bucket": hashlib.sha1(template.encode()).hexdigest()[:16],
        }
        return headers, retry

    def _global(self, who: str) -> float | None:
        second = int(time.time())
        start, count = self.limits.global_counts.get(who, (second, 0))
        if start != second:
            start, count = second, 0
        self.limits.global_counts[who] = (start, count + 1)
        return (start + 1 - time.time()) if count + 1 > self.limits.global_per_s else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        record = Recorded(request.method, path, None, dict(request.query), None, {})
        self.requests.append(record)
        response = await self._handle(request, path, record)
        record.status = response.status
        return response

    async def _handle(self, request: web.Request, path: str, record: Recorded) -> web.StreamResponse:
        try:
            record.body, record.files = await self._read(request)
            op, params = self.fake.spec.check(
                request.method, path, record.query, record.body, tuple(record.files)
            )
            record.template = op.template
            who = self._auth(request) if op.bot_auth_required else f"webhook:{params.get('webhook_id')}"
        except SpecViolation as exc:
            code = 50035 if exc.status == 400 else 0
            return json_response(exc.status, {"message": exc.message, "code": code, "errors": exc.errors})
        except ApiError as exc:
            return json_response(exc.status, {"message": exc.message, "code": exc.code})
        fault = self._take_injected(op.template)
        headers, retry = self._rate_limit(op.template, params, who)
        global_retry = self._global(who)
        if fault is not None and fault.status != 429:
            return json_response(fault.status, {"message": f"{fault.status}: injected fault", "code": 0})
        if fault is not None or retry is not None or global_retry is not None:
            is_global = (fault.is_global if fault else False) or (retry is None and global_retry is not None)
            wait = fault.retry_after if fault else (retry if retry is not None else global_retry or 0.0)
            headers = {
                **headers,
                "Retry-After": str(max(1, round(wait + 0.4))),
                "X-RateLimit-Scope": "global" if is_global else "user",
            }
            if is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {
                "message": "You are being rate limited.",
                "retry_after": round(wait, 3),
                "global": is_global,
            }
            return json_response(429, body, headers)
        try:
            status, payload = self.fake.serve(op.template, request.method, params, record, who)
        except ApiError as exc:
            return json_response(exc.status, {"message": exc.message, "code": exc.code}, headers)
        return json_response(status, payload, headers)
