"""Test helpers: "the other person" (a second, independent slixmpp client), a supervised connector, and
making a room itself speak (what server modules such as mod_muc_moderation do, which Prosody 0.12 lacks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

from msgr_bridge_xmpp.connector import XmppConnector
from slixmpp import JID, ClientXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from msgr_bridge import SyncSnapshot
from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.prosody import ProsodyServer


class Peer:
    """An independent slixmpp client: the person on the other side of the bridge."""

    def __init__(self, server: ProsodyServer, user: str, password: str, resource: str = "peer") -> None:
        self.jid = server.jid(user)
        self.server = server
        self.client = ClientXMPP(
            f"{self.jid}/{resource}",
            password,
            plugin_config={"feature_mechanisms": {"unencrypted_scram": True, "unencrypted_plain": True}},
        )
        self.client.enable_direct_tls = False
        self.client.enable_starttls = False
        self.client.enable_plaintext = True
        for plugin in ("xep_0030", "xep_0045", "xep_0085", "xep_0308", "xep_0333", "xep_0334", "xep_0359",
                       "xep_0424", "xep_0444", "xep_0461"):  # fmt: skip
            self.client.register_plugin(plugin)
        self.received: list[Any] = []
        self._changed = asyncio.Event()
        self.client.register_handler(Callback("peer", MatchXPath("{jabber:client}message"), self._on_message))

    def _on_message(self, msg: Any) -> None:
        self.received.append(msg)
        self._changed.set()

    async def start(self) -> Peer:
        started = asyncio.get_running_loop().create_future()
        self.client.add_event_handler("session_start", lambda _e: started.done() or started.set_result(True))
        self.client.connect("127.0.0.1", self.server.c2s_port)
        await asyncio.wait_for(started, 10)
        self.client.send_presence()
        await self.client.get_roster(timeout=10)
        return self

    async def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for msg in self.received:
                    if predicate(msg):
                        return msg
                self._changed.clear()
                await self._changed.wait()

    def send_raw(self, to: str, children: str, mtype: str = "groupchat", msg_id: str | None = None) -> str:
        """Send a message whose payload is the given XML elements (in their own namespaces)."""
        msg = self.client.make_message(mto=to, mtype=mtype)
        if msg_id:
            msg["id"] = msg_id
        for child in ElementTree.fromstring(f"<x>{children}</x>"):
            msg.xml.append(child)
        msg.send()
        return str(msg["id"])

    def send(self, to: str, body: str, mtype: str = "chat", msg_id: str | None = None) -> str:
        msg = self.client.make_message(mto=to, mbody=body, mtype=mtype)
        if msg_id:
            msg["id"] = msg_id
        msg.send()
        return str(msg["id"])

    async def create_room(self, name: str) -> str:
        room = f"{name}@{self.server.muc_host}"
        muc = self.client.plugin["xep_0045"]
        await muc.join_muc_wait(JID(room), "bob", maxstanzas=0, timeout=10)
        form = await muc.get_room_config(room)
        form["type"] = "submit"
        form.field["muc#roomconfig_persistentroom"]["value"] = True
        await muc.set_room_config(room, form)
        return room

    async def stop(self) -> None:
        if self.client.transport is not None:
            await self.client.disconnect(wait=1.0)


def make_connector(
    server: ProsodyServer,
    jid: str,
    password: str,
    rooms: list[str] | None = None,
    state: Any = None,
    **extra_settings: Any,
) -> tuple[XmppConnector, CollectingSink]:
    sink = CollectingSink()
    settings = {**server.connection_settings(), "rooms": rooms or [], **extra_settings}
    ctx = make_context(
        "xmpp", remote_user_id=jid, settings=settings, secrets={"password": password}, sink=sink, state=state
    )
    return XmppConnector(ctx), sink


class Running:
    """A connector that is connected, synced and subscribed (the supervisor's happy path)."""

    def __init__(self, connector: XmppConnector, sink: CollectingSink) -> None:
        self.connector, self.sink = connector, sink
        self.cursor: str | None = None
        self.snapshots: list[SyncSnapshot] = []
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Running:
        await self.connector.connect()
        snapshot = await self.connector.sync_state(self.cursor)
        self.cursor = snapshot.cursor
        self.snapshots.append(snapshot)
        self.task = asyncio.create_task(self.connector.subscribe())
        return self

    async def stop(self) -> None:
        await self.connector.disconnect()
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)

    def events(self, predicate: Callable[[Any], bool] | None = None) -> list[Any]:
        out = []
        for payload in self.sink.payloads:
            out += [e for e in XmppConnector.convert(payload, self.connector.ctx.account)]
        return [e for e in out if predicate is None or predicate(e)]

    async def wait_event(self, predicate: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        account = self.connector.ctx.account

        def match(payload: Any) -> bool:
            return any(predicate(e) for e in XmppConnector.convert(payload, account))

        payload = await self.sink.wait_for(match, timeout)
        return next(e for e in XmppConnector.convert(payload, account) if predicate(e))


def enable_admin_shell(server: ProsodyServer) -> None:
    """Restart ``server`` with its admin socket on, so that tests can run Lua inside it (``room_says``)."""
    config = server.config_path.read_text()
    anchor = '"time";'
    assert anchor in config, "the Prosody fixture's module list changed: update enable_admin_shell"
    server.config_path.write_text(config.replace(anchor, f'{anchor} "admin_shell"; "admin_socket";', 1))
    server.restart()


async def room_says(server: ProsodyServer, room: str, stanza: str) -> None:
    """Make the room itself send ``stanza`` (a ``<message>``'s XML) to every occupant.

    It goes through the room's own ``broadcast_message``, as mod_muc_moderation's announcements do: the
    ``from`` is the room's bare JID, and the room archives it and adds its stanza-id. Needs
    ``enable_admin_shell``.
    """
    assert "]==]" not in stanza
    lua = (
        f'> local room = prosody.hosts["{server.muc_host}"].modules.muc.get_room_from_jid("{room}"); '
        f'local stanza = require "util.xml".parse([==[{stanza}]==]); '
        'stanza.attr.from = room.jid; room:broadcast_message(stanza); return "sent by the room"'
    )
    proc = await asyncio.create_subprocess_exec(
        "prosodyctl", "--config", str(server.config_path), "shell",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(f"{lua}\n".encode()), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "Result: sent by the room" in out.decode(), out.decode()
