"""The Teams connector passes the connector contract suite against the Teams fake (identity platform and
Graph over TLS). The other person is Bob, acting through the fake as Graph's other users do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest
from msgr_bridge_teams import TeamsConnector

from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.contract import ConnectorContract
from msgr_bridge.testing.fakes.teams import FakeTeams
from msgr_bridge.testing.harness import WAIT_S, ConnectorHarness


class TeamsHarness(ConnectorHarness):
    connector_class = TeamsConnector
    can_restart = True  # the fake pauses (connections drop) and serves the same tenant again

    def __init__(self, tenant: Any) -> None:
        super().__init__()
        self.tenant, self.fake = tenant, tenant.fake
        self.conversation_id = tenant.chat

    def link_settings(self) -> Mapping[str, Any]:
        return self.tenant.settings()

    def link_answers(self) -> Mapping[str, str]:
        self.fake.identity.approve_pending(self.tenant.alice)  # Alice enters the code in her browser
        return {}

    def bad_link_answers(self) -> Mapping[str, str]:
        self.fake.identity.decline_pending()  # the person declines the sign-in
        return {}

    async def peer_send(self, text: str) -> str | None:
        return str(self.fake.post_as(self.tenant.bob, self.tenant.chat, f"<p>{text}</p>")["id"])

    async def _until(self, check: Callable[[], Any]) -> Any:
        async with asyncio.timeout(WAIT_S):
            while not (found := check()):  # noqa: ASYNC110 - the fake's model has no change event
                await asyncio.sleep(0.05)
            return found

    def _messages(self) -> list[dict[str, Any]]:
        return list(self.fake.chats[self.tenant.chat]["messages"])

    async def peer_wait_message(self, text: str) -> str:
        def mine() -> str | None:
            for m in self._messages():
                if m["from"]["user"]["id"] == self.tenant.alice and text in m["body"]["content"]:
                    return str(m["body"]["content"])
            return None

        return str(await self._until(mine))

    async def peer_sees_edit(self, target_id: str, text: str) -> None:
        await self._until(
            lambda: any(
                m["id"] == target_id and text in m["body"]["content"] and m["lastEditedDateTime"]
                for m in self._messages()
            )
        )

    async def peer_sees_delete(self, target_id: str) -> None:
        await self._until(
            lambda: any(m["id"] == target_id and m["deletedDateTime"] for m in self._messages())
        )

    async def peer_sees_reaction(self, target_id: str, emoji: str, action: ReactionAction) -> None:
        def seen() -> bool:
            msg = self.fake.find(self.tenant.chat, target_id) or {}
            has = any(
                r["reactionType"] == emoji and r["user"]["user"]["id"] == self.tenant.alice
                for r in msg.get("reactions", ())
            )
            return has == (action == ReactionAction.ADD)

        await self._until(seen)

    async def peer_sees_read(self, up_to_id: str) -> None:
        msg = self.fake.find(self.tenant.chat, up_to_id)
        assert msg is not None
        read = self.fake.chats[self.tenant.chat]["read"]
        await self._until(lambda: read.get(self.tenant.alice, "") >= msg["createdDateTime"])

    async def stop_server(self) -> None:
        await self.fake.pause()

    async def start_server(self) -> None:
        await self.fake.start()

    def sample_payloads(self) -> Sequence[RawPayload]:
        fake, t = self.fake, self.tenant
        msg = fake.message(
            t.bob,
            '<p>Hi <at id="0">Alice</at>, see <b>this</b></p>',
            chatId=t.chat,
            mentions=[
                {
                    "id": 0,
                    "mentionText": "Alice",
                    "mentioned": {
                        "user": {"id": t.alice, "displayName": "Alice", "userIdentityType": "aadUser"}
                    },
                }
            ],
            attachments=[
                {
                    "id": "1",
                    "contentType": "reference",
                    "name": "a.pdf",
                    "contentUrl": "https://contoso.sharepoint.com/a.pdf",
                }
            ],
        )
        reply = fake.message(t.bob, "<p>in thread</p>", replyToId="1700000000000")
        base = {"v": 1, "self_id": t.alice, "conversation": t.chat}
        return [
            {**base, "change": "message", "message": msg},
            {**base, "change": "message", "message": msg, "txn_id": "txn-1"},
            {**base, "change": "edit", "message": {**msg, "lastEditedDateTime": msg["createdDateTime"]}},
            {**base, "change": "delete", "message": {**msg, "deletedDateTime": msg["createdDateTime"]}},
            {
                **base,
                "change": "reactions",
                "message": msg,
                "reactions_added": [[t.alice, "like"]],
                "reactions_removed": [[t.bob, "💘"]],
            },
            {**base, "conversation": "team-1/19:c@thread.tacv2", "change": "message", "message": reply},
        ]


@pytest.fixture
async def connector_harness(tenant: Any) -> AsyncIterator[TeamsHarness]:
    harness = TeamsHarness(tenant)
    await harness.start()
    yield harness
    await harness.aclose()


class TestContract(ConnectorContract):
    pass


def test_fake_is_a_fixture(fake: FakeTeams) -> None:
    assert fake.base_url.startswith("https://127.0.0.1:")
