"""Only a message's author may retract (XEP-0424) or correct (XEP-0308) it; other attempts are logged and
dropped, before they become Delete or Edit.

Against a real Prosody, with bob and alice in the room. Prosody 0.12's rooms give occupant-ids
(XEP-0421) and advertise it; the room tests also run on a server of their own where that is switched off
(``muc_occupant_id = false``), where occupant JIDs are compared instead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from unittest.mock import ANY
from xml.etree import ElementTree

import pytest
from msgr_bridge_xmpp.authorship import EVENTS, unverified
from msgr_bridge_xmpp.memory import MessageMemory
from slixmpp import JID
from structlog.testing import capture_logs
from xmpp_peer import Peer, Running, make_connector

from msgr_bridge import Delete, Edit, Message, OutboundMessage
from msgr_bridge.schema import MembershipAction, MembershipChange
from msgr_bridge.sdk.message_ids import MemoryMessageIds, MessageRef
from msgr_bridge.testing.fakes import MemoryStateStore
from msgr_bridge.testing.prosody import ProsodyServer, start_prosody

NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
GIVES, WITHOUT = "room gives occupant-ids", "room without occupant-ids"


@pytest.fixture(scope="module")
def no_occupant_ids() -> Iterator[ProsodyServer]:
    """A server of its own whose rooms give no occupant-ids (the session's server stays untouched)."""
    server = start_prosody()
    config = server.config_path.read_text()
    anchor = f'Component "{server.muc_host}" "muc"\n'
    assert anchor in config, "the Prosody fixture's MUC component changed: update this fixture"
    server.config_path.write_text(config.replace(anchor, f"{anchor}  muc_occupant_id = false\n", 1))
    server.restart()
    yield server
    server.cleanup()


@dataclass
class Party:
    server: ProsodyServer
    room: str
    me_user: str
    bob: Peer
    alice: Peer
    state: MemoryStateStore
    gives_occupant_ids: bool

    def connector(self, cursor: str | None = None) -> Running:
        running = Running(
            *make_connector(
                self.server, self.server.jid(self.me_user), "mepw", rooms=[self.room], state=self.state
            )
        )
        running.cursor = cursor
        return running


@pytest.fixture(params=[GIVES, WITHOUT])
async def party(request: pytest.FixtureRequest, prosody: ProsodyServer) -> AsyncIterator[Party]:
    server = prosody if request.param == GIVES else request.getfixturevalue("no_occupant_ids")
    n = uuid.uuid4().hex[:8]
    for user, password in ((f"me{n}", "mepw"), (f"bob{n}", "bobpw"), (f"alice{n}", "alicepw")):
        server.register(user, password)
    bob = await Peer(server, f"bob{n}", "bobpw").start()
    room = await bob.create_room(f"authors-{n}")  # bob's nick there is "bob"
    alice = await join(await Peer(server, f"alice{n}", "alicepw").start(), room, "alice")
    yield Party(server, room, f"me{n}", bob, alice, MemoryStateStore(), request.param == GIVES)
    await alice.stop()
    await bob.stop()


async def join(peer: Peer, room: str, nick: str) -> Peer:
    await peer.client.plugin["xep_0045"].join_muc_wait(JID(room), nick, maxstanzas=0, timeout=10)
    return peer


def forge(msg: Any, occupant_id: str | None) -> Any:
    """Write an occupant-id into a stanza as its sender (a room that gives them replaces it)."""
    if occupant_id:
        msg.xml.append(ElementTree.fromstring(f'<occupant-id xmlns="{NS_OCCUPANT_ID}" id="{occupant_id}"/>'))
    return msg


def retract(
    peer: Peer, to: str, target: str, mtype: str = "groupchat", occupant_id: str | None = None
) -> None:
    msg = peer.client.make_message(mto=JID(to), mtype=mtype, mbody="retracted")
    msg["retract"]["id"] = target
    forge(msg, occupant_id).send()


def correct(
    peer: Peer, to: str, target: str, text: str, mtype: str = "groupchat", occupant_id: str | None = None
) -> None:
    forge(
        peer.client.plugin["xep_0308"].build_correction(target, JID(to), mtype=mtype, mbody=text), occupant_id
    ).send()


async def said(
    party: Party, me: Running, who: Peer | None, text: str, occupant_id: str | None = None
) -> tuple[str, str]:
    """``who`` (None: the bridge) says ``text`` in the room; (its id, the room's stanza-id) once the bridge
    has it."""
    if who is None:
        msg_id = f"txn-{uuid.uuid4().hex}"
        await me.connector.send_message(party.room, OutboundMessage(txn_id=msg_id, text=text))
    else:
        msg = who.client.make_message(mto=JID(party.room), mtype="groupchat", mbody=text)
        forge(msg, occupant_id).send()
        msg_id = str(msg["id"])
    stanza_id = (await party.bob.wait_for(lambda m: m["body"] == text))["stanza_id"]["id"]
    assert stanza_id and stanza_id != msg_id
    await me.wait_event(lambda e: isinstance(e, Message) and e.remote_id == msg_id)
    return msg_id, stanza_id


def events(me: Running, kind: type) -> list[Any]:
    """Events of ``kind`` from every snapshot's history and from the live stream, in order."""
    account = me.connector.ctx.account
    payloads = [p for s in me.snapshots for p in s.history] + me.sink.payloads
    return [e for p in payloads for e in me.connector.convert(p, account) if isinstance(e, kind)]


def ignored(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    found = [e for e in logs if e["event"] in EVENTS.values()]
    assert all(e["log_level"] == "warning" and e["reason"] for e in found)
    return [(e["event"], e["target"]) for e in found]


RETRACTION, CORRECTION = EVENTS["retract"], EVENTS["replace"]


async def test_only_the_author_retracts_or_corrects_in_a_room(party: Party) -> None:
    room, bob, alice = party.room, party.bob, party.alice
    with capture_logs() as logs:
        me = await party.connector().start()
        try:
            # alice's own client writes an occupant-id; only a room that gives them replaces it
            alices, alices_sid = await said(party, me, alice, "alice's words", occupant_id="made-up")
            ours, ours_sid = await said(party, me, None, "our words")
            bobs, bobs_sid = await said(party, me, bob, "bob's words")
            retract(bob, room, alices_sid, occupant_id="made-up")  # claiming to be alice
            correct(bob, room, alices, "alice agrees with bob", occupant_id="made-up")
            retract(bob, room, ours_sid)
            correct(bob, room, ours, "we agree with bob")
            # bob reuses alice's message id: the id stays alice's, his copy is not remembered
            bob.send(room, "bob's copy under alice's id", mtype="groupchat", msg_id=alices)
            copy_sid = (await bob.wait_for(lambda m: m["body"] == "bob's copy under alice's id"))[
                "stanza_id"
            ]["id"]
            retract(bob, room, copy_sid)
            correct(bob, room, bobs, "bob's words, fixed")
            retract(bob, room, bobs_sid)
            await me.wait_event(lambda e: isinstance(e, Delete))
        finally:
            await me.stop()
    edits, deletes = events(me, Edit), events(me, Delete)
    assert [(e.target_id, e.text, e.sender.user_id) for e in edits] == [
        (bobs, "bob's words, fixed", f"{room}/bob")
    ]
    assert [(d.target_id, d.sender.user_id) for d in deletes] == [(bobs, f"{room}/bob")]
    assert ignored(logs) == [
        (RETRACTION, alices),
        (CORRECTION, alices),
        (RETRACTION, ours),
        (CORRECTION, ours),
        (RETRACTION, copy_sid),
    ]
    # the connector kept occupant-ids only from the room that gives them
    occupant_ids = {p["body"]: p.get("occupant_id") for p in me.sink.payloads if p.get("body")}
    if party.gives_occupant_ids:
        assert occupant_ids["alice's words"] not in (None, "made-up")
        assert occupant_ids["bob's words"] not in (None, occupant_ids["alice's words"])
    else:
        assert occupant_ids["alice's words"] is None and occupant_ids["bob's words"] is None


async def test_our_other_clients_may_retract_and_correct_our_room_messages(party: Party) -> None:
    room = party.room
    with capture_logs() as logs:
        me = await party.connector().start()
        phone = laptop = None
        try:
            nick = party.me_user  # the connector's nick: the account's local part
            fixed, _ = await said(party, me, None, "ours, to fix")
            gone, gone_sid = await said(party, me, None, "ours, to retract")
            elsewhere, _ = await said(party, me, None, "ours, to fix elsewhere")
            phone = await join(await Peer(party.server, party.me_user, "mepw", "phone").start(), room, nick)
            laptop = await join(
                await Peer(party.server, party.me_user, "mepw", "laptop").start(), room, "laptop"
            )
            correct(phone, room, fixed, "ours, fixed on the phone")  # same account, same nick: same occupant
            retract(phone, room, gone_sid)
            await me.wait_event(lambda e: isinstance(e, Delete))
            # same account under another nick: the same person only by its occupant-id
            correct(laptop, room, elsewhere, "ours, fixed on the laptop")
            await said(party, me, laptop, "after the laptop's correction")  # its stanzas come in order
        finally:
            await me.stop()
            for peer in (phone, laptop):
                if peer is not None:
                    await peer.stop()
    edits = [(e.target_id, e.text, e.sender.user_id) for e in events(me, Edit)]
    expected = [(fixed, "ours, fixed on the phone", f"{room}/{nick}")]
    if party.gives_occupant_ids:
        expected.append((elsewhere, "ours, fixed on the laptop", f"{room}/laptop"))
    assert edits == expected
    assert [(d.target_id, d.sender.is_self) for d in events(me, Delete)] == [(gone, True)]
    assert ignored(logs) == ([] if party.gives_occupant_ids else [(CORRECTION, elsewhere)])


async def test_private_messages_in_a_room_are_retracted_by_their_side_only(party: Party) -> None:
    room, bob = party.room, party.bob
    with capture_logs() as logs:
        me = await party.connector().start()
        try:
            peer = f"{room}/bob"  # the conversation: bob's occupant JID
            theirs = bob.send(f"{room}/{party.me_user}", "psst")
            await me.wait_event(lambda e: isinstance(e, Message) and e.remote_id == theirs)
            ours = OutboundMessage(txn_id=f"txn-{uuid.uuid4().hex}", text="psst back")
            await me.connector.send_message(peer, ours)
            await bob.wait_for(lambda m: m["body"] == ours.text)
            retract(bob, f"{room}/{party.me_user}", ours.txn_id, mtype="chat")
            retract(bob, f"{room}/{party.me_user}", theirs, mtype="chat")
            await me.wait_event(lambda e: isinstance(e, Delete))
        finally:
            await me.stop()
    assert [(d.conversation_id, d.target_id, d.sender.user_id) for d in events(me, Delete)] == [
        (peer, theirs, peer)
    ]
    assert ignored(logs) == [(RETRACTION, ours.txn_id)]


async def test_in_a_private_room_chat_our_side_is_us_from_any_client() -> None:
    """Our private message is remembered under our occupant JID, but our other client's retraction of it
    reaches us as a carbon from our own full JID: in a two-party chat, the sides are compared."""
    room, own = "room@conf.example.org", "me@example.org"
    peer = f"{room}/bob"
    recent = MessageMemory(MemoryStateStore())
    await recent.remember(peer, "ours", f"{room}/me")  # as send_message remembers it
    await recent.remember(peer, "theirs", peer)
    base = {"v": 1, "type": "chat", "private": True}
    phone = {**base, "from": f"{own}/phone", "to": peer, "self": True}
    bob = {**base, "from": peer, "to": f"{own}/msgr-bridge", "self": False}
    assert await unverified({**phone, "retract": "ours"}, recent, own) is None
    assert await unverified({**phone, "retract": "theirs"}, recent, own) == (RETRACTION, "theirs", ANY)
    assert await unverified({**bob, "replace": "theirs"}, recent, own) is None
    assert await unverified({**bob, "replace": "ours"}, recent, own) == (CORRECTION, "ours", ANY)
    assert await unverified({**bob, "retract": "older-than-remembered"}, recent, own) is None


async def test_the_author_check_survives_a_restart_and_covers_the_catch_up(party: Party) -> None:
    room, bob, alice = party.room, party.bob, party.alice
    before = await party.connector().start()
    alices, alices_sid = await said(party, before, alice, "alice, before the restart")
    bobs_1, bobs_1_sid = await said(party, before, bob, "bob's first, before the restart")
    bobs_2, bobs_2_sid = await said(party, before, bob, "bob's second, before the restart")
    bobs_3, _ = await said(party, before, bob, "bob's third, before the restart")
    # a sync now puts the room's last archive id in the cursor: the catch-up brings only what follows
    before.cursor = (await before.connector.sync_state(before.cursor)).cursor
    await before.stop()  # writes what it remembered to the state store

    # while the bridge is away (archived by the room, fetched by the next sync)
    retract(bob, room, alices_sid)
    retract(bob, room, bobs_1_sid)
    await bob.wait_for(lambda m: m["retract"]["id"] == bobs_1_sid)  # reflected: archived

    with capture_logs() as logs:
        after = await party.connector(cursor=before.cursor).start()  # a new connector, the same store
        try:
            assert after.connector is not before.connector
            assert [d.target_id for d in events(after, Delete)] == [bobs_1]  # from the catch-up
            correct(bob, room, alices, "alice agrees with bob")
            retract(bob, room, "never-seen-stanza-id")
            retract(bob, room, bobs_2_sid)
            await after.wait_event(lambda e: isinstance(e, Delete) and e.target_id == bobs_2)
            # bob takes another nick: still bob by his occupant-id, someone else by occupant JID
            bob.client.send_presence(pto=JID(f"{room}/bobby"))
            await after.wait_event(
                lambda e: isinstance(e, MembershipChange) and e.action == MembershipAction.RENAME
            )
            correct(bob, room, bobs_3, "bob's third, fixed as bobby")
            await said(party, after, bob, "after bobby's correction")
        finally:
            await after.stop()
    assert [d.target_id for d in events(after, Delete)] == [bobs_1, bobs_2]
    edits = [(e.target_id, e.sender.user_id) for e in events(after, Edit)]
    expected = [(RETRACTION, alices), (CORRECTION, alices), (RETRACTION, "never-seen-stanza-id")]
    if party.gives_occupant_ids:
        assert edits == [(bobs_3, f"{room}/bobby")]
    else:
        assert edits == []
        expected.append((CORRECTION, bobs_3))
    assert ignored(logs) == expected
    reasons = [(e["target"], e["reason"]) for e in logs if e["event"] in EVENTS.values()]
    assert all("not the author" in reason for target, reason in reasons if target != "never-seen-stanza-id")
    assert "not known" in dict(reasons)["never-seen-stanza-id"]


async def test_in_a_chat_the_peer_and_our_other_clients_retract_their_own(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], me: Running, bob: Peer
) -> None:
    own = me.connector.own_jid
    phone = await Peer(prosody, JID(own).user, users["me"][1], "phone").start()
    try:
        with capture_logs() as logs:
            theirs = bob.send(own, "bob's, to retract")
            await me.wait_event(lambda e: isinstance(e, Message) and e.remote_id == theirs)
            ours = OutboundMessage(txn_id=f"txn-{uuid.uuid4().hex}", text="ours, to retract")
            await me.connector.send_message(bob.jid, ours)
            await bob.wait_for(lambda m: m["body"] == ours.text)
            retract(bob, own, ours.txn_id, mtype="chat")  # not bob's
            correct(bob, own, ours.txn_id, "bob rewrites ours", mtype="chat")
            retract(bob, own, theirs, mtype="chat")
            retract(bob, own, "older-than-remembered", mtype="chat")  # unknown: the peer is trusted
            done = bob.send(
                own, "bob is done"
            )  # bob's stanzas arrive in order; the phone's are another stream
            await me.wait_event(lambda e: isinstance(e, Message) and e.remote_id == done)
            correct(phone, bob.jid, theirs, "we rewrite bob's", mtype="chat")  # a carbon of our other client
            retract(phone, bob.jid, ours.txn_id, mtype="chat")
            await me.wait_event(lambda e: isinstance(e, Delete) and e.target_id == ours.txn_id)
    finally:
        await phone.stop()
    deletes = [(d.target_id, d.sender.user_id, d.sender.is_self) for d in events(me, Delete)]
    assert deletes == [
        (theirs, bob.jid, False),
        ("older-than-remembered", bob.jid, False),
        (ours.txn_id, own, True),
    ]
    assert not events(me, Edit)
    assert ignored(logs) == [(RETRACTION, ours.txn_id), (CORRECTION, ours.txn_id), (CORRECTION, theirs)]


async def test_an_original_older_than_the_map_is_judged_by_the_core_store() -> None:
    """A message that fell out of the bounded map is still in the core's store (``ctx.messages``): its
    stored sender is the author, so our other client cannot rewrite bob's old message in a chat, and in
    a room bob may retract his own old message while someone else may not. Our own sends are left out
    (their stored sender is not our occupant JID): as before, unknown."""
    room, own, bob_jid = "room@conf.example.org", "me@example.org", "bob@example.org"
    stored = MemoryMessageIds(
        [
            MessageRef(1, bob_jid, "old-chat", sender_id=bob_jid),
            MessageRef(2, room, "old-room", sender_id=f"{room}/bob"),
            MessageRef(3, bob_jid, "old-ours", sender_id="someone", txn_id="old-ours"),
        ]
    )
    memory = MessageMemory(MemoryStateStore(), stored, limit=1)
    phone = {"v": 1, "type": "chat", "from": f"{own}/phone", "to": bob_jid, "self": True}
    bob = {"v": 1, "type": "chat", "from": f"{bob_jid}/pc", "to": own, "self": False}
    assert await unverified({**phone, "replace": "old-chat"}, memory, own) == (CORRECTION, "old-chat", ANY)
    assert await unverified({**bob, "retract": "old-chat"}, memory, own) is None
    assert await unverified({**phone, "retract": "old-ours"}, memory, own) is None  # unknown: a chat
    in_room = {"v": 1, "type": "groupchat", "self": False}
    by_bob = {**in_room, "from": f"{room}/bob", "retract": "old-room"}
    by_eve = {**in_room, "from": f"{room}/eve", "retract": "old-room"}
    assert await unverified(by_bob, memory, own) is None
    assert await unverified(by_eve, memory, own) == (RETRACTION, "old-room", ANY)
    assert await memory.outbound(bob_jid, "old-chat", groupchat=False) == ("old-chat", bob_jid)
