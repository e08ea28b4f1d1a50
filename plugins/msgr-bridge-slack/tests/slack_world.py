"""Helpers of the Slack tests: a fake Slack workspace of two people, ``me`` (the
account under test) and ``bob``, who share ``#general``; connectors built on it with in-memory doors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from msgr_bridge_slack import SlackConnector
from slack_sdk.web.async_client import AsyncWebClient

from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.fakes.slack import FakeSlack
from msgr_bridge.testing.fakes.slack.entities import Channel, Token, User

FAST = {"history_per_minute": 6000, "history_max_wait_s": 5, "ping_interval_s": 0.5, "silence_timeout_s": 5}
"""Operator settings for tests: no history pacing to speak of, quick pings."""


@dataclass
class Slack:
    fake: FakeSlack
    me: User
    bob: User
    general: Channel
    user_token: Token
    app_token: Token
    session_token: Token
    bob_web: AsyncWebClient

    def secrets(self, mode: str) -> dict[str, str]:
        if mode == "rtm":
            return {"token": self.session_token.value, "cookie_d": self.session_token.cookie or ""}
        return {"token": self.user_token.value, "app_token": self.app_token.value}

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {"api_url": self.fake.base_url, "user_id": self.me.id, **FAST, **extra}

    def connector(
        self,
        mode: str = "socket_mode",
        *,
        sink: Any = None,
        state: Any = None,
        media: Any = None,
        **settings: Any,
    ) -> SlackConnector:
        ctx = make_context(
            "slack",
            remote_user_id=self.me.id,
            settings=self.settings(**settings),
            secrets=self.secrets(mode),
            sink=sink or CollectingSink(),
            state=state,
            media=media,
        )
        return SlackConnector(ctx)


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy (the fake's state changes on its own loop)."""
    async with asyncio.timeout(timeout):
        while not (found := check()):  # noqa: ASYNC110 - the fake has no change signal
            await asyncio.sleep(0.02)
        return found
