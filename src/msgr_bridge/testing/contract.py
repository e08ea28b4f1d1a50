"""The connector contract suite: the tests every connector passes, against its real network.

A connector package runs it with one fixture and one class, in ``tests/test_contract.py``::

    import pytest
    from msgr_bridge.testing.contract import ConnectorContract
    from msgr_bridge.testing.harness import ConnectorHarness

    class MyHarness(ConnectorHarness):
        connector_class = MyConnector
        ...                                   # link answers, the other person, samples (see harness.py)

    @pytest.fixture
    async def connector_harness(my_server):   # e.g. the ``prosody``/``ngircd``/``synapse`` fixtures
        harness = MyHarness(my_server)
        await harness.start()
        yield harness
        await harness.aclose()

    class TestContract(ConnectorContract):    # pytest collects the inherited tests
        pass

What it checks, each over the wire with a second, independent client as the other person:

- the class attributes are valid (``msgr_bridge.plugins.validate_connector_class``);
- linking: ``start`` gives a step, good credentials give a ``LinkResult``, refused ones raise
  ``AuthenticationFailed``;
- inbound: the other person's message reaches the sink and converts to a ``Message`` in the shared
  conversation, with the right text, not marked as ours; outbound: ``send_message`` reaches them;
- every capability in ``CAPABILITY_METHODS``: when declared, the other person observes it (an edit, a
  delete, a reaction added and removed, a read marker, typing on and off); when not, ``NotSupported``; the
  same for attachments;
- reconnect: after ``disconnect()`` the same instance connects and subscribes again; where the harness can
  restart the server, ``subscribe`` raises ``TransientError`` and the connector recovers afterwards;
- catch-up: with ``history_catchup`` declared, messages sent while disconnected come back through
  ``sync_state``'s history, in order; without it, the snapshot must not claim to be ``complete``;
- conversion: the harness's sample payloads convert to valid canonical events, and hypothesis-mutated
  payloads either convert to valid events or raise ``MalformedPayload``, nothing else.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..connectors.base import CAPABILITY_METHODS
from ..connectors.protocol import Connector, LinkResult, LinkStep, RawPayload
from ..errors import AuthenticationFailed, MalformedPayload, NotSupported, TransientError
from ..plugins import validate_connector_class
from ..schema import (
    Account,
    Attachment,
    Event,
    Message,
    OutboundMessage,
    ReactionAction,
    SendResult,
    parse_event,
)
from ..sdk.settings import form_fields, settings_model_of, validate_settings
from .harness import WAIT_S, ConnectorHarness, Live

__all__ = ["ConnectorContract", "check_events", "json_values", "mutations"]

FUZZ_EXAMPLES = 300


def unique(label: str) -> str:
    return f"contract {label} {uuid.uuid4().hex[:10]}"


def out(text: str) -> OutboundMessage:
    return OutboundMessage(txn_id=f"txn-{uuid.uuid4().hex}", text=text)


def texts(connector: Connector, payloads: Sequence[RawPayload]) -> list[str]:
    account = connector.ctx.account
    return [e.text for p in payloads for e in connector.convert(p, account) if isinstance(e, Message)]


def check_events(events: Any, network: str, account: Account) -> None:
    """Assert that ``convert``'s answer is a sequence of valid canonical events of this account."""
    assert isinstance(events, Sequence) and not isinstance(events, str | bytes), f"not a sequence: {events!r}"
    for event in events:
        again = parse_event(event.model_dump(mode="json"))  # a valid event survives its own JSON
        assert again == event, f"{event!r} does not survive a JSON round trip"
        assert event.network == network and event.account_id == account.id, event


# --- hypothesis strategies -----------------------------------------------------------------------------


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON-compatible value (the shape of a raw payload, or of garbage in one)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
        st.just(""),
        st.just("x" * 600),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=8,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _apply(sample: Any, ops: list[tuple[tuple[Any, ...], bool, Any]]) -> Any:
    result = copy.deepcopy(sample)
    for path, delete, value in ops:
        parent = result
        try:
            for step in path[:-1]:
                parent = parent[step]
            if delete:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    return result


