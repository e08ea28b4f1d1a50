"""Fixtures: a Discord fake per test with a bot, the other person, a guild and a channel; a connector for
the bot linked through its own link flow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from msgr_bridge_discord import DiscordConnector

from msgr_bridge.testing.fakes import CollectingSink, MemoryStateStore, make_context
from msgr_bridge.testing.fakes.discord import DiscordFake


@dataclass
class World:
    fake: DiscordFake
    bot: dict[str, Any]
    token: str
    bob: dict[str, Any]
    guild: dict[str, Any]
    channel: dict[str, Any]

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {"api_base": self.fake.api_url, "gateway_url": self.fake.gateway_url, **extra}

    def connector(
        self, *, state: Any = None, sink: Any = None, media: Any = None, **settings: Any
    ) -> DiscordConnector:
        ctx = make_context(
            "discord",
            remote_user_id=self.bot["id"],
            settings=self.settings(**settings),
            secrets={"token": self.token},
            sink=sink if sink is not None else CollectingSink(),
            state=state if state is not None else MemoryStateStore(),
            media=media,
        )
        return DiscordConnector(ctx)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    fake = DiscordFake()
    await fake.start()
    fake.gateway.heartbeat_interval_ms = 1000
    bot, token = fake.add_bot("bridge-bot")
    bob = fake.add_user("bob")
    guild = fake.add_guild("Guild", [bot["id"], bob["id"]])
    channel = fake.add_channel(guild["id"], "general")
    try:
        yield World(fake, bot, token, bob, guild, channel)
    finally:
        await fake.stop()
