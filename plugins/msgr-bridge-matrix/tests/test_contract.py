"""The Matrix connector passes the connector contract suite against a real Synapse.

The shared conversation is a direct-message room the other person creates and the account under test
joins (with its own client, as the user would in another app). The other person is an independent mautrix
client (``matrix_peer.Peer``) that watches its own ``/sync``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pytest
from matrix_peer import Peer
from mautrix.types import RoomID
from msgr_bridge_matrix import MatrixConnector

from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.contract import ConnectorContract
from msgr_bridge.testing.contract_state import StateContract
from msgr_bridge.testing.harness import WAIT_S, ConnectorHarness
from msgr_bridge.testing.synapse import SynapseServer


def _relation(event: dict[str, Any]) -> dict[str, Any]:
    relates = (event.get("content") or {}).get("m.relates_to")
    return relates if isinstance(relates, dict) else {}


def _redacts(event: dict[str, Any]) -> str | None:
    if event.get("type") != "m.room.redaction":
        return None
    return event.get("redacts") or (event.get("content") or {}).get("redacts")  # room v11 moved it


class MatrixHarness(ConnectorHarness):
    connector_class = MatrixConnector
    can_restart = True

    def __init__(self, server: SynapseServer) -> None:
        super().__init__()
        self.server = server
        self.me: Peer | None = None
        self.other: Peer | None = None

    async def start(self) -> None:
        self.me = await Peer.create(self.server, "contractme", "Contract Me")
        self.other = await Peer.create(self.server, "contractbob", "Bob")
        self.conversation_id = await self.other.room_with(self.me, direct=True)

    async def aclose(self) -> None:
        for peer in (self.me, self.other):
            if peer is not None:
                await peer.close()

    @property
    def _me(self) -> Peer:
        assert self.me is not None
        return self.me

    @property
    def _other(self) -> Peer:
        assert self.other is not None
        return self.other

    async def _wait(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        return await self._other.wait_for(
            lambda room, event: room == self.conversation_id and predicate(event), timeout=WAIT_S
        )

    def _mine(self, event: dict[str, Any], event_type: str) -> bool:
        return event.get("type") == event_type and event.get("sender") == self._me.user_id

    def link_settings(self) -> Mapping[str, Any]:
        return {"homeserver": self.server.base_url}

    def link_answers(self) -> Mapping[str, str]:
        return {"user_id": self._me.user_id, "password": self._me.password}

    def bad_link_answers(self) -> Mapping[str, str]:
        return {"user_id": self._me.user_id, "password": "not-the-password"}

    async def peer_send(self, text: str) -> str | None:
        return str(await self._other.client.send_text(RoomID(self.conversation_id), text))

    async def peer_wait_message(self, text: str) -> str:
        event = await self._wait(
            lambda e: (
                self._mine(e, "m.room.message")
                and text in str(e["content"].get("body", ""))
                and _relation(e).get("rel_type") != "m.replace"
            )
        )
        return str(event["content"]["body"])

    async def peer_sees_edit(self, target_id: str, text: str) -> None:
        await self._wait(
            lambda e: (
                self._mine(e, "m.room.message")
                and _relation(e) == {"rel_type": "m.replace", "event_id": target_id}
                and e["content"].get("m.new_content", {}).get("body") == text
            )
        )

    async def peer_sees_delete(self, target_id: str) -> None:
        await self._wait(lambda e: e.get("sender") == self._me.user_id and _redacts(e) == target_id)

    async def peer_sees_reaction(self, target_id: str, emoji: str, action: ReactionAction) -> None:
        wanted = {"rel_type": "m.annotation", "event_id": target_id, "key": emoji}
        reaction = await self._wait(lambda e: self._mine(e, "m.reaction") and _relation(e) == wanted)
        if action == ReactionAction.REMOVE:  # removing a reaction redacts its event
            await self._wait(lambda e: _redacts(e) == reaction["event_id"])

    async def peer_sees_read(self, up_to_id: str) -> None:
        await self._wait(
            lambda e: (
                e.get("type") == "m.receipt"
                and self._me.user_id in (e["content"].get(up_to_id, {}).get("m.read") or {})
            )
        )

    async def peer_sees_typing(self, active: bool) -> None:
        other = self._other
        await self._wait(
            lambda e: e.get("type") == "m.typing" and (self._me.user_id in e["content"]["user_ids"]) is active
        )
        other.seen[:] = [(r, e) for r, e in other.seen if e.get("type") != "m.typing"]  # next wait: new ones

    async def stop_server(self) -> None:
        self.server.stop()

    async def start_server(self) -> None:
        self.server.start()  # in this thread: the server's death signal follows the spawning thread

    def sample_payloads(self) -> Sequence[RawPayload]:
        me, bob, room = "@me:localhost", "@bob:localhost", "!room:localhost"

        def event(kind: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
            body = {"type": kind, "event_id": "$e1", "sender": bob, "origin_server_ts": 1_700_000_000_000}
            return {"room_id": room, "event": {**body, "content": content, **extra}, "sender_name": "Bob"}

        html = {"msgtype": "m.text", "body": "*hi*", "format": "org.matrix.custom.html",
                "formatted_body": "<em>hi</em>"}  # fmt: skip
        return [
            event("m.room.message", {"msgtype": "m.text", "body": "hello"}),
            event("m.room.message", html),
            event(
                "m.room.message",
                {
                    "msgtype": "m.image",
                    "body": "a.png",
                    "url": "mxc://localhost/abc",
                    "info": {"mimetype": "image/png", "size": 10},
                },
            ),
            event(
                "m.room.message",
                {
                    "msgtype": "m.text",
                    "body": "* fixed",
                    "m.new_content": {"msgtype": "m.text", "body": "fixed"},
                    "m.relates_to": {"rel_type": "m.replace", "event_id": "$e0"},
                },
            ),
            event(
                "m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e0", "key": "👍"}}
            ),
            event("m.room.redaction", {}, redacts="$e0"),
            event("m.room.member", {"membership": "join"}, state_key=bob),
            {
                "room_id": room,
                "event": {"type": "m.typing", "content": {"user_ids": [bob]}},
                "typing_before": [],
            },
            {
                "room_id": room,
                "event": {"type": "m.receipt", "content": {"$e0": {"m.read": {bob: {"ts": 1}}}}},
            },
            event(
                "m.room.message",
                {"msgtype": "m.text", "body": "mine"},
                sender=me,
                unsigned={"transaction_id": "txn-1"},
            ),
        ]


@pytest.fixture
async def connector_harness(synapse: SynapseServer) -> AsyncIterator[MatrixHarness]:
    harness = MatrixHarness(synapse)
    await harness.start()
    yield harness
    await harness.aclose()


class TestContract(ConnectorContract):
    pass


class TestStateContract(StateContract):
    pass
