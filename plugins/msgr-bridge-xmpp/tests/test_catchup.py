"""Catch-up from MAM after downtime, server restarts, and XEP-0198 stream resumption."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from msgr_bridge_xmpp.connector import XmppConnector
from xmpp_peer import Peer, Running, make_connector

from msgr_bridge import AuthenticationFailed, Message, OutboundMessage, TransientError
from msgr_bridge.testing.fakes import MemoryStateStore
from msgr_bridge.testing.prosody import ProsodyServer, start_prosody


def texts(connector: XmppConnector, payloads: Any) -> list[str]:
    out = []
    for payload in payloads:
        out += [e.text for e in connector.convert(payload, connector.ctx.account) if isinstance(e, Message)]
    return out


async def test_messages_sent_while_disconnected_come_back_through_sync(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], bob: Peer
) -> None:
    room = await bob.create_room(f"catch-{uuid.uuid4().hex[:8]}")
    me = await Running(*make_connector(prosody, *users["me"], rooms=[room])).start()
    assert json.loads(me.cursor or "")["user"] is None  # first sync: no history, starts from now
    bob.send(me.connector.own_jid, "seen live")
    await me.wait_event(lambda e: isinstance(e, Message) and e.text == "seen live")
    mine = OutboundMessage(txn_id=f"txn-{uuid.uuid4().hex}", text="sent by me")
    await me.connector.send_message(bob.jid, mine)
    await bob.wait_for(lambda m: m["id"] == mine.txn_id)
    await me.stop()

    bob.send(me.connector.own_jid, "while away 1")
    bob.send(me.connector.own_jid, "while away 2")
    bob.send(room, "room while away", mtype="groupchat")
    await bob.wait_for(lambda m: m["body"] == "room while away")  # reflected: the room has archived it

    await me.connector.connect()
    snapshot = await me.connector.sync_state(me.cursor)
    history = texts(me.connector, snapshot.history)
    assert history.index("while away 1") < history.index("while away 2")
    assert "room while away" in history
    assert snapshot.complete
    assert {c.remote_id for c in snapshot.conversations} >= {room}
    assert any(c.is_self and c.remote_id == me.connector.own_jid for c in snapshot.contacts)
    # our own send comes back from the archive as an echo carrying its txn id
    echoes = [
        e
        for p in snapshot.history
        for e in me.connector.convert(p, me.connector.ctx.account)
        if isinstance(e, Message) and e.sender.is_self
    ]
    assert all(e.txn_id == e.remote_id for e in echoes)
    # a second sync from the new cursor brings nothing already delivered
    again = await me.connector.sync_state(snapshot.cursor)
    assert "while away 1" not in texts(me.connector, again.history)
    await me.connector.disconnect()


async def test_wrong_password_is_authentication_failed(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]]
) -> None:
    connector, _ = make_connector(prosody, users["me"][0], "not-the-password")
    with pytest.raises(AuthenticationFailed):
        await connector.connect()


@pytest.fixture
def own_server() -> Iterator[ProsodyServer]:
    """A server of its own: these tests stop and restart it."""
    server = start_prosody()
    yield server
    server.cleanup()


async def test_server_restart_raises_transient_then_catches_up(own_server: ProsodyServer) -> None:
    me_jid = own_server.register("me", "mepw")
    own_server.register("bob", "bobpw")
    bob = await Peer(own_server, "bob", "bobpw").start()
    room = await bob.create_room("restart")
    state = MemoryStateStore()
    me = await Running(*make_connector(own_server, me_jid, "mepw", rooms=[room], state=state)).start()
    bob.send(me_jid, "before restart")
    await me.wait_event(lambda e: isinstance(e, Message) and e.text == "before restart")

    own_server.stop()
    assert me.task is not None
    with pytest.raises(TransientError):
        await asyncio.wait_for(me.task, 10)
    await me.connector.disconnect()  # what the supervisor does next
    own_server.start()
    bob = await Peer(own_server, "bob", "bobpw").start()
    await bob.client.plugin["xep_0045"].join_muc_wait(room, "bob", maxstanzas=0, timeout=10)
    bob.send(me_jid, "during outage")
    bob.send(room, "room during outage", mtype="groupchat")
    await bob.wait_for(lambda m: m["body"] == "room during outage")

    await me.start()  # connect -> sync_state(last cursor) -> subscribe, as the supervisor does
    caught_up = texts(me.connector, me.snapshots[-1].history)
    assert {"during outage", "room during outage"} <= set(caught_up), caught_up
    bob.send(me_jid, "after reconnect")
    await me.wait_event(lambda e: isinstance(e, Message) and e.text == "after reconnect")
    await me.stop()
    await bob.stop()


async def test_dropped_connection_resumes_the_stream(own_server: ProsodyServer) -> None:
    me_jid = own_server.register("me", "mepw")
    own_server.register("bob", "bobpw")
    bob = await Peer(own_server, "bob", "bobpw").start()
    me = await Running(*make_connector(own_server, me_jid, "mepw")).start()
    client = me.connector._client
    assert client is not None and client.transport is not None
    client.transport.abort()  # the network drops under us; the server keeps the session (XEP-0198)
    assert me.task is not None
    with pytest.raises(TransientError):
        await asyncio.wait_for(me.task, 10)
    await me.connector.disconnect()
    bob.send(me_jid, "queued by the server")
    await me.start()
    assert me.connector.last_login == "resumed"
    await me.wait_event(lambda e: isinstance(e, Message) and e.text == "queued by the server")
    await me.stop()
    await bob.stop()


async def test_silent_server_is_detected_by_keepalive(own_server: ProsodyServer) -> None:
    me_jid = own_server.register("me", "mepw")
    me = await Running(
        *make_connector(own_server, me_jid, "mepw", ping_interval=0.2, ping_timeout=1.0)
    ).start()
    assert own_server.process is not None
    own_server.process.send_signal(signal.SIGSTOP)  # TCP stays open, but nothing answers
    try:
        assert me.task is not None
        with pytest.raises(TransientError):
            await asyncio.wait_for(me.task, 10)
    finally:
        own_server.process.send_signal(signal.SIGCONT)
    await me.connector.disconnect()
    await me.start()
    await me.stop()
