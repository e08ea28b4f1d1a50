"""The IRC connector against a real ngIRCd, with an independent bottom client as the other person."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from msgr_bridge_irc import IrcConnector

from msgr_bridge import (
    AuthenticationFailed,
    MembershipChange,
    Message,
    NotSupported,
    OutboundMessage,
    PermanentError,
    RateLimited,
)
from msgr_bridge.schema import MembershipAction, ReactionAction
from msgr_bridge.testing.ngircd import NgircdServer, running_ngircd


def events(running: Any, predicate: Any) -> list[Any]:
    account = running.connector.ctx.account
    out = []
    for p in running.sink.payloads:
        out.extend(e for e in IrcConnector.convert(p, account) if predicate(e))
    return out


async def wait_event(running: Any, predicate: Any, timeout: float = 5.0) -> Any:
    account = running.connector.ctx.account
    payload = await running.sink.wait_for(
        lambda p: any(predicate(e) for e in IrcConnector.convert(p, account)), timeout=timeout
    )
    return next(e for e in IrcConnector.convert(payload, account) if predicate(e))


# --- linking --------------------------------------------------------------------------------------------


async def test_link_flow_logs_in_and_returns_settings_and_secrets(ngircd: NgircdServer) -> None:
    flow = IrcConnector.link_flow({"host": ngircd.host, "port": str(ngircd.port), "tls": "false"})
    step = await flow.start()
    assert {f.name for f in step.fields} >= {"host", "nick", "server_password", "password"}
    assert next(f for f in step.fields if f.name == "port").default == str(ngircd.port)
    result = await flow.submit({"nick": "Linker", "server_password": ngircd.password, "channels": "#a, #b"})
    assert result.remote_user_id == f"{ngircd.host}/linker"
    assert result.secrets == {"server_password": ngircd.password}
    assert result.settings["channels"] == ["#a", "#b"]
    assert "server_password" not in result.settings


async def test_link_flow_with_a_wrong_server_password_fails(ngircd: NgircdServer, uniq: Any) -> None:
    flow = IrcConnector.link_flow({"host": ngircd.host, "port": ngircd.port, "tls": False})
    with pytest.raises(AuthenticationFailed, match="refused"):
        await flow.submit({"nick": uniq("bad"), "server_password": "wrong"})


@pytest.fixture(scope="module")
def strict_ngircd() -> Iterator[NgircdServer]:
    """An ngIRCd with its flood penalties on, like real servers: a new client is suspended for a second."""
    with running_ngircd(password="letmein", penalties=True) as server:
        yield server


async def test_the_account_connects_with_its_own_nick_right_after_linking(
    strict_ngircd: NgircdServer, peers: Any, make_connector: Any, uniq: Any
) -> None:
    # The link check's test connection is closed, and the server has let its nick go, before the real
    # connection registers: the other person sees the account's own nick. The old flow sent QUIT and
    # dropped the socket; the server, still suspending that fresh client, read the QUIT only after the
    # real connection's NICK, and the account got "nick_".
    server, chan, nick = strict_ngircd, uniq("#linked"), uniq("Linked")
    peer = await peers(server=server)
    await peer.join(chan)
    flow = IrcConnector.link_flow({"host": server.host, "port": server.port, "tls": False})
    result = await flow.submit({"nick": nick, "server_password": server.password})
    connector = make_connector(server, **{**result.settings, "channels": [chan]})
    await connector.connect()
    try:
        assert connector.session.nick == nick
        await connector.send_message(f"{server.host}/{chan}", OutboundMessage(txn_id=uniq("t"), text="hi"))
        (said,) = await peer.wait_privmsgs(1)
        assert said["nick"] == nick
    finally:
        await connector.disconnect()


async def test_connect_with_a_wrong_server_password_fails(ngircd: NgircdServer, make_connector: Any) -> None:
    connector = make_connector(ngircd, secrets={"server_password": "nope"})
    with pytest.raises(AuthenticationFailed):
        await connector.connect()


async def test_account_password_without_sasl_or_nickserv_is_refused_clearly(
    ngircd: NgircdServer, make_connector: Any
) -> None:
    # ngIRCd offers no SASL and runs no services: a configured password cannot be used, and we say so.
    connector = make_connector(ngircd, secrets={"server_password": ngircd.password, "password": "pw"})
    with pytest.raises(AuthenticationFailed, match="neither SASL nor a NickServ"):
        await connector.connect()


@pytest.mark.parametrize(("password", "ok"), [("right", True), ("wrong", False)])
async def test_nickserv_identify_path(
    ngircd: NgircdServer, peers: Any, password: str, ok: bool, make_connector: Any
) -> None:
    # ngIRCd has no services; a real client on the nick "NickServ" answers like Atheme/Anope would, so the
    # connector's IDENTIFY exchange runs over the wire (the wording of the answers is what services send).
    nickserv = await peers("NickServ")

    async def answer(nick: str, target: str, message: str, **kw: Any) -> None:
        reply = "You are now identified for x." if message.endswith(" right") else "Invalid password for x."
        await nickserv.client.send("notice", target=nick, message=reply)

    nickserv.client.on("privmsg", answer)
    connector = make_connector(ngircd, secrets={"server_password": ngircd.password, "password": password})
    if ok:
        await connector.connect()
        await connector.disconnect()
        assert nickserv.privmsgs[-1]["message"] == f"IDENTIFY {connector.settings.nick} right"
    else:
        with pytest.raises(AuthenticationFailed, match="NickServ"):
            await connector.connect()


async def test_tls_connection_with_self_signed_certificate(ngircd: NgircdServer, make_connector: Any) -> None:
    assert ngircd.tls_port is not None
    connector = make_connector(ngircd, port=ngircd.tls_port, tls=True, tls_verify=False)
    await connector.connect()
    await connector.disconnect()
    strict = make_connector(ngircd, port=ngircd.tls_port, tls=True)
    with pytest.raises(PermanentError, match="certificate"):
        await strict.connect()


async def test_taken_nick_gets_an_underscore(ngircd: NgircdServer, peers: Any, running: Any) -> None:
    taken = await peers()
    r = await running(nick=taken.nick)
    assert r.connector.session.nick == f"{taken.nick}_"


# --- inbound --------------------------------------------------------------------------------------------


async def test_inbound_channel_and_private_messages(
    ngircd: NgircdServer, peers: Any, running: Any, uniq: Any
) -> None:
    chan = uniq("#in")
    r = await running(channels=[chan])
    peer = await peers("Alice" + uniq(""))
    await peer.join(chan)
    joined = await wait_event(
        r, lambda e: isinstance(e, MembershipChange) and e.user.display_name == peer.nick
    )
    assert joined.action is MembershipAction.JOIN and joined.conversation_id == f"{ngircd.host}/{chan}"

    await peer.command(f"PRIVMSG {chan} :hello channel ☃")
    await peer.command(f"PRIVMSG {r.connector.session.nick} :hello you")
    await peer.command(f"PRIVMSG {chan} :\x01ACTION waves\x01")
    msg = await wait_event(r, lambda e: isinstance(e, Message) and e.text == "hello channel ☃")
    assert msg.conversation_id == f"{ngircd.host}/{chan}"
    assert msg.sender.user_id == f"{ngircd.host}/{peer.nick.lower()}" and not msg.sender.is_self
    assert msg.sender.display_name == peer.nick
    dm = await wait_event(r, lambda e: isinstance(e, Message) and e.text == "hello you")
    assert dm.conversation_id == f"{ngircd.host}/{peer.nick.lower()}"
    action = await wait_event(r, lambda e: isinstance(e, Message) and e.text.startswith("/me"))
    assert action.text == "/me waves"
    assert len({msg.remote_id, dm.remote_id, action.remote_id}) == 3


async def test_memberships_part_kick_nick_quit(
    ngircd: NgircdServer, peers: Any, running: Any, uniq: Any
) -> None:
    a, b = uniq("#ma"), uniq("#mb")
    op = await peers()
    await op.join(a)  # first in: channel operator, may kick
    await op.join(b)
    r = await running(channels=[a, b])
    mover = await peers()
    await mover.join(a)
    await mover.join(b)
    await wait_event(r, lambda e: e.kind == "membership" and e.user.display_name == mover.nick
                     and e.conversation_id.endswith(b))  # fmt: skip

    await mover.command(f"PART {b} :later", wait="part")
    part = await wait_event(r, lambda e: e.kind == "membership" and e.action is MembershipAction.LEAVE)
    assert part.conversation_id == f"{ngircd.host}/{b}" and part.reason == "later"
    await mover.join(b)

    new_nick = uniq("renamed")
    await mover.command(f"NICK {new_nick}", wait="nick")
    await wait_event(r, lambda e: e.kind == "membership" and e.action is MembershipAction.RENAME)
    renames = events(r, lambda e: e.kind == "membership" and e.action is MembershipAction.RENAME)
    assert {e.conversation_id for e in renames} == {f"{ngircd.host}/{a}", f"{ngircd.host}/{b}"}
    assert all(e.new_name == new_nick and e.user.display_name == mover.nick for e in renames)

    await op.command(f"KICK {a} {new_nick} :behave")
    kick = await wait_event(r, lambda e: e.kind == "membership" and e.action is MembershipAction.KICK)
    assert kick.user.display_name == new_nick and kick.actor.display_name == op.nick
    assert kick.reason == "behave" and kick.conversation_id == f"{ngircd.host}/{a}"

    await mover.close()
    quit_ = await wait_event(r, lambda e: e.kind == "membership" and e.reason and "bye" in e.reason)
    quits = events(r, lambda e: e.kind == "membership" and e.action is MembershipAction.LEAVE
                   and e.reason == quit_.reason)  # fmt: skip
    assert {e.conversation_id for e in quits} == {f"{ngircd.host}/{b}"}  # no longer shares #a (kicked)


# --- outbound -------------------------------------------------------------------------------------------


async def test_outbound_channel_and_private(
    ngircd: NgircdServer, peers: Any, running: Any, uniq: Any
) -> None:
    chan = uniq("#out")
    peer = await peers()
    await peer.join(chan)
    r = await running(channels=[chan])
    one = await r.connector.send_message(f"{ngircd.host}/{chan}", OutboundMessage(txn_id="t1", text="hi all"))
    two = await r.connector.send_message(
        f"{ngircd.host}/{peer.nick}", OutboundMessage(txn_id="t2", text="hi")
    )
    got = await peer.wait_privmsgs(2)
    assert [(m["target"], m["message"]) for m in got] == [(chan, "hi all"), (peer.nick, "hi")]
    assert got[0]["nick"] == r.connector.session.nick
    assert one.remote_id != two.remote_id and one.extra_parts == ()


async def test_long_message_is_split_within_the_line_limit(
    ngircd: NgircdServer, peers: Any, running: Any, uniq: Any
) -> None:
    chan = uniq("#long")
    peer = await peers()
    await peer.join(chan)
    r = await running(channels=[chan])
    words = " ".join(f"wörd{i}-ü€😀" for i in range(120))
    text = f"{words}\nsecond line"
    result = await r.connector.send_message(f"{ngircd.host}/{chan}", OutboundMessage(txn_id="t", text=text))
    count = 1 + len(result.extra_parts)
    assert count >= 4
    got = await peer.wait_privmsgs(count)
    received = [m["message"] for m in got]
    assert " ".join(received[:-1]) == words and received[-1] == "second line"
    relayed = [line for line in peer.raw_lines if b" PRIVMSG " in line]
    assert len(relayed) == count and all(len(line) + 2 <= 512 for line in relayed)
    assert max(len(line) for line in relayed) > 400  # lines are filled, not cut short
    assert len({result.remote_id, *result.extra_parts}) == count


async def test_unbroken_text_fills_lines_to_exactly_512_bytes(
    ngircd: NgircdServer, peers: Any, running: Any
) -> None:
    peer = await peers()
    r = await running(flood_burst=10)
    text = "ä" * 700  # no whitespace: cut on UTF-8 boundaries only
    result = await r.connector.send_message(
        f"{ngircd.host}/{peer.nick}", OutboundMessage(txn_id="u", text=text)
    )
    got = await peer.wait_privmsgs(1 + len(result.extra_parts))
    assert "".join(m["message"] for m in got) == text
    relayed = [line for line in peer.raw_lines if b" PRIVMSG " in line]
    assert max(len(line) + 2 for line in relayed) in (511, 512)  # full to the byte (2-byte chars)


async def test_undeclared_capabilities_raise_not_supported(ngircd: NgircdServer, running: Any) -> None:
    r = await running()
    c = r.connector
    conv = f"{ngircd.host}/#x"
    for flag in ("edits", "deletes", "reactions", "read_receipts", "typing", "history_catchup"):
        assert not c.capabilities.supports(flag)
    msg = OutboundMessage(txn_id="e", text="x")
    with pytest.raises(NotSupported):
        await c.edit(conv, "id", msg)
    with pytest.raises(NotSupported):
        await c.delete(conv, "id")
    with pytest.raises(NotSupported):
        await c.react(conv, "id", "👍", ReactionAction.ADD)
    with pytest.raises(NotSupported):
        await c.mark_read(conv, "id")
    with pytest.raises(NotSupported):
        await c.set_typing(conv, True)
    with pytest.raises(PermanentError, match="not a conversation"):
        await c.send_message("other.server/#x", msg)


async def send_as_the_worker_would(connector: Any, conversation: str, message: OutboundMessage) -> int:
    """``send_message`` retried after each ``RateLimited.retry_after`` with the same message, as the
    delivery worker does; returns how many calls it took. A send that makes no progress fails."""
    for call in range(1, 9):  # 100 lines at 2/s need 2 calls of max_send_wait = 30 s
        try:
            await connector.send_message(conversation, message)
            return call
        except RateLimited as exc:
            assert exc.retry_after < 5, f"retry after {exc.retry_after:.1f}s: a wait for the impossible"
            await asyncio.sleep(exc.retry_after)
    raise AssertionError("the send never went out: every call was rate limited")


async def test_a_send_past_max_send_wait_resumes_where_it_stopped(
    ngircd: NgircdServer, peers: Any, running: Any
) -> None:
    peer = await peers()
    r = await running(flood_rate=20, flood_burst=2, max_send_wait=0)  # one call paces about one line
    target = f"{ngircd.host}/{peer.nick}"
    with pytest.raises(RateLimited) as info:
        await r.connector.send_message(target, OutboundMessage(txn_id="a", text="1\n2\n3"))
    assert 0 < info.value.retry_after < 1
    await send_as_the_worker_would(r.connector, target, OutboundMessage(txn_id="a", text="1\n2\n3"))
    await r.connector.send_message(target, OutboundMessage(txn_id="b", text="next"))
    got = await peer.wait_privmsgs(4)
    assert [m["message"] for m in got] == ["1", "2", "3", "next"]  # each line once, in order


async def test_a_100_line_message_arrives_whole_and_in_order(
    ngircd: NgircdServer, peers: Any, running: Any, uniq: Any
) -> None:
    """Issue #10 item 3: more than about 23 lines raised RateLimited on every try (the burst caps the
    tokens) and blocked its conversation for good. Default flood control: 2 lines/s, a burst of 3."""
    chan = uniq("#hundred")
    peer = await peers()
    await peer.join(chan)
    r = await running(channels=[chan])
    lines = [f"line {i:03d} of the long paste" for i in range(100)]
    message = OutboundMessage(txn_id="paste", text="\n".join(lines))
    await send_as_the_worker_would(r.connector, f"{ngircd.host}/{chan}", message)
    got = await peer.wait_privmsgs(100, timeout=120)
    assert [m["message"] for m in got] == lines
    assert not r.task.done()


async def test_a_send_the_server_refuses_fails_with_its_reason(
    ngircd: NgircdServer, peers: Any, running: Any, uniq: Any
) -> None:
    """Issue #10 item 11: a send answered with 403 ERR_NOSUCHCHANNEL was reported as sent."""
    r = await running()
    missing = uniq("#missing")
    with pytest.raises(PermanentError, match=r"refused the message to #missing\d+: 40[13] ") as info:
        await r.connector.send_message(f"{ngircd.host}/{missing}", OutboundMessage(txn_id="x", text="hello?"))
    assert "no such" in str(info.value).lower()
    closed = uniq("#closed")  # +n: only members may speak there (404 ERR_CANNOTSENDTOCHAN)
    peer = await peers()
    await peer.join(closed)
    await peer.command(f"MODE {closed} +n")
    with pytest.raises(PermanentError, match=r"refused the message to #closed\d+: 404 "):
        await r.connector.send_message(f"{ngircd.host}/{closed}", OutboundMessage(txn_id="y", text="hi"))
    ok = await r.connector.send_message(f"{ngircd.host}/{peer.nick}", OutboundMessage(txn_id="z", text="hi"))
    assert ok.remote_id  # a send that reaches its target still succeeds
    assert not r.task.done()


