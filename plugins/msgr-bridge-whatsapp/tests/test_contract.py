"""The WhatsApp connector passes the connector contract suite at neonize's Python surface.

The other person is WhatsApp's side of ``FakeWhatsmeow``: what they send is a real neonize event protobuf
handed to neonize's dispatcher; what they observe is what neonize handed to Go (serialised protobufs,
parsed back). Linking is the QR flow with a phone that accepts (or refuses) the pairing."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from msgr_bridge_whatsapp import WhatsAppConnector
from msgr_bridge_whatsapp.inbound import as_dict
from msgr_bridge_whatsapp.outgoing import edit_message, reaction_message, revoke_message
from msgr_bridge_whatsapp.testing import (
    FakeWhatsmeow,
    message_event,
    paired_device,
    receipt_event,
    typing_event,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, ExtendedTextMessage, ImageMessage
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage

from conftest import BOB, FAST, ME
from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.contract import ConnectorContract
from msgr_bridge.testing.contract_state import StateContract
from msgr_bridge.testing.harness import WAIT_S, ConnectorHarness
from msgr_bridge.testing.waiting import wait_until


class WhatsAppHarness(ConnectorHarness):
    connector_class = WhatsAppConnector

    def __init__(self, fake: FakeWhatsmeow) -> None:
        super().__init__()
        self.fake = fake
        self.conversation_id = BOB
        self.ids = itertools.count(1)

    def link_settings(self) -> Mapping[str, Any]:
        return FAST

    def _phone(self, answer: tuple[str, str]) -> None:
        """The person acts on the phone: on the QR code shown now, and on any shown later."""
        self.fake.phone = answer
        waiting = [
            u for u, c in self.fake.clients.items() if not c.stopped.is_set() and not paired_device(c.name)
        ]
        for uuid in waiting:
            self.fake.answer_qr(uuid)

    def link_answers(self) -> Mapping[str, str]:
        self._phone(("accept", ME))
        return {}

    def bad_link_answers(self) -> Mapping[str, str]:
        self._phone(("refuse", "the phone declined"))
        return {}

    def _sent(self) -> list[WAMessage]:
        return [s.message for s in self.fake.sent_to(BOB)]

    async def peer_send(self, text: str) -> str | None:
        message_id = f"PEER{next(self.ids)}"
        self.fake.emit(message_event(BOB, BOB, WAMessage(conversation=text), id=message_id, name="Bob"))
        return message_id

    async def peer_wait_message(self, text: str) -> str:
        def found() -> list[str]:
            return [m.conversation for m in self._sent() if text in m.conversation]

        await wait_until(lambda: bool(found()), timeout=WAIT_S)
        return found()[0]

    async def peer_sees_edit(self, target_id: str, text: str) -> None:
        def seen() -> bool:
            edits = [m.editedMessage.message.protocolMessage for m in self._sent()]
            return any(target_id == e.key.ID and e.editedMessage.conversation == text for e in edits)

        await wait_until(seen, timeout=WAIT_S)

    async def peer_sees_delete(self, target_id: str) -> None:
        await wait_until(
            lambda: any(target_id == m.protocolMessage.key.ID for m in self._sent()), timeout=WAIT_S
        )

    async def peer_sees_reaction(self, target_id: str, emoji: str, action: ReactionAction) -> None:
        want = emoji if action == ReactionAction.ADD else ""

        def seen() -> bool:
            reactions = [m.reactionMessage for m in self._sent() if m.HasField("reactionMessage")]
            return any(target_id == r.key.ID and r.text == want for r in reactions)

        await wait_until(seen, timeout=WAIT_S)

    async def peer_sees_read(self, up_to_id: str) -> None:
        await wait_until(
            lambda: ("MarkRead", ([up_to_id], BOB, BOB, b"read")) in self.fake.calls, timeout=WAIT_S
        )

    async def peer_sees_typing(self, active: bool) -> None:
        state = 0 if active else 1  # neonize's ChatPresence enum: COMPOSING, PAUSED
        await wait_until(lambda: ("SendChatPresence", (BOB, state)) in self.fake.calls, timeout=WAIT_S)

    def sample_payloads(self) -> Sequence[RawPayload]:
        reply = ExtendedTextMessage(text="re", contextInfo=ContextInfo(stanzaID="A", mentionedJID=[ME]))
        events = [
            ("message", message_event(BOB, BOB, WAMessage(conversation="hello"), id="A", name="Bob")),
            ("message", message_event(BOB, BOB, WAMessage(extendedTextMessage=reply), id="B")),
            ("message", message_event(BOB, BOB, WAMessage(imageMessage=ImageMessage(caption="c")), id="C")),
            ("message", message_event(BOB, ME, edit_message(BOB, "A", "hello!"), id="D", from_me=True)),
            ("message", message_event(BOB, BOB, revoke_message(BOB, "A"), id="E")),
            (
                "message",
                message_event(BOB, BOB, reaction_message(BOB, "A", "👍", from_me=True, sender=None), id="F"),
            ),
            ("receipt", receipt_event(BOB, BOB, ["A"])),
            ("presence", typing_event(BOB, BOB, active=True)),
        ]
        return [{"v": 1, "kind": kind, "self": ME, "event": as_dict(event)} for kind, event in events]


@pytest.fixture
async def connector_harness(fake: FakeWhatsmeow) -> AsyncIterator[WhatsAppHarness]:
    harness = WhatsAppHarness(fake)
    await harness.start()
    yield harness
    await harness.aclose()


class TestContract(ConnectorContract):
    pass


class TestStateContract(StateContract):
    pass
