"""The alert webhook: a bounded JSON POST that cannot be turned against the bridge's own network.

Each call has a timeout (``[alerts] webhook_timeout_s``) and at most ``webhook_retries`` further tries with
a short backoff; redirects are not followed. The address rules are the media fetch's (``sdk.urls``,
``sdk.fetch.CheckedResolver``): only public addresses, unless the operator lists a private network in
``[alerts] webhook_allow_networks``; every address a name resolves to is checked and the connection goes
to the checked address. A failed call is logged (``alert.webhook_failed``) and counted, never raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
import anyio
import orjson
import structlog

from ..errors import AttachmentRefused
from ..sdk.fetch import CheckedResolver, check_remote_url
from ..sdk.urls import AddressRules
from . import metrics as m

log = structlog.get_logger("msgr_bridge.alerts")

BACKOFF_S = 0.5


class Webhook:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        allow_networks: Sequence[str] = (),
        metrics: m.Metrics | None = None,
    ) -> None:
        self.url, self.timeout_s, self.retries = url, timeout_s, retries
        self.rules = AddressRules.allowing(allow_networks)
        self.metrics = metrics
        self.calls = 0
        """HTTP requests made (tries included), for tests."""

    async def post(self, body: dict[str, Any]) -> bool:
        """POST ``body``; True when the endpoint answered 2xx within the tries."""
        error = "not tried"
        for attempt in range(self.retries + 1):
            if attempt:
                await anyio.sleep(BACKOFF_S * 2 ** (attempt - 1))
            try:
                error = await self._once(body)
            except AttachmentRefused as exc:  # the address rules: trying again cannot help
                error = exc.message.replace("attachment host", "webhook host")
                break
            if not error:
                return True
        log.warning("alert.webhook_failed", url=self.url, error=error, tries=attempt + 1)
        if self.metrics is not None:
            self.metrics.add(m.ALERT_WEBHOOK_FAILURES)
        return False

    async def _once(self, body: dict[str, Any]) -> str:
        """One try: "" on success, else why not."""
        target = check_remote_url(self.url, self.rules)
        self.calls += 1
        connector = aiohttp.TCPConnector(resolver=CheckedResolver(self.rules), use_dns_cache=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
                session.post(
                    target,
                    data=orjson.dumps(body),
                    headers={"Content-Type": "application/json"},
                    allow_redirects=False,
                ) as response,
            ):
                if 200 <= response.status < 300:
                    return ""
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
