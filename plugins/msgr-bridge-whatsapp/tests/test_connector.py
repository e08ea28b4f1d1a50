"""The connector against neonize's Python surface: events go in through neonize's own dispatcher (the
ctypes callback whatsmeow calls), sends are recorded where neonize hands serialised protobufs to Go."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from msgr_bridge_whatsapp.session import decode
from msgr_bridge_whatsapp.testing import FakeWhatsmeow, message_event, receipt_event, typing_event
from neonize.proto import Neonize_pb2 as N
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ProtocolMessage, ReactionMessage

from conftest import BOB, GROUP, ME, build
from msgr_bridge.errors import AuthenticationFailed, TransientError, VaultUnavailable
from msgr_bridge.schema import OutboundMessage, Reaction, ReactionAction, ReadReceipt, Typing
from msgr_bridge.testing.fakes import MemoryStateStore
from msgr_bridge.testing.harness import Live


async def test_a_message_in_reaches_the_sink_once_and_converts(fake: FakeWhatsmeow) -> None:
    async with Live(build()) as live:
        fake.emit(message_event(BOB, BOB, WAMessage(conversation="hello"), id="M1", name="Bob"))
        message = await live.wait_text("hello")
        await asyncio.sleep(0.05)
        assert len(live.sink.payloads) == 1
    assert message.remote_id == "M1" and message.conversation_id == BOB
    assert (
        message.sender.user_id == BOB and message.sender.display_name == "Bob" and not message.sender.is_self
    )


async def test_sends_reach_neonize_as_the_right_protobufs(fake: FakeWhatsmeow) -> None:
    async with Live(build()) as live:
        c = live.connector
        fake.emit(message_event(GROUP, BOB, WAMessage(conversation="question"), id="Q1"))
        await live.wait_text("question")
        sent = await c.send_message(GROUP, OutboundMessage(txn_id="t1", text="plain"))
        reply = await c.send_message(GROUP, OutboundMessage(txn_id="t2", text="answer", reply_to="Q1"))
        await c.edit(GROUP, sent.remote_id, OutboundMessage(txn_id="t3", text="plain, edited"))
        await c.delete(GROUP, reply.remote_id)
        await c.react(GROUP, "Q1", "👍", ReactionAction.ADD)
        await c.react(GROUP, "Q1", "👍", ReactionAction.REMOVE)
        await c.mark_read(GROUP, "Q1")
        await c.set_typing(GROUP, True)
    messages = [s.message for s in fake.sent_to(GROUP)]
    assert sent.remote_id == fake.sent[0].id and messages[0] == WAMessage(conversation="plain")
    quoted = messages[1].extendedTextMessage
    assert (
        quoted.text == "answer"
        and quoted.contextInfo.stanzaID == "Q1"
        and quoted.contextInfo.participant == BOB
    )
    edit = messages[2].editedMessage.message.protocolMessage
    assert edit.type == ProtocolMessage.MESSAGE_EDIT and sent.remote_id == edit.key.ID and edit.key.fromMe
    assert edit.editedMessage.conversation == "plain, edited"
    revoke = messages[3].protocolMessage
    assert revoke.type == ProtocolMessage.REVOKE and reply.remote_id == revoke.key.ID
    added, removed = messages[4].reactionMessage, messages[5].reactionMessage
    assert added.text == "👍" and added.key == MessageKey(
        remoteJID=GROUP, fromMe=False, ID="Q1", participant=BOB
    )
    assert removed.text == "" and removed.key.ID == "Q1"
    assert ("MarkRead", (["Q1"], GROUP, BOB, b"read")) in fake.calls
    assert ("SendChatPresence", (GROUP, 0)) in fake.calls


async def test_the_echo_of_our_own_send_carries_its_transaction_id(fake: FakeWhatsmeow) -> None:
    async with Live(build()) as live:
        sent = await live.connector.send_message(BOB, OutboundMessage(txn_id="txn-42", text="mine"))
        fake.emit(message_event(BOB, ME, WAMessage(conversation="mine"), id=sent.remote_id, from_me=True))
        echo = await live.wait_text("mine")
    assert echo.sender.is_self and echo.txn_id == "txn-42" and echo.remote_id == sent.remote_id


async def test_receipts_and_typing_convert(fake: FakeWhatsmeow) -> None:
    async with Live(build()) as live:
        fake.emit(receipt_event(BOB, BOB, ["A", "B"]))
        fake.emit(typing_event(BOB, BOB, active=True))
        receipt = await live.wait_event(lambda e: isinstance(e, ReadReceipt))
        typing = await live.wait_event(lambda e: isinstance(e, Typing))
    assert isinstance(receipt, ReadReceipt) and receipt.up_to_id == "B" and receipt.reader.user_id == BOB
    assert isinstance(typing, Typing) and typing.active


async def test_logged_out_turns_the_account_bad_credentials_and_forgets_the_session(
    fake: FakeWhatsmeow,
) -> None:
    connector = build()
    live = await Live(connector).start()
    fake.emit(N.LoggedOut(OnConnect=False, Reason=N.LOGGED_OUT))
    assert live.task is not None
    with pytest.raises(AuthenticationFailed, match="logged this device out"):
        await asyncio.wait_for(live.task, 10)
    live.task = None
    await live.stop()
    assert await connector.ctx.secrets.get_optional("session") is None


async def test_an_unpaired_session_at_login_is_bad_credentials(fake: FakeWhatsmeow) -> None:
    async def qr(go: FakeWhatsmeow, uuid: bytes) -> None:
        go.emit_qr("2@qr,abc", uuid)

    fake.on_connect = qr
    connector = build()
    with pytest.raises(AuthenticationFailed):
        await connector.connect()
    assert connector.session is None and connector.wa is None


async def test_the_session_database_leaves_no_plaintext_file_and_is_saved_when_it_changed(
    fake: FakeWhatsmeow,
) -> None:
    connector = build()
    before = await connector.ctx.secrets.get("session")
    await connector.connect()
    assert connector.session is not None
    directory = connector.session.directory
    assert oct(directory.stat().st_mode & 0o777) == "0o700" and connector.session.path.exists()
    with sqlite3.connect(connector.session.path) as db:  # what whatsmeow does as it runs: new keys
        db.execute("CREATE TABLE whatsmeow_pre_keys (key_id INTEGER)")
        db.execute("INSERT INTO whatsmeow_pre_keys VALUES (7)")
    db.close()
    await connector.disconnect()
    assert not directory.exists()
    after = await connector.ctx.secrets.get("session")
    assert after != before
    restored = sqlite3.connect(":memory:")
    restored.deserialize(decode(after))
    assert restored.execute("SELECT key_id FROM whatsmeow_pre_keys").fetchall() == [(7,)]
    restored.close()


async def test_a_new_reaction_replaces_the_persons_earlier_one_and_an_empty_one_removes_it(
    fake: FakeWhatsmeow,
) -> None:
    def react(emoji: str, message_id: str) -> N.Message:
        key = MessageKey(remoteJID=BOB, fromMe=True, ID="MINE")
        reaction = WAMessage(reactionMessage=ReactionMessage(key=key, text=emoji, senderTimestampMS=1))
        return message_event(BOB, BOB, reaction, id=message_id)

    async with Live(build()) as live:
        for emoji, message_id in (("🎉", "R1"), ("👍", "R2"), ("", "R3")):
            fake.emit(react(emoji, message_id))
        await live.sink.wait_for(lambda p: p["event"]["Info"]["ID"] == "R3")
        seen = [(e.action.value, e.emoji) for e in live.events() if isinstance(e, Reaction)]
    assert seen == [("add", "🎉"), ("remove", "🎉"), ("add", "👍"), ("remove", "👍")]


async def test_a_connection_that_cannot_dial_fails_the_login_at_once(fake: FakeWhatsmeow) -> None:
    fake.dial_error = "failed to dial whatsapp web websocket: lookup web.whatsapp.com: no such host"
    connector = build({"connect_timeout_s": 60})
    started = asyncio.get_running_loop().time()
    with pytest.raises(TransientError, match="no such host"):
        await connector.connect()
    assert asyncio.get_running_loop().time() - started < 10  # not the 60 s login timeout
    assert connector.wa is None and connector.session is None


async def test_a_reaction_removed_after_a_restart_removes_the_right_emoji(fake: FakeWhatsmeow) -> None:
    def react(emoji: str, message_id: str) -> N.Message:
        key = MessageKey(remoteJID=BOB, fromMe=True, ID="MINE")
        reaction = WAMessage(reactionMessage=ReactionMessage(key=key, text=emoji, senderTimestampMS=1))
        return message_event(BOB, BOB, reaction, id=message_id)

    state = MemoryStateStore()
    async with Live(build(state=state)) as live:
        fake.emit(react("🎉", "R1"))
        await live.sink.wait_for(lambda p: p["event"]["Info"]["ID"] == "R1")
    async with Live(build(state=state)) as live:  # the bridge restarted
        fake.emit(react("", "R2"))
        await live.sink.wait_for(lambda p: p["event"]["Info"]["ID"] == "R2")
        seen = [(e.action.value, e.emoji) for e in live.events() if isinstance(e, Reaction)]
    assert seen == [("remove", "🎉")]


async def test_a_credential_layer_outage_at_disconnect_still_wipes_the_plaintext_copy(
    fake: FakeWhatsmeow,
) -> None:
    connector = build()
    await connector.connect()
    assert connector.session is not None
    directory = connector.session.directory

    async def down(key: str) -> str | None:
        raise VaultUnavailable("Vault is sealed")

    connector.ctx.secrets.get_optional = down  # type: ignore[method-assign]
    await connector.disconnect()
    assert not directory.exists() and connector.wa is None