def mutations(samples: Sequence[RawPayload]) -> st.SearchStrategy[Any]:
    """Samples with fields removed or replaced by arbitrary JSON, plus arbitrary JSON documents."""
    plain = [copy.deepcopy(dict(s)) for s in samples]

    def mutate(sample: dict[str, Any]) -> st.SearchStrategy[Any]:
        paths = _paths(sample)
        if not paths:
            return st.just(sample)
        op = st.tuples(st.sampled_from(paths), st.booleans(), json_values())
        return st.lists(op, min_size=1, max_size=3).map(lambda ops: _apply(sample, ops))

    return st.one_of(st.sampled_from(plain).flatmap(mutate), json_values())


# --- the suite -------------------------------------------------------------------------------------------


async def _exercise(capability: str, harness: ConnectorHarness, live: Live) -> None:
    """Use one declared capability and wait until the other person observes it."""
    c, conv = live.connector, harness.conversation_id
    if capability in ("edits", "deletes"):
        text = unique(capability)
        sent = await c.send_message(conv, out(text))
        await harness.peer_wait_message(text)
        if capability == "edits":
            await c.edit(conv, sent.remote_id, out(text + " (edited)"))
            await harness.peer_sees_edit(sent.remote_id, text + " (edited)")
        else:
            await c.delete(conv, sent.remote_id)
            await harness.peer_sees_delete(sent.remote_id)
        return
    if capability == "typing":
        for active in (True, False):
            await c.set_typing(conv, active)
            await harness.peer_sees_typing(active)
        return
    text = unique(capability)
    await harness.peer_send(text)
    theirs = await live.wait_text(text)
    if capability == "reactions":
        for action in (ReactionAction.ADD, ReactionAction.REMOVE):
            await c.react(conv, theirs.remote_id, "👍", action)
            await harness.peer_sees_reaction(theirs.remote_id, "👍", action)
    elif capability == "read_receipts":
        await c.mark_read(conv, theirs.remote_id)
        await harness.peer_sees_read(theirs.remote_id)
    else:
        raise AssertionError(f"the contract suite does not know capability {capability!r}")


def _undeclared_call(capability: str, c: Connector, conv: str) -> Callable[[], Any]:
    calls: dict[str, Callable[[], Any]] = {
        "edits": lambda: c.edit(conv, "contract-target", out("edited")),
        "deletes": lambda: c.delete(conv, "contract-target"),
        "reactions": lambda: c.react(conv, "contract-target", "👍", ReactionAction.ADD),
        "read_receipts": lambda: c.mark_read(conv, "contract-target"),
        "typing": lambda: c.set_typing(conv, True),
    }
    return calls[capability]


