"""The Discord connector passes the connector contract suite against the wire-level Discord fake.

The other person is ``bob``, acting on the fake directly (as another Discord client would); the shared
conversation is a guild text channel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from msgr_bridge_discord import DiscordConnector

from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.contract import ConnectorContract
from msgr_bridge.testing.harness import ConnectorHarness


class DiscordHarness(ConnectorHarness):
    connector_class = DiscordConnector
    can_restart = True

    def __init__(self, world: Any) -> None:
        super().__init__()
        self.w = world
        self.fake = world.fake
        self.conversation_id = world.channel["id"]
        self.typing_seen = 0

    def link_settings(self) -> Mapping[str, Any]:
        return self.w.settings()

    def link_answers(self) -> Mapping[str, str]:
        return {"token": self.w.token}

    def bad_link_answers(self) -> Mapping[str, str]:
        return {"token": "not.a-valid.token"}

    async def peer_send(self, text: str) -> str | None:
        return str(self.fake.post(self.conversation_id, self.w.bob["id"], text)["id"])

    def _msgs(self) -> list[dict[str, Any]]:
        return list(self.fake.messages[self.conversation_id].values())

    async def peer_wait_message(self, text: str) -> str:
        found = await self.fake.wait_for(
            lambda: next((m["content"] for m in self._msgs() if text in m["content"]), None)
        )
        return str(found)

    async def peer_sees_edit(self, target_id: str, text: str) -> None:
        await self.fake.wait_for(
            lambda: any(m["id"] == target_id and m["content"] == text for m in self._msgs())
        )

    async def peer_sees_delete(self, target_id: str) -> None:
        await self.fake.wait_for(lambda: target_id not in self.fake.messages[self.conversation_id])

    async def peer_sees_reaction(self, target_id: str, emoji: str, action: ReactionAction) -> None:
        bot = self.w.bot["id"]

        def seen() -> bool:
            reactors = self.fake.messages[self.conversation_id][target_id].get("_reactors", {}).get(emoji, [])
            return (bot in reactors) == (action is ReactionAction.ADD)

        await self.fake.wait_for(seen)

    async def peer_sees_typing(self, active: bool) -> None:
        typing = [r for r in self.fake.rest.requests if r.template == "/channels/{channel_id}/typing"]
        if active:
            await self.fake.wait_for(
                lambda: (
                    len([r for r in self.fake.rest.requests if r.template == "/channels/{channel_id}/typing"])
                    > self.typing_seen
                )
            )
            self.typing_seen = len(typing) + 1
        # Discord has no "stopped typing": the indicator lapses after about ten seconds.

    async def stop_server(self) -> None:
        await self.fake.stop()

    async def start_server(self) -> None:
        await self.fake.start()

    def sample_payloads(self) -> Sequence[RawPayload]:
        return sample_payloads(self.w.bot["id"], self.conversation_id, self.w.bob)


def sample_payloads(self_id: str, channel_id: str, bob: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"v": 1, "self_id": self_id, "received_at": "2026-01-02T03:04:05+00:00"}
    message = {
        "id": "1100",
        "channel_id": channel_id,
        "guild_id": "9",
        "author": bob,
        "content": "**hi** <@" + self_id + ">",
        "timestamp": "2026-01-02T03:04:05.123+00:00",
        "mentions": [{"id": self_id, "username": "bridge-bot"}],
        "attachments": [
            {
                "id": "5",
                "filename": "a.png",
                "size": 3,
                "url": "https://cdn.example/a.png",
                "content_type": "image/png",
            }
        ],
        "type": 0,
        "member": {"nick": "Bobby"},
    }
    return [
        {**base, "t": "MESSAGE_CREATE", "d": message},
        {
            **base,
            "t": "MESSAGE_CREATE",
            "thread": True,
            "d": {**message, "id": "1101", "type": 19, "message_reference": {"message_id": "1100"}},
        },
        {
            **base,
            "t": "MESSAGE_CREATE",
            "own_webhook": True,
            "txn_id": "txn-1",
            "d": {
                **message,
                "id": "1102",
                "webhook_id": "77",
                "author": {"id": "77", "username": "Alice", "bot": True},
            },
        },
        {
            **base,
            "t": "MESSAGE_UPDATE",
            "d": {**message, "content": "edited", "edited_timestamp": "2026-01-02T03:05:00+00:00"},
        },
        {**base, "t": "MESSAGE_DELETE", "d": {"id": "1100", "channel_id": channel_id}},
        {
            **base,
            "t": "MESSAGE_REACTION_ADD",
            "d": {
                "user_id": bob["id"],
                "channel_id": channel_id,
                "message_id": "1100",
                "emoji": {"id": None, "name": "👍"},
            },
        },
        {
            **base,
            "t": "MESSAGE_REACTION_REMOVE",
            "d": {
                "user_id": bob["id"],
                "channel_id": channel_id,
                "message_id": "1100",
                "emoji": {"id": "3", "name": "blob"},
            },
        },
        {**base, "t": "TYPING_START", "d": {"user_id": bob["id"], "channel_id": channel_id, "timestamp": 1}},
        {
            **base,
            "t": "GUILD_MEMBER_ADD",
            "channels": [channel_id],
            "d": {"guild_id": "9", "user": bob, "nick": None},
        },
        {**base, "t": "GUILD_MEMBER_REMOVE", "channels": [channel_id], "d": {"guild_id": "9", "user": bob}},
    ]


@pytest.fixture
async def connector_harness(world: Any) -> AsyncIterator[DiscordHarness]:
    harness = DiscordHarness(world)
    await harness.start()
    yield harness
    await harness.aclose()


class TestContract(ConnectorContract):
    pass
