"""The in-memory bus: topics, NATS wildcard semantics, ordering, backpressure, overflow, drain."""

from __future__ import annotations

import re

import anyio
import anyio.lowlevel
import pytest
from anyio import wait_all_tasks_blocked
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from msgr_bridge.bus import Bus, Envelope, MemoryBus, Subscription, matches, topic
from msgr_bridge.errors import BusClosed, BusError

# --- topics and patterns ----------------------------------------------------------------------------------


def test_topic_joins_tokens() -> None:
    assert topic("default", "loopback", "inbound") == "default.loopback.inbound"
    assert topic("t1", "irc", "outbound", "conv-42") == "t1.irc.outbound.conv-42"


@pytest.mark.parametrize(
    "tokens",
    [
        ("", "irc", "inbound"),
        ("default", "irc.net", "inbound"),
        ("default", "*", "inbound"),
        ("default", "irc", ">"),
        ("default", "irc", "in bound"),
        ("default", "irc", "inbound", ""),
        ("default", "irc", "inbound", "a*"),
    ],
)
def test_topic_refuses_bad_tokens(tokens: tuple[str, ...]) -> None:
    with pytest.raises(BusError) as info:
        topic(*tokens)
    assert info.value.hint and "bus.topic()" in info.value.hint


def test_topic_refuses_non_string_token() -> None:
    with pytest.raises(BusError):
        topic("default", 3, "inbound")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("default.irc.inbound", "default.irc.inbound", True),
        ("default.irc.inbound", "default.irc.outbound", False),
        ("default.*.inbound", "default.irc.inbound", True),
        ("default.*.inbound", "default.irc.inbound.x", False),
        ("*.*.*", "a.b.c", True),
        ("*.*.*", "a.b.c.d", False),
        ("default.>", "default.irc.inbound", True),
        ("default.>", "default.irc.inbound.conv.1", True),
        ("default.irc.inbound.>", "default.irc.inbound", False),  # '>' needs at least one token
        ("default.*.inbound.>", "default.irc.inbound.c1", True),
        ("other.>", "default.irc.inbound", False),
        (">", "default.irc.inbound", True),
        ("default.irc", "default.irc.inbound", False),
        ("default.irc.inbound.x", "default.irc.inbound", False),
    ],
)
def test_wildcards_follow_nats_semantics(pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected


@pytest.mark.parametrize("pattern", ["", "a..b", "a.>.b", "a.b*", "a.>x", "a. b", ".a"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    bus = MemoryBus()
    with pytest.raises(BusError):
        bus.subscribe(pattern)


_token = st.sampled_from(["a", "b", "c"])


@given(
    pattern=st.lists(st.sampled_from(["a", "b", "*"]), min_size=1, max_size=4).flatmap(
        lambda p: st.sampled_from([p, [*p, ">"]])
    ),
    subject=st.lists(_token, min_size=3, max_size=6),
)
def test_matching_agrees_with_a_regex_model(pattern: list[str], subject: list[str]) -> None:
    parts = ["[^.]+" if t == "*" else re.escape(t) for t in pattern if t != ">"]
    regex = r"\.".join(parts) + (r"(\.[^.]+)+" if pattern[-1] == ">" else "")
    expected = re.fullmatch(regex, ".".join(subject)) is not None
    assert matches(".".join(pattern), ".".join(subject)) is expected


@pytest.mark.parametrize("bad", ["default.irc", "default.*.inbound", "default..inbound", "default.irc.>"])
async def test_publish_refuses_malformed_topics(bad: str) -> None:
    bus = MemoryBus()
    with pytest.raises(BusError):
        await bus.publish(bad, "x")


# --- delivery and ordering --------------------------------------------------------------------------------


async def test_wildcard_subscribers_receive_matching_topics_only() -> None:
    bus: Bus = MemoryBus()
    everything = bus.subscribe("default.>", name="all")
    inbound = bus.subscribe("default.*.inbound", name="inbound")
    irc = bus.subscribe("default.irc.>", name="irc")
    await bus.publish("default.irc.inbound", 1, key="c1")
    await bus.publish("default.xmpp.inbound", 2)
    await bus.publish("default.irc.outbound", 3)
    await bus.publish("other.irc.inbound", 4)

    assert [e.message for e in await everything.receive_batch()] == [1, 2, 3]
    assert [e.message for e in await inbound.receive_batch()] == [1, 2]
    assert [e.message for e in await irc.receive_batch()] == [1, 3]
    stats = {s.name: s for s in bus.stats()}
    assert stats["all"].delivered == 3 and stats["all"].queued == 0


async def test_envelope_carries_topic_message_and_key() -> None:
    bus = MemoryBus()
    async with bus.subscribe("default.*.inbound") as sub:
        await bus.publish("default.irc.inbound", {"text": "hi"}, key="conv-1")
        env = await sub.__anext__()
    assert env == Envelope("default.irc.inbound", {"text": "hi"}, "conv-1")
    topic_, message, key = env
    assert (topic_, message, key) == ("default.irc.inbound", {"text": "hi"}, "conv-1")


async def test_a_subscriber_only_sees_messages_published_after_it_subscribed() -> None:
    bus = MemoryBus()
    await bus.publish("default.irc.inbound", "before")
    sub = bus.subscribe("default.>")
    await bus.publish("default.irc.inbound", "after")
    assert [e.message for e in await sub.receive_batch()] == ["after"]


async def test_order_is_fifo_per_subscriber_under_backpressure() -> None:
    bus = MemoryBus()
    subs = [bus.subscribe("default.*.inbound", maxsize=2, name=f"s{i}") for i in range(3)]
    received: dict[str, list[int]] = {s.name: [] for s in subs}

    async def consume(sub: Subscription) -> None:
        async for env in sub:
            received[sub.name].append(env.message)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for s in subs:
            tg.start_soon(consume, s)
        for i in range(200):
            await bus.publish("default.irc.inbound" if i % 2 else "default.xmpp.inbound", i, key="c")
        assert await bus.drain(timeout=30) == 0
    for name in received:
        assert received[name] == list(range(200))


async def test_each_publisher_keeps_its_own_order() -> None:
    bus = MemoryBus()
    sub = bus.subscribe("default.>", maxsize=3)
    got: list[tuple[str, int]] = []

    async def publisher(conv: str) -> None:
        for i in range(50):
            await bus.publish(f"default.irc.inbound.{conv}", (conv, i), key=conv)

    async def consume() -> None:
        async for env in sub:
            got.append(env.message)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        async with anyio.create_task_group() as pubs:
            pubs.start_soon(publisher, "a")
            pubs.start_soon(publisher, "b")
        await bus.drain(timeout=30)
    for conv in ("a", "b"):
        assert [i for c, i in got if c == conv] == list(range(50))


# --- backpressure and overflow ----------------------------------------------------------------------------


async def test_block_makes_the_publisher_wait_until_the_subscriber_takes_one() -> None:
    bus = MemoryBus()
    sub = bus.subscribe("default.>", maxsize=1, overflow="block", name="slow")
    await bus.publish("default.irc.inbound", 1)
    done = anyio.Event()

    async def publish_second() -> None:
        await bus.publish("default.irc.inbound", 2)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(publish_second)
        await wait_all_tasks_blocked()
        assert not done.is_set()
        assert bus.stats()[0].queued == 1
        assert (await sub.__anext__()).message == 1
        await done.wait()
    assert (await sub.__anext__()).message == 2
    assert bus.stats()[0].overflowed == 0


async def test_drop_oldest_counts_and_logs_every_overflow() -> None:
    bus = MemoryBus()
    sub = bus.subscribe("default.>", maxsize=3, overflow="drop_oldest", name="live-view")
    with capture_logs() as logs:
        for i in range(10):
            await bus.publish("default.irc.inbound", i)
        [stats] = bus.stats()
        assert (stats.queued, stats.overflowed, stats.delivered) == (3, 7, 0)
        assert [e.message for e in await sub.receive_batch()] == [7, 8, 9]
        await sub.aclose()

    warnings = [e for e in logs if e["event"] == "bus.subscriber_overflow"]
    assert warnings, "an overflow must never be silent"
    assert all(w["log_level"] == "warning" and w["subscriber"] == "live-view" for w in warnings)
    assert warnings[0]["overflowed"] == 1
    # every drop is accounted for across the warnings, and the last one carries the total
    assert sum(w["dropped"] for w in warnings) == 7
    assert warnings[-1]["overflowed"] == 7


async def test_subscribe_validates_queue_options() -> None:
    bus = MemoryBus()
    with pytest.raises(BusError):
        bus.subscribe("default.>", maxsize=0)
    with pytest.raises(BusError):
        bus.subscribe("default.>", overflow="drop_newest")  # type: ignore[arg-type]


# --- unsubscribe and drain --------------------------------------------------------------------------------


async def test_leaving_the_context_unsubscribes() -> None:
    bus = MemoryBus()
    async with bus.subscribe("default.>", name="temp"):
        assert [s.name for s in bus.stats()] == ["temp"]
    assert bus.stats() == []
    await bus.publish("default.irc.inbound", "nobody listens")
    assert bus.published == 0


async def test_drain_lets_subscribers_finish_their_queues_then_ends_their_loops() -> None:
    bus = MemoryBus()
    sub = bus.subscribe("default.>", maxsize=100)
    for i in range(20):
        await bus.publish("default.irc.inbound", i)
    processed: list[int] = []

    async def consume() -> None:
        async for env in sub:
            await anyio.lowlevel.checkpoint()
            processed.append(env.message)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        assert await bus.drain(timeout=30) == 0
    assert processed == list(range(20))
    assert not bus.accepting
    with pytest.raises(BusClosed):
        await bus.publish("default.irc.inbound", "late")
    with pytest.raises(BusClosed):
        bus.subscribe("default.>")
    assert await sub.receive_batch() == []


async def test_drain_waits_for_the_item_in_hand() -> None:
    bus = MemoryBus()
    sub = bus.subscribe("default.>")
    await bus.publish("default.irc.inbound", "slow")
    release = anyio.Event()
    finished: list[str] = []

    async def consume() -> None:
        async for env in sub:
            await release.wait()
            finished.append(env.message)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await wait_all_tasks_blocked()
        drained = anyio.Event()

        async def drain() -> None:
            await bus.drain(timeout=30)
            drained.set()

        tg.start_soon(drain)
        await wait_all_tasks_blocked()
        assert not drained.is_set()
        release.set()
    assert finished == ["slow"]


async def test_drain_waits_for_what_a_consumer_holds_after_asking_for_more() -> None:
    """A pipelined consumer asks for the next batch while it still works on the last one (the inbound
    pipeline commits one batch while it prepares the next): ``hold`` keeps drain waiting for that work."""
    bus = MemoryBus()
    sub = bus.subscribe("default.>")
    await bus.publish("default.irc.inbound", "in hand")
    (env,) = await sub.receive_batch()
    release = sub.hold()
    drained = anyio.Event()

    async def drain() -> None:
        await bus.drain(timeout=30)
        drained.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sub.receive_batch)  # asks for more: the queue is empty, the consumer still busy
        await wait_all_tasks_blocked()
        tg.start_soon(drain)
        await wait_all_tasks_blocked()
        assert not drained.is_set() and env.message == "in hand"
        release()
        release()  # a second call changes nothing
        await drained.wait()
    assert await sub.receive_batch() == []


async def test_drain_timeout_discards_and_reports_what_is_left() -> None:
    bus = MemoryBus()
    bus.subscribe("default.>", maxsize=10, name="stuck")
    bus.subscribe("default.irc.>", maxsize=1, name="blocked")  # nobody consumes: the publisher waits
    for i in range(3):
        await bus.publish("default.xmpp.inbound", i)
    await bus.publish("default.irc.inbound", "a")

    async def publish_blocked() -> None:
        await bus.publish("default.irc.inbound", "b")

    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_blocked)
            await wait_all_tasks_blocked()
            left = await bus.drain(timeout=0.05)
    # "stuck" holds 3 xmpp + "a" + "b" (the blocked publisher delivered to it first), "blocked" holds "a"
    assert left == 6
    discarded = {e["subscriber"]: e["discarded"] for e in logs if e["event"] == "bus.drain_discarded"}
    assert discarded == {"stuck": 5, "blocked": 1}
    assert bus.stats() == []


async def test_drain_with_idle_subscribers_returns_at_once() -> None:
    bus = MemoryBus()
    bus.subscribe("default.>")
    with anyio.fail_after(5):
        assert await bus.drain(timeout=60) == 0
