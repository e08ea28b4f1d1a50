"""signal-cli-rest-api over aiohttp: one method per REST call the connector makes, and its errors mapped onto
the bridge's hierarchy.

* unreachable, timed out, 5xx: ``TransientError`` (the REST API restarts with its container);
* "Specified account does not exist" and signal-cli's other words for a number that is no longer linked:
  ``AuthenticationFailed`` (the account turns ``bad_credentials``; the person links the bridge again);
* 429 or 413 without challenge tokens: ``RateLimited`` (the REST API sends no Retry-After, so the wait is
  ``rate_limit_retry_s``);
* 429 or 413 with challenge tokens: ``ChallengeRequired``, a ``PermanentError`` carrying the tokens and what
  the operator does about them. It is never retried on its own: retrying only makes Signal stricter;
* any other refusal: ``PermanentError`` with signal-cli-rest-api's own words.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import aiohttp

from msgr_bridge.errors import AuthenticationFailed, PermanentError, RateLimited, TransientError

from .config import SignalSettings

CHUNK = 64 * 1024
ERROR_BODY_MAX = 64 * 1024
JSON_MAX = 32 * 1024 * 1024
"""The largest JSON answer read (a poll is also capped at ``POLL_MAX`` messages)."""
POLL_MAX = 100
UNLINKED_WORDS = (
    "specified account does not exist",
    "authorization failed",
    "not registered",
    "user is not registered",
)
CAPTCHA_PAGE = "https://signalcaptchas.org/challenge/generate.html"


class ChallengeRequired(PermanentError):
    """Signal wants a captcha (or proof of work) solved before this account sends more."""

    code = "signal_challenge_required"

    def __init__(self, number: str, base_url: str, tokens: list[str]) -> None:
        self.tokens = tokens
        super().__init__(
            f"Signal asks {number} to solve a challenge before it sends more messages "
            f"(challenge token {', '.join(tokens)}); this message was not sent",
            hint=(
                f"solve the captcha at {CAPTCHA_PAGE}, copy the signalcaptcha:// link it ends on, then "
                f'POST {{"challenge_token": "{tokens[0]}", "captcha": "signalcaptcha://..."}} to '
                f"{base_url}/v1/accounts/{quote(number)}/rate-limit-challenge and send the message again"
            ),
        )


class SignalApi:
    def __init__(self, settings: SignalSettings, number: str = "") -> None:
        self.settings = settings
        self.number = number or settings.number
        timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s)
        self.http = aiohttp.ClientSession(settings.base_url, timeout=timeout)

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> SignalApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def me(self) -> str:
        return quote(self.number, safe="")

    # --- plumbing ----------------------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        try:
            async with self.http.request(method, path, json=body, params=params) as response:
                if response.status >= 300:
                    raise self._error(method, path, response.status, await _bounded_json(response))
                if response.status == 204:
                    return None
                raw = await response.content.read(JSON_MAX + 1)
                if len(raw) > JSON_MAX:
                    raise PermanentError(
                        f"signal-cli-rest-api answered {method} {path} with over {JSON_MAX} bytes"
                    )
                return json.loads(raw) if raw.strip() else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.unreachable(exc) from exc
        except ValueError as exc:  # not JSON at all: not the REST API, or a broken proxy in front of it
            raise TransientError(f"signal-cli-rest-api answered {method} {path} with no JSON: {exc}") from exc

    def unreachable(self, exc: BaseException) -> TransientError:
        return TransientError(
            f"signal-cli-rest-api at {self.settings.base_url} did not answer ({type(exc).__name__}: {exc})",
            hint="is its container running, and is [networks.signal] base_url its address?",
        )

    def _error(self, method: str, path: str, status: int, body: Any) -> Exception:
        said = str(body.get("error", "")) if isinstance(body, dict) else ""
        if status in (413, 429):
            tokens = body.get("challenge_tokens") if isinstance(body, dict) else None
            if isinstance(tokens, list) and tokens and all(isinstance(t, str) for t in tokens):
                return ChallengeRequired(self.number, self.settings.base_url, tokens)
            return RateLimited(self.settings.rate_limit_retry_s, f"Signal rate-limits {self.number}: {said}")
        if any(words in said.lower() for words in UNLINKED_WORDS):
            return AuthenticationFailed(
                f"{self.number} is no longer linked to signal-cli-rest-api ({said})",
                hint="the device was removed in the phone's Linked devices; link the account again",
            )
        if status >= 500:
            return TransientError(f"signal-cli-rest-api failed on {method} {path}: {status} {said}")
        return PermanentError(f"signal-cli-rest-api refused {method} {path}: {status} {said}")

    # --- account and linking -----------------------------------------------------------------------------

    async def about(self) -> dict[str, Any]:
        about = await self.call("GET", "/v1/about")
        return about if isinstance(about, dict) else {}

    async def accounts(self) -> list[str]:
        numbers = await self.call("GET", "/v1/accounts")
        return [n for n in numbers if isinstance(n, str)] if isinstance(numbers, list) else []

    async def link_uri(self, device_name: str) -> str:
        answer = await self.call("GET", "/v1/qrcodelink/raw", params={"device_name": device_name})
        uri = answer.get("device_link_uri") if isinstance(answer, dict) else None
        if not isinstance(uri, str) or not uri.startswith("sgnl://"):
            raise TransientError(f"signal-cli-rest-api gave no device link: {answer!r}")
        return uri

    async def contacts(self) -> list[dict[str, Any]]:
        found = await self.call("GET", f"/v1/contacts/{self.me}")
        return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []

    async def groups(self) -> list[dict[str, Any]]:
        found = await self.call("GET", f"/v1/groups/{self.me}")
        return [g for g in found if isinstance(g, dict)] if isinstance(found, list) else []

    # --- sending -----------------------------------------------------------------------------------------

    async def send(self, body: dict[str, Any]) -> int:
        answer = await self.call("POST", "/v2/send", body={"number": self.number, **body})
        return _timestamp(answer)

    async def remote_delete(self, recipient: str, timestamp: int) -> int:
        body = {"recipient": recipient, "timestamp": timestamp}
        return _timestamp(await self.call("DELETE", f"/v1/remote-delete/{self.me}", body=body))

    async def reaction(
        self, recipient: str, emoji: str, author: str, timestamp: int, *, remove: bool
    ) -> None:
        body = {"recipient": recipient, "reaction": emoji, "target_author": author, "timestamp": timestamp}
        await self.call("DELETE" if remove else "POST", f"/v1/reactions/{self.me}", body=body)

    async def receipt(self, recipient: str, timestamp: int) -> None:
        body = {"recipient": recipient, "receipt_type": "read", "timestamp": timestamp}
        await self.call("POST", f"/v1/receipts/{self.me}", body=body)

    async def typing(self, recipient: str, active: bool) -> None:
        await self.call(
            "PUT" if active else "DELETE", f"/v1/typing-indicator/{self.me}", body={"recipient": recipient}
        )

    # --- receiving ---------------------------------------------------------------------------------------

    @asynccontextmanager
    async def websocket(self) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        try:
            ws = await self.http.ws_connect(f"/v1/receive/{self.me}", heartbeat=30.0, max_msg_size=16 << 20)
        except aiohttp.WSServerHandshakeError as exc:
            raise TransientError(
                f"signal-cli-rest-api refused the receive websocket ({exc.status})",
                hint='run it with MODE=json-rpc, or set [networks.signal] receive = "poll"',
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.unreachable(exc) from exc
        try:
            yield ws
        finally:
            await ws.close()

    async def poll(self) -> list[Any]:
        params = {"timeout": str(int(self.settings.poll_timeout_s)), "max_messages": str(POLL_MAX)}
        found = await self.call("GET", f"/v1/receive/{self.me}", params=params)
        return found if isinstance(found, list) else []

    @asynccontextmanager
    async def attachment(self, attachment_id: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """The bytes of a received attachment, in chunks (never the whole file at once)."""
        path = f"/v1/attachments/{quote(attachment_id, safe='')}"
        try:
            # no total limit (a large file on a slow link), but every read must make progress
            timeout = aiohttp.ClientTimeout(total=None, sock_read=self.settings.request_timeout_s)
            async with self.http.get(path, timeout=timeout) as response:
                if response.status >= 300:
                    raise self._error("GET", path, response.status, await _bounded_json(response))
                yield response.content.iter_chunked(CHUNK)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.unreachable(exc) from exc


async def _bounded_json(response: aiohttp.ClientResponse) -> Any:
    raw = await response.content.read(ERROR_BODY_MAX)
    try:
        return json.loads(raw)
    except ValueError:
        return {"error": raw.decode("utf-8", "replace")[:500]}


def _timestamp(answer: Any) -> int:
    value = answer.get("timestamp") if isinstance(answer, dict) else None
    try:
        return int(str(value))
    except ValueError:
        raise TransientError(
            f"signal-cli-rest-api answered without a message timestamp: {answer!r}"
        ) from None