async def test_many_messages_arrive_in_order_without_disconnect(
    ngircd: NgircdServer, peers: Any, running: Any
) -> None:
    peer = await peers()
    r = await running(flood_rate=3, flood_burst=3)
    target = f"{ngircd.host}/{peer.nick}"
    for i in range(9):
        await r.connector.send_message(target, OutboundMessage(txn_id=f"m{i}", text=f"n{i}"))
    got = await peer.wait_privmsgs(9)
    assert [m["message"] for m in got] == [f"n{i}" for i in range(9)]
    assert not r.task.done()


# --- state, keep-alive and reconnect ------------------------------------------------------------------


async def test_sync_state_lists_channels_and_members(
    ngircd: NgircdServer, peers: Any, running: Any, uniq: Any
) -> None:
    chan = uniq("#sync")
    peer = await peers()
    await peer.join(chan)
    r = await running(channels=[chan])
    snap = await r.connector.sync_state("cur")
    conv = next(c for c in snap.conversations if c.remote_id == f"{ngircd.host}/{chan}")
    assert set(conv.members) == {f"{ngircd.host}/{peer.nick}", f"{ngircd.host}/{r.connector.session.nick}"}
    assert snap.history == () and snap.cursor == "cur" and snap.complete is False
    assert any(c.is_self for c in snap.contacts)


