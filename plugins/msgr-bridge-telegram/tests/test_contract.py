"""The Telegram connector passes the connector contract suite against the fake Telegram.

The shared conversation is Alice's private chat with Bob; Bob acts inside the fake's world (the fake is
the other person's client), and what he observes is what the fake recorded from the wire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from msgr_bridge_telegram import TelegramConnector
from msgr_bridge_telegram.client import payload
from telethon.tl import types

from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.contract import ConnectorContract
from msgr_bridge.testing.harness import ConnectorHarness


class TelegramHarness(ConnectorHarness):
    connector_class = TelegramConnector
    can_restart = True

    def __init__(self, tg: Any) -> None:
        super().__init__()
        self.tg = tg
        self.conversation_id = f"user:{tg.bob.id}"

    def link_settings(self) -> Mapping[str, Any]:
        return self.tg.settings

    def link_answers(self) -> Mapping[str, str]:
        return self.tg.answers()

    def bad_link_answers(self) -> Mapping[str, str]:
        return {"phone": "+19990000000"}

    async def peer_send(self, text: str) -> str | None:
        post = self.tg.fake.world.send(self.tg.bob, self.tg.alice, text)
        return str(post.ids[self.tg.alice.id])

    def _from_alice(self, text: str) -> list[Any]:
        bob, alice = self.tg.bob, self.tg.alice
        return [p for p in bob.posts.values() if p.sender == alice.id and text in p.text]

    async def peer_wait_message(self, text: str) -> str:
        await self.tg.until(lambda: self._from_alice(text))
        return str(self._from_alice(text)[0].text)

    async def peer_sees_edit(self, target_id: str, text: str) -> None:
        await self.tg.until(lambda: self.tg.alice.posts[int(target_id)].text == text)

    async def peer_sees_delete(self, target_id: str) -> None:
        alice = self.tg.alice.id
        posts = self.tg.bob.posts
        await self.tg.until(lambda: all(p.ids.get(alice) != int(target_id) for p in posts.values()))

    async def peer_sees_reaction(self, target_id: str, emoji: str, action: ReactionAction) -> None:
        post = self.tg.alice.posts[int(target_id)]
        want = emoji if action == ReactionAction.ADD else None
        await self.tg.until(lambda: post.reactions.get(self.tg.alice.id) == want)

    async def peer_sees_read(self, up_to_id: str) -> None:
        post = self.tg.alice.posts[int(up_to_id)]
        bob_id = post.ids[self.tg.bob.id]

        def seen() -> bool:
            log = self.tg.bob.box.log
            return any(isinstance(u, types.UpdateReadHistoryOutbox) and u.max_id == bob_id for _, _, u in log)

        await self.tg.until(seen)

    async def peer_sees_typing(self, active: bool) -> None:
        alice = self.tg.alice.id
        await self.tg.until(lambda: (alice, active) in [(u, a) for u, _, a in self.tg.fake.typing_seen])

    async def stop_server(self) -> None:
        await self.tg.fake.stop()

    async def start_server(self) -> None:
        await self.tg.fake.start()

    def sample_payloads(self) -> Sequence[RawPayload]:
        alice, bob = self.tg.alice.id, self.tg.bob.id
        when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        text = types.Message(
            id=7, peer_id=types.PeerUser(bob), date=when, message="hello *bold* world",
            from_id=types.PeerUser(bob),
            entities=[types.MessageEntityBold(6, 6), types.MessageEntityMentionName(13, 5, alice)],
            reply_to=types.MessageReplyHeader(reply_to_msg_id=3),
        )  # fmt: skip
        topic = types.Message(
            id=9, peer_id=types.PeerChannel(77), date=when, message="in a topic", from_id=types.PeerUser(bob),
            reply_to=types.MessageReplyHeader(forum_topic=True, reply_to_msg_id=5),
        )  # fmt: skip
        joined = types.MessageService(
            id=10, peer_id=types.PeerChat(55), date=when, from_id=types.PeerUser(bob),
            action=types.MessageActionChatAddUser([alice]),
        )  # fmt: skip
        mine = types.Message(id=8, peer_id=types.PeerUser(bob), date=when, message="mine", out=True)
        names = {"names": {str(bob): "Bob"}}
        stop = types.SendMessageCancelAction()
        reacted = types.UpdateMessageReactions(types.PeerUser(bob), 7, types.MessageReactions(results=[]))
        return [
            payload(types.UpdateNewMessage(text, 10, 1), alice, **names),
            payload(types.UpdateNewChannelMessage(topic, 4, 1), alice),
            payload(types.UpdateNewMessage(joined, 11, 1), alice),
            payload(types.UpdateNewMessage(mine, 12, 1), alice, txn_id="txn-1"),
            payload(types.UpdateEditMessage(text, 13, 1), alice),
            payload(types.UpdateDeleteMessages([7], 14, 1), alice, conversation=f"user:{bob}"),
            payload(types.UpdateDeleteChannelMessages(77, [9], 5, 1), alice),
            payload(reacted, alice, reactions={"added": [[bob, "👍"]], "removed": [[alice, "🎉"]]}),
            payload(types.UpdateReadHistoryOutbox(types.PeerUser(bob), 8, 15, 1), alice),
            payload(types.UpdateUserTyping(bob, types.SendMessageTypingAction()), alice),
            payload(types.UpdateChannelUserTyping(77, types.PeerUser(bob), stop), alice),
        ]


@pytest.fixture
async def connector_harness(telegram: Any) -> AsyncIterator[TelegramHarness]:
    harness = TelegramHarness(telegram)
    await harness.start()
    yield harness
    await harness.aclose()


class TestContract(ConnectorContract):
    pass
