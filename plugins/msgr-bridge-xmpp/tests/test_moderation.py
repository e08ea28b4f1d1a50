"""Moderator retractions (XEP-0425) announced by a room become Delete events; forgeries and junk do not.

Prosody 0.12 has no mod_muc_moderation (it is in prosody-modules, which the fixture does not load), so a
real moderation cannot be requested. Instead the room itself is made to broadcast the announcement that
module sends (``room_says``, through the running server's admin shell): the stanza reaches the bridge
from the room's bare JID, archived and with the room's stanza-id, exactly as a real one would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from structlog.testing import capture_logs
from xmpp_peer import Peer, Running, enable_admin_shell, make_connector, room_says

from msgr_bridge import Delete, Message
from msgr_bridge.testing.prosody import ProsodyServer, start_prosody

NS = {
    "fasten": "urn:xmpp:fasten:0",
    "mod0": "urn:xmpp:message-moderate:0",
    "mod1": "urn:xmpp:message-moderate:1",
    "ret0": "urn:xmpp:message-retract:0",
    "ret1": "urn:xmpp:message-retract:1",
}


def v1(stanza_id: str | None, by: str | None = None, reason: str = "spam") -> str:
    """Version 0.3 of the XEP: a XEP-0424 retraction carrying ``<moderated>``."""
    id_attr = f' id="{stanza_id}"' if stanza_id is not None else ""
    by_attr = f' by="{by}"' if by else ""
    return (
        f'<retract xmlns="{NS["ret1"]}"{id_attr}><moderated xmlns="{NS["mod1"]}"{by_attr}/>'
        f"<reason>{reason}</reason></retract>"
    )


def v0(stanza_id: str, by: str, retract: bool = True) -> str:
    """Version 0.2 of the XEP: fastening."""
    inner = f'<retract xmlns="{NS["ret0"]}"/>' if retract else ""
    return (
        f'<apply-to xmlns="{NS["fasten"]}" id="{stanza_id}"><moderated xmlns="{NS["mod0"]}" by="{by}">'
        f"{inner}<reason>spam</reason></moderated></apply-to>"
    )


def announcement(*parts: str) -> str:
    return f'<message type="groupchat" id="mod-{uuid.uuid4().hex[:8]}">{"".join(parts)}</message>'


@pytest.fixture(scope="module")
def admin_prosody() -> Iterator[ProsodyServer]:
    """A server of its own, with the admin shell on (the session's server stays untouched)."""
    server = start_prosody()
    enable_admin_shell(server)
    yield server
    server.cleanup()


@pytest.fixture
async def room_bob(admin_prosody: ProsodyServer) -> AsyncIterator[tuple[str, str, Peer]]:
    """(room, my JID, bob in the room as its owner); my account is registered, not yet connected."""
    n = uuid.uuid4().hex[:8]
    me_jid = admin_prosody.register(f"me{n}", "mepw")
    admin_prosody.register(f"bob{n}", "bobpw")
    bob = await Peer(admin_prosody, f"bob{n}", "bobpw").start()
    room = await bob.create_room(f"mod-{n}")
    yield room, me_jid, bob
    await bob.stop()


async def joined(server: ProsodyServer, me_jid: str, room: str) -> Running:
    return await Running(*make_connector(server, me_jid, "mepw", rooms=[room])).start()


async def seen(me: Running, bob: Peer, room: str, text: str) -> tuple[str, str]:
    """bob says ``text`` in the room; (its id, the room's stanza-id) once the bridge has it."""
    theirs = bob.send(room, text, mtype="groupchat")
    stanza_id = (await bob.wait_for(lambda m: m["body"] == text))["stanza_id"]["id"]
    assert stanza_id and stanza_id != theirs
    await me.wait_event(lambda e: isinstance(e, Message) and e.remote_id == theirs)
    return theirs, stanza_id


@pytest.mark.parametrize("version", ["as mod_muc_moderation sends it", "0.3 without by", "0.2 only"])
async def test_a_moderation_by_the_room_deletes_the_message(
    admin_prosody: ProsodyServer, room_bob: tuple[str, str, Peer], version: str
) -> None:
    room, me_jid, bob = room_bob
    me = await joined(admin_prosody, me_jid, room)
    try:
        theirs, stanza_id = await seen(me, bob, room, "buy cheap stuff")
        by = f"{room}/bob"
        parts = {
            "as mod_muc_moderation sends it": (v0(stanza_id, by), v1(stanza_id)),
            "0.3 without by": (v1(stanza_id),),
            "0.2 only": (v0(stanza_id, by),),
        }[version]
        await room_says(admin_prosody, room, announcement(*parts))
        event = await me.wait_event(lambda e: isinstance(e, Delete))
        assert event.target_id == theirs  # the room's stanza-id, mapped back to the message's remote id
        assert event.conversation_id == room
        moderator = None if version == "0.3 without by" else by
        assert (event.sender.user_id if event.sender else None) == moderator
        await seen(me, bob, room, "after the moderation")  # everything before it was handled
        assert len(me.events(lambda e: isinstance(e, Delete))) == 1
    finally:
        await me.stop()


async def test_forged_and_malformed_moderations_are_logged_and_ignored(
    admin_prosody: ProsodyServer, room_bob: tuple[str, str, Peer]
) -> None:
    room, me_jid, bob = room_bob
    with capture_logs() as logs:
        me = await joined(admin_prosody, me_jid, room)
        try:
            theirs, stanza_id = await seen(me, bob, room, "keep me")
            # an occupant cannot moderate: the room relays this from room/bob, not from itself
            bob.send_raw(room, v1(stanza_id, by=f"{room}/bob"))
            await room_says(admin_prosody, room, announcement(v1(None, by=f"{room}/bob")))  # no id
            await room_says(admin_prosody, room, announcement(v0(stanza_id, f"{room}/bob", retract=False)))
            outsider = f"other@{admin_prosody.muc_host}/bob"
            await room_says(admin_prosody, room, announcement(v1(stanza_id, by=outsider)))
            await seen(me, bob, room, "still bridging")  # the connector carried on, in order
        finally:
            await me.stop()
    assert not me.events(lambda e: isinstance(e, Delete))
    ignored = [e for e in logs if e["event"] == "xmpp.moderation_ignored"]
    assert len(ignored) == 4, ignored
    assert all(e["log_level"] == "warning" for e in ignored)
    assert "not sent by a joined room itself" in ignored[0]["reason"]
    assert "without the retracted message's id" in ignored[1]["reason"]
    assert "not a retraction" in ignored[2]["reason"]
    assert "outside the room" in ignored[3]["reason"]
    assert theirs