@pytest.mark.slow
async def test_server_pings_are_answered(make_connector: Any) -> None:
    from msgr_bridge.testing.ngircd import running_ngircd

    with running_ngircd(ping_timeout=1) as server:
        r_conn = make_connector(server)
        await r_conn.connect()
        task = asyncio.create_task(r_conn.subscribe())
        try:
            async with asyncio.timeout(15):
                while r_conn.session.pings_answered < 2:  # noqa: ASYNC110 - a counter, no event to await
                    await asyncio.sleep(0.1)
            assert not task.done()  # ngircd would have dropped us after PongTimeout otherwise
        finally:
            await r_conn.disconnect()
            await asyncio.gather(task, return_exceptions=True)
        assert task.exception() is None


async def test_channels_are_remembered_key_by_key_and_an_old_list_is_moved(
    ngircd: NgircdServer, make_connector: Any, uniq: Any
) -> None:
    old, kept, left = uniq("#Old"), uniq("#kept"), uniq("#left")
    connector = make_connector(ngircd, channels=[kept])
    await connector.ctx.state.set("channels", [old])  # what older versions stored: one list
    await connector.connect()
    try:
        assert set(connector.session.channels) == {old.lower(), kept}
        assert await connector.ctx.state.get("channels") is None
        assert await connector.joined.list() == {old.lower(): old, kept: kept}
        await connector.session.send_paced(f"JOIN {left}")
        await connector.session.send_paced(f"PART {left}")
        await connector.session.send_paced(f"PART {old}")
        task = asyncio.create_task(connector.subscribe())
        await connector.ctx.sink.wait_for(lambda p: f"PART {old}" in p["line"])
        assert await connector.joined.list() == {kept: kept}
    finally:
        await connector.disconnect()
    await asyncio.wait_for(task, 5)