class ConnectorContract:
    """The contract tests; subclass as ``TestContract`` and provide a ``connector_harness`` fixture."""

    # --- class level ---------------------------------------------------------------------------------

    def test_class_attributes_are_valid(self, connector_harness: ConnectorHarness) -> None:
        cls = connector_harness.connector_class
        assert validate_connector_class(cls) is None, validate_connector_class(cls)
        for method in CAPABILITY_METHODS.values():
            assert callable(getattr(cls, method, None)), f"{cls.__name__}.{method} is missing"

    async def test_link_flow(self, connector_harness: ConnectorHarness) -> None:
        h = connector_harness
        flow = h.connector_class.link_flow(h.link_settings())
        assert isinstance(await flow.start(), LinkStep)
        with pytest.raises(AuthenticationFailed):
            await flow.submit(h.bad_link_answers())
        result = await h.connector_class.link_flow(h.link_settings()).submit(h.link_answers())
        assert isinstance(result, LinkResult) and result.remote_user_id
        connector = await h.build_connector()
        await connector.connect()  # what was stored at link time is enough to log in
        await connector.disconnect()

    async def test_a_refused_link_answer_can_be_answered_again(
        self, connector_harness: ConnectorHarness
    ) -> None:
        """The core keeps a flow open after a refused answer: the same flow must accept the right one."""
        h = connector_harness
        flow = h.connector_class.link_flow(h.link_settings())
        await flow.start()
        with pytest.raises(AuthenticationFailed):
            await flow.submit(h.bad_link_answers())
        assert isinstance(await flow.submit(h.link_answers()), LinkResult)
        close = getattr(flow, "close", None)
        if close is not None:
            await close()

    async def test_settings_model_accepts_what_linking_stored(
        self, connector_harness: ConnectorHarness
    ) -> None:
        """With a ``settings_model``, the settings a link stores validate at start, and the link form's
        fields of the model carry its types."""
        h = connector_harness
        model = settings_model_of(h.connector_class)
        if model is None:
            pytest.skip("the connector declares no settings_model")
        result = await h.link()
        network = h.connector_class.network
        validate_settings(model, {**h.link_settings(), **result.settings}, network=network)
        step = await h.connector_class.link_flow(h.link_settings()).start()
        typed = {f.name: f.type for f in form_fields(model)}
        for f in step.fields:
            if f.name in typed:
                assert f.type == typed[f.name], (
                    f"link form field {f.name} is {f.type}, the model says {typed[f.name]}"
                )

    # --- messages both ways --------------------------------------------------------------------------

    async def test_inbound_message_converts(self, connector_harness: ConnectorHarness) -> None:
        h = connector_harness
        async with Live(await h.build_connector()) as live:
            text = unique("inbound")
            remote_id = await h.peer_send(text)
            message = await live.wait_text(text)
        assert message.conversation_id == h.conversation_id
        assert not message.sender.is_self and message.txn_id is None
        assert message.network == h.connector_class.network
        if remote_id is not None:
            assert message.remote_id == remote_id

    async def test_outbound_send_arrives(self, connector_harness: ConnectorHarness) -> None:
        h = connector_harness
        async with Live(await h.build_connector()) as live:
            text = unique("outbound")
            result = await live.connector.send_message(h.conversation_id, out(text))
            assert isinstance(result, SendResult) and result.remote_id
            received = await h.peer_wait_message(text)
        assert text in received

    # --- capabilities --------------------------------------------------------------------------------

    @pytest.mark.parametrize("capability", sorted(CAPABILITY_METHODS))
    async def test_capability(self, connector_harness: ConnectorHarness, capability: str) -> None:
        h = connector_harness
        async with Live(await h.build_connector()) as live:
            if live.connector.capabilities.supports(capability):
                await _exercise(capability, h, live)
            else:
                with pytest.raises(NotSupported):
                    await _undeclared_call(capability, live.connector, h.conversation_id)()

    async def test_attachments_only_when_declared(self, connector_harness: ConnectorHarness) -> None:
        h = connector_harness
        if h.connector_class.capabilities.attachments:
            pytest.skip("attachments are declared; their transfer is the connector's own test")
        with_file = OutboundMessage(
            txn_id=f"txn-{uuid.uuid4().hex}", text="a file", attachments=(Attachment(name="a.txt"),)
        )
        async with Live(await h.build_connector()) as live:
            with pytest.raises(NotSupported):
                await live.connector.send_message(h.conversation_id, with_file)

    # --- reconnecting --------------------------------------------------------------------------------

    async def test_reconnect_after_disconnect(self, connector_harness: ConnectorHarness) -> None:
        h = connector_harness
        live = await Live(await h.build_connector()).start()
        first = unique("before disconnect")
        await h.peer_send(first)
        await live.wait_text(first)
        assert await live.stop() is None, "subscribe() must return normally after disconnect()"
        async with live:  # the same instance connects and subscribes again
            text = unique("after reconnect")
            await h.peer_send(text)
            await live.wait_text(text)

    @pytest.mark.parametrize("first_step", ["during_disconnect", "after_disconnect"])
    async def test_disconnect_before_subscribe_runs(
        self, connector_harness: ConnectorHarness, first_step: str
    ) -> None:
        """The supervisor creates the ``subscribe`` task, but a stop can come before the task's first step
        (an account disabled or the bridge shut down just after connecting). ``subscribe`` must then end
        quietly, push nothing more (the core no longer listens; what ``connect`` itself pushed, such as
        our own joins, is fine) and leave the instance able to connect again.

        ``Live.start`` yields once after creating the task, so the other tests never see this order; here
        ``disconnect()`` starts before ``subscribe()`` ran at all, and with ``after_disconnect`` it has
        returned before ``subscribe()`` is even called. A message from the other person waits on the
        wire meanwhile, so a connector that drains what it buffered after a disconnect is caught too.
        """
        h = connector_harness
        connector = await h.build_connector()
        live = Live(connector)
        await connector.connect()
        await connector.sync_state(None)
        await h.peer_send(unique("while not subscribed"))
        await h.peer_settle()
        disconnected = asyncio.Event()

        async def subscribe_after_disconnect() -> None:
            await disconnected.wait()
            await connector.subscribe()

        early = connector.subscribe() if first_step == "during_disconnect" else subscribe_after_disconnect()
        before = len(live.sink.payloads)  # what connect() itself pushed (e.g. IRC's own JOIN) is fine
        task = asyncio.create_task(early)
        await connector.disconnect()  # no await before this one: the task has not run yet
        disconnected.set()
        async with asyncio.timeout(WAIT_S):
            (raised,) = await asyncio.gather(task, return_exceptions=True)
        if isinstance(raised, BaseException):
            raise AssertionError(
                f"subscribe() must return normally after an early disconnect(), it raised {raised!r}"
            ) from raised
        after = live.sink.payloads[before:]
        assert after == [], f"pushed after disconnect(): {after!r}"
        await live.start()  # the same instance connects and subscribes again
        try:
            text = unique("after early disconnect")
            await h.peer_send(text)
            await live.wait_text(text)
        finally:
            assert await live.stop() is None, "subscribe() must return normally after disconnect()"

    async def test_server_restart_recovers(self, connector_harness: ConnectorHarness) -> None:
        h = connector_harness
        if not h.can_restart:
            pytest.skip("this harness cannot restart its server")
        catchup = h.connector_class.capabilities.history_catchup
        live = await Live(await h.build_connector()).start()
        try:
            before = unique("before restart")
            await h.peer_send(before)
            await live.wait_text(before)
            cursor = live.snapshot.cursor if live.snapshot else None
            await h.stop_server()
            assert live.task is not None
            with pytest.raises(TransientError):
                await asyncio.wait_for(live.task, WAIT_S)
            await live.connector.disconnect()  # what the supervisor does next
            live.task = None
            await h.start_server()
            during = unique("during restart")
            if catchup:
                await h.peer_send(during)
                await h.peer_settle()
            await live.start(cursor)
            if catchup:
                history = texts(live.connector, live.snapshot.history if live.snapshot else ())
                if during not in history:  # some servers deliver what waited for us live instead
                    await live.wait_text(during)
            after = unique("after restart")
            await h.peer_send(after)
            await live.wait_text(after)
        finally:
            await live.stop()

    # --- catch-up ------------------------------------------------------------------------------------

    async def test_catch_up_through_sync_state(self, connector_harness: ConnectorHarness) -> None:
        h = connector_harness
        connector = await h.build_connector()
        live = await Live(connector).start()
        seen = unique("seen live")
        await h.peer_send(seen)
        await live.wait_text(seen)
        cursor = live.snapshot.cursor if live.snapshot else None
        await live.stop()
        missed = [unique(f"missed {i}") for i in range(3)]
        for text in missed:
            await h.peer_send(text)
        await h.peer_settle()
        await connector.connect()
        try:
            snapshot = await connector.sync_state(cursor)
        finally:
            await connector.disconnect()
        history = texts(connector, snapshot.history)
        if not connector.capabilities.history_catchup:
            assert not snapshot.complete, "without history_catchup a snapshot cannot be complete"
            return
        assert [t for t in history if t in missed] == missed, history

    # --- conversion ----------------------------------------------------------------------------------

    async def test_sample_payloads_convert(self, connector_harness: ConnectorHarness) -> None:
        h = connector_harness
        account = (await h.build_connector()).ctx.account
        samples = h.sample_payloads()
        assert samples, "the harness must give sample payloads"
        produced: list[Event] = []
        for sample in samples:
            events = h.connector_class.convert(sample, account)
            check_events(events, h.connector_class.network, account)
            produced += events
        assert any(isinstance(e, Message) for e in produced), "no sample converts to a Message"

    async def test_convert_fuzz(self, connector_harness: ConnectorHarness) -> None:
        h = connector_harness
        cls = h.connector_class
        account = (await h.build_connector()).ctx.account

        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(mutations(h.sample_payloads()))
        def convert_never_crashes(payload: Any) -> None:
            try:
                events = cls.convert(payload, account)
            except MalformedPayload:
                return
            check_events(events, cls.network, account)

        convert_never_crashes()
