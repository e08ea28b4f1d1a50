"""The XMPP connector passes the connector contract suite against a real Prosody.

The shared conversation is a 1:1 chat: the connector names it by the other person's bare JID; the other
person is an independent slixmpp client (``xmpp_peer.Peer``) sending to our bare JID.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest
from msgr_bridge_xmpp.connector import XmppConnector
from xmpp_peer import Peer

from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.contract import ConnectorContract
from msgr_bridge.testing.contract_state import StateContract
from msgr_bridge.testing.harness import WAIT_S, ConnectorHarness
from msgr_bridge.testing.prosody import ProsodyServer

_ids = itertools.count(1)
_CHAT_STATE = {True: "composing", False: "paused"}


class XmppHarness(ConnectorHarness):
    connector_class = XmppConnector
    can_restart = True

    def __init__(self, server: ProsodyServer) -> None:
        super().__init__()
        self.server = server
        n = next(_ids)
        self.me_user, self.me_password = f"contract-me{n}", f"contract-me{n}-pw"
        self.bob_user, self.bob_password = f"contract-bob{n}", f"contract-bob{n}-pw"
        self.me_jid = server.register(self.me_user, self.me_password)
        self.conversation_id = server.register(self.bob_user, self.bob_password)
        self.peer: Peer | None = None

    async def start(self) -> None:
        self.peer = await Peer(self.server, self.bob_user, self.bob_password).start()

    async def aclose(self) -> None:
        if self.peer is not None:
            await self.peer.stop()

    def _peer(self) -> Peer:
        assert self.peer is not None
        return self.peer

    async def _wait(self, predicate: Callable[[Any], bool]) -> Any:
        return await self._peer().wait_for(
            lambda m: m["from"].bare == self.me_jid and predicate(m), timeout=WAIT_S
        )

    def link_settings(self) -> Mapping[str, Any]:
        return self.server.connection_settings()

    def link_answers(self) -> Mapping[str, str]:
        return {"jid": self.me_jid, "password": self.me_password}

    def bad_link_answers(self) -> Mapping[str, str]:
        return {"jid": self.me_jid, "password": "not-the-password"}

    async def peer_send(self, text: str) -> str | None:
        return self._peer().send(self.me_jid, text)

    async def peer_settle(self) -> None:
        await self._peer().client.get_roster()  # the server handles one stream's stanzas in order

    async def peer_wait_message(self, text: str) -> str:
        found = await self._wait(lambda m: bool(m["body"]) and text in m["body"] and not m["replace"]["id"])
        return str(found["body"])

    async def peer_sees_edit(self, target_id: str, text: str) -> None:
        await self._wait(lambda m: m["replace"]["id"] == target_id and m["body"] == text)

    async def peer_sees_delete(self, target_id: str) -> None:
        await self._wait(lambda m: m["retract"]["id"] == target_id)

    async def peer_sees_reaction(self, target_id: str, emoji: str, action: ReactionAction) -> None:
        present = action == ReactionAction.ADD
        await self._wait(
            lambda m: m["reactions"]["id"] == target_id and (emoji in m["reactions"]["values"]) is present
        )

    async def peer_sees_read(self, up_to_id: str) -> None:
        await self._wait(lambda m: m["displayed"]["id"] == up_to_id)

    async def peer_sees_typing(self, active: bool) -> None:
        await self._wait(lambda m: m["chat_state"] == _CHAT_STATE[active])

    async def stop_server(self) -> None:
        self.server.stop()
        client = self._peer().client
        if client.transport is not None:
            client.transport.abort()

    async def start_server(self) -> None:
        self.server.start()
        self.peer = await Peer(self.server, self.bob_user, self.bob_password).start()

    def sample_payloads(self) -> Sequence[RawPayload]:
        base: dict[str, Any] = {
            "v": 1, "type": "chat", "from": f"{self.conversation_id}/peer", "to": f"{self.me_jid}/bridge",
            "id": "m1", "stanza_id": "arch-1", "self": False, "timestamp": "2026-01-02T03:04:05+00:00",
            "body": None, "replace": None, "retract": None, "reactions": None, "marker": None,
            "receipt": None, "chat_state": None, "oob": [], "reply_to": None, "subject": None,
            "private": False,
        }  # fmt: skip
        room = "room@conference.localhost"
        return [
            {**base, "body": "hello", "chat_state": "active"},
            {**base, "body": "see file", "oob": [{"url": "http://127.0.0.1/f/a.png", "desc": "a"}]},
            {**base, "id": "m2", "body": "hello!", "replace": "m1"},
            {**base, "id": "m3", "retract": "m1"},
            {**base, "id": "m4", "reactions": {"id": "m1", "values": ["👍"], "removed": ["🎉"]}},
            {**base, "id": "m5", "marker": {"kind": "displayed", "id": "m1"}},
            {**base, "id": "m6", "receipt": "m1"},
            {**base, "id": "m7", "chat_state": "composing"},
            {**base, "type": "groupchat", "from": f"{room}/bob", "to": self.me_jid, "body": "in a room"},
            {**base, "id": "m8", "body": "answer", "reply_to": "m1"},
            {
                "v": 1,
                "kind": "presence",
                "type": "available",
                "from": f"{room}/carol",
                "codes": [],
                "nick": None,
                "jid": None,
                "actor": None,
                "reason": None,
                "self": False,
                "timestamp": "2026-01-02T03:04:05+00:00",
            },
            {
                "v": 1,
                "kind": "presence",
                "type": "unavailable",
                "from": f"{room}/carol",
                "codes": [307],
                "nick": None,
                "jid": None,
                "actor": "bob",
                "reason": "spam",
                "self": False,
                "timestamp": "2026-01-02T03:04:05+00:00",
            },
            {
                **base,
                "self": True,
                "from": f"{self.me_jid}/bridge",
                "to": self.conversation_id,
                "body": "mine",
            },
        ]


@pytest.fixture
async def connector_harness(prosody: ProsodyServer) -> AsyncIterator[XmppHarness]:
    harness = XmppHarness(prosody)
    await harness.start()
    yield harness
    await harness.aclose()


class TestContract(ConnectorContract):
    pass


class TestStateContract(StateContract):
    pass