async def test_server_restart_raises_transient_then_reconnects_and_rejoins(
    peers: Any, make_connector: Any, uniq: Any
) -> None:
    from msgr_bridge import TransientError
    from msgr_bridge.testing.ngircd import running_ngircd

    chan = uniq("#restart")
    with running_ngircd() as server:
        connector = make_connector(server, channels=[chan])
        await connector.connect()
        extra = uniq("#later")
        await connector.session.send_paced(f"JOIN {extra}")  # joined at runtime: must be rejoined too
        task = asyncio.create_task(connector.subscribe())
        sink = connector.ctx.sink
        await sink.wait_for(
            lambda p: f"JOIN {extra}".lower() in p["line"].lower() or f"JOIN :{extra}" in p["line"]
        )
        peer = await peers(server=server)
        await peer.join(chan)
        await peer.command(f"PRIVMSG {chan} :before")
        await sink.wait_for(lambda p: p["line"].endswith(":before"))

        server.stop()
        with pytest.raises(TransientError):
            async with asyncio.timeout(10):
                await task
        await connector.disconnect()
        server.start()

        await connector.connect()
        task = asyncio.create_task(connector.subscribe())
        snap = await connector.sync_state(None)
        assert {c.name for c in snap.conversations} == {chan, extra}
        again = await peers(server=server)
        await again.join(chan)
        await again.command(f"PRIVMSG {chan} :after")
        payload = await sink.wait_for(lambda p: p["line"].endswith(":after"))
        (msg,) = IrcConnector.convert(payload, connector.ctx.account)
        assert msg.text == "after" and msg.conversation_id == f"{server.host}/{chan}"
        await connector.disconnect()
        async with asyncio.timeout(5):
            await task  # returns normally after disconnect()
