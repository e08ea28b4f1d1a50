"""The Signal connector passes the connector contract suite against the signal-cli-rest-api fake.

The shared conversation is a 1:1 chat with Bob, played by the fake's peer side. In json-rpc mode the REST
API drops what arrives while no websocket listens, so ``peer_send`` gives the connector's websocket a moment
to open first (the contract's "sent while not subscribed" messages are then dropped, as upstream does).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from msgr_bridge_signal import SignalConnector
from msgr_bridge_signal.convert import message_id, parse_message_id
from signal_fixtures import BOB, ME, sample_payloads

from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.contract import ConnectorContract
from msgr_bridge.testing.fakes.signal import SignalFake
from msgr_bridge.testing.harness import WAIT_S, ConnectorHarness
from msgr_bridge.testing.waiting import wait_until

LISTENER_WAIT_S = 3.0


class SignalHarness(ConnectorHarness):
    connector_class = SignalConnector
    can_restart = True

    def __init__(self, fake: SignalFake) -> None:
        super().__init__()
        self.fake = fake
        self.bob = fake.person(BOB)
        self.conversation_id = BOB

    def link_settings(self) -> Mapping[str, Any]:
        return {"base_url": self.fake.base_url, "link_existing_accounts": True}

    def link_answers(self) -> Mapping[str, str]:
        return {"number": ME}

    def bad_link_answers(self) -> Mapping[str, str]:
        return {"number": "not a number"}

    async def peer_send(self, text: str) -> str | None:
        with contextlib.suppress(TimeoutError):
            await wait_until(lambda: self.fake.listening(ME) > 0, timeout=LISTENER_WAIT_S)
        return message_id(self.fake.peer_message(self.bob, ME, text), BOB)

    async def _seen(self, match: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((s for s in self.fake.sent if s["account"] == ME and match(s)), None)

        await wait_until(lambda: found() is not None, timeout=WAIT_S)
        seen = found()
        assert seen is not None
        return seen

    async def peer_wait_message(self, text: str) -> str:
        seen = await self._seen(lambda s: s["kind"] == "message" and text in s["message"])
        assert seen["recipients"] == [BOB]
        return str(seen["message"])

    async def peer_sees_edit(self, target_id: str, text: str) -> None:
        stamp = parse_message_id(target_id)[0]
        await self._seen(lambda s: s["kind"] == "edit" and s["target"] == stamp and s["message"] == text)

    async def peer_sees_delete(self, target_id: str) -> None:
        stamp = parse_message_id(target_id)[0]
        await self._seen(lambda s: s["kind"] == "delete" and s["target"] == stamp)

    async def peer_sees_reaction(self, target_id: str, emoji: str, action: ReactionAction) -> None:
        stamp, author = parse_message_id(target_id)
        remove = action == ReactionAction.REMOVE
        await self._seen(
            lambda s: s["kind"] == "reaction" and s["target"] == stamp and s["target_author"] == author
            and s["emoji"] == emoji and s["remove"] == remove
        )  # fmt: skip

    async def peer_sees_read(self, up_to_id: str) -> None:
        stamp, author = parse_message_id(up_to_id)
        await self._seen(
            lambda s: s["kind"] == "receipt" and s["target"] == stamp and s["recipient"] == author
        )

    async def peer_sees_typing(self, active: bool) -> None:
        await self._seen(lambda s: s["kind"] == "typing" and s["active"] is active and s["recipient"] == BOB)
        self.fake.sent[:] = [s for s in self.fake.sent if s["kind"] != "typing"]

    async def stop_server(self) -> None:
        await self.fake.stop()

    async def start_server(self) -> None:
        await self.fake.start()

    def sample_payloads(self) -> Sequence[RawPayload]:
        return sample_payloads()


@pytest.fixture
async def connector_harness(fake: SignalFake) -> AsyncIterator[SignalHarness]:
    harness = SignalHarness(fake)
    await harness.start()
    yield harness
    await harness.aclose()


class TestContract(ConnectorContract):
    pass
