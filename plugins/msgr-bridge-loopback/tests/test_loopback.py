"""The loopback connector against its in-process network, through the real connector contract."""

from __future__ import annotations

import contextlib

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork

from msgr_bridge import AuthenticationFailed, LinkResult, MalformedPayload, OutboundMessage, TransientError
from msgr_bridge.schema import Account, Delete, Edit, Message, Reaction, ReadReceipt
from msgr_bridge.testing.fakes import CollectingSink, make_context


@pytest.fixture
def net() -> LoopbackNetwork:
    LoopbackNetwork.reset("t")
    n = LoopbackNetwork.get("t")
    n.add_user("alice", "Alice", password="pw-a")
    n.add_user("bob", "Bob", password="pw-b")
    n.create_group("g1", "Group", ["alice", "bob"])
    return n


def connector(sink: CollectingSink, user: str = "alice", password: str = "pw-a") -> LoopbackConnector:
    ctx = make_context(
        "loopback", remote_user_id=user, settings={"network": "t"}, secrets={"password": password}, sink=sink
    )
    return LoopbackConnector(ctx)


async def test_link_flow_checks_credentials(net: LoopbackNetwork) -> None:
    flow = LoopbackConnector.link_flow({"network": "t"})
    step = await flow.start()
    assert [f.name for f in step.fields] == ["user_id", "network", "url", "history_page", "password"]
    fields = {f.name: f for f in step.fields}
    assert fields["network"].default == "t" and not fields["network"].required  # the operator's default
    assert fields["history_page"].type == "integer" and fields["history_page"].default == 5_000
    assert fields["history_page"].help and fields["password"].secret
    with pytest.raises(AuthenticationFailed):
        await flow.submit({"user_id": "alice", "password": "wrong"})
    result = await flow.submit({"user_id": "alice", "password": "pw-a"})
    assert isinstance(result, LinkResult)
    assert result.remote_user_id == "alice" and result.secrets["password"] == "pw-a"


async def test_inbound_events_convert(net: LoopbackNetwork) -> None:
    sink = CollectingSink()
    c = connector(sink)
    await c.connect()
    async with anyio.create_task_group() as tg:
        tg.start_soon(c.subscribe)
        first = net.post("g1", "bob", "hello")
        net.edit("g1", "bob", first["id"], "hello!")
        net.react("g1", "bob", first["id"], "👍")
        net.read("g1", "bob", first["id"])
        net.delete("g1", "bob", first["id"])
        await sink.wait_for(lambda p: p["type"] == "delete")
        await c.disconnect()
    kinds = [type(LoopbackConnector.convert(p, c.ctx.account)[0]) for p in sink.payloads]
    assert kinds == [Message, Edit, Reaction, ReadReceipt, Delete]
    msg = LoopbackConnector.convert(sink.payloads[0], c.ctx.account)[0]
    assert isinstance(msg, Message)
    assert msg.text == "hello" and msg.sender.user_id == "bob" and not msg.sender.is_self


async def test_outbound_send_reaches_other_user_and_echoes_txn(net: LoopbackNetwork) -> None:
    alice_sink, bob_sink = CollectingSink(), CollectingSink()
    alice, bob = connector(alice_sink), connector(bob_sink, "bob", "pw-b")
    await alice.connect()
    await bob.connect()
    async with anyio.create_task_group() as tg:
        tg.start_soon(alice.subscribe)
        tg.start_soon(bob.subscribe)
        result = await alice.send_message("g1", OutboundMessage(txn_id="txn-1", text="hi bob"))
        got = await bob_sink.wait_for(lambda p: p.get("id") == result.remote_id)
        echo = await alice_sink.wait_for(lambda p: p.get("id") == result.remote_id)
        await alice.disconnect()
        await bob.disconnect()
    assert got["text"] == "hi bob"
    echo_msg = LoopbackConnector.convert(echo, alice.ctx.account)[0]
    assert isinstance(echo_msg, Message)
    assert echo_msg.sender.is_self and echo_msg.txn_id == "txn-1"
    # the other side never sees our transaction id as its own
    other = LoopbackConnector.convert(got, bob.ctx.account)[0]
    assert isinstance(other, Message) and other.txn_id is None


async def test_drop_raises_transient_and_sync_catches_up(net: LoopbackNetwork) -> None:
    sink = CollectingSink()
    c = connector(sink)
    await c.connect()
    snap = await c.sync_state(None)
    cursor = snap.cursor
    net.drop("alice")
    with pytest.raises(TransientError):
        await c.subscribe()
    missed = [net.post("g1", "bob", f"while away {i}")["id"] for i in range(3)]
    await c.connect()
    snap = await c.sync_state(cursor)
    assert [p["id"] for p in snap.history] == missed
    assert {conv.remote_id for conv in snap.conversations} == {"g1"}
    assert snap.cursor is not None and int(snap.cursor) > int(cursor or 0)
    await c.disconnect()


async def test_bad_password_is_authentication_failure(net: LoopbackNetwork) -> None:
    with pytest.raises(AuthenticationFailed):
        await connector(CollectingSink(), password="nope").connect()


ACCOUNT = Account(id="a", network="loopback", remote_user_id="alice")


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["type", "id", "sender", "conversation", "ts", "text", "target", "emoji", "action"]),
        st.one_of(st.none(), st.text(), st.integers(), st.floats(), st.booleans()),
    )
)
def test_convert_never_crashes(payload: dict[str, object]) -> None:
    with contextlib.suppress(MalformedPayload):
        LoopbackConnector.convert(payload, ACCOUNT)
