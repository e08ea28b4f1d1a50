"""The event bus: in-memory async publish/subscribe behind an interface.

Callers see only ``Bus`` and ``Subscription`` (two Protocols), so a NATS JetStream backend can replace
``MemoryBus`` later without touching them.

Topics are dot-separated, NATS-style: ``{tenant}.{network}.{kind}[.more]``, for example
``default.loopback.inbound``. Build them with ``topic()``, which refuses empty tokens, dots and wildcards
inside a token. Subscription patterns use NATS wildcards with NATS semantics: ``*`` matches exactly one
token, ``>`` (only as the last token) matches one or more remaining tokens. So ``default.*.inbound``
matches ``default.irc.inbound`` but not ``default.irc.inbound.x``, and ``default.>`` matches everything of
the ``default`` tenant but not ``default`` itself. A ``*`` or ``>`` inside a token (``foo*``) is refused
rather than silently taken literally.

Queues and backpressure. Every subscriber has its own bounded queue (``maxsize``) and an overflow policy:

* ``"block"`` (the default): a publisher waits in ``publish`` until the full subscriber takes a message.
  Use it for anything that must not lose messages (persistence, delivery). A slow subscriber slows its
  publishers; it never loses data. Never publish from a subscriber's own loop onto a topic it subscribes
  to with ``"block"``: a full queue would wait on itself.
* ``"drop_oldest"``: the oldest queued message is dropped to make room. Every drop is counted
  (``stats()``) and logged as a ``bus.subscriber_overflow`` warning naming the subscriber and the count
  (the first drop at once, then at most one summary every few seconds, and a last one when it closes).
  Use it for live views (websocket fan-out, typing indicators) where only the latest matters.

Ordering guarantee. Messages published by one task reach each subscriber in the order they were
published (FIFO per publisher, per subscriber), whatever wildcards match. Nothing is promised between two
concurrent publishers. The bridge keeps order per conversation by publishing each conversation's events
from one task (the inbound pipeline runs one task per account). ``key`` is the conversation id: this
backend does not need it, a partitioned backend (JetStream) uses it to keep one conversation in one
partition, so always pass it for conversation events.

Shutdown. ``drain(timeout)`` refuses new publishes (``BusClosed``), lets every subscriber finish what is
queued (their ``async for`` loops end by themselves once their queue is empty) and what it holds (asking
for the next message means the previous one is done; ``hold()`` keeps a batch in hand past that), then
closes. Whatever is
still queued when the timeout expires is discarded, counted in the return value and logged.

Layout: ``protocol`` holds the interface (``Bus``, ``Subscription``, ``Envelope``, ``SubscriberStats``),
``topics`` the topic syntax and wildcard matching, ``memory`` the in-process backend. Import from
``msgr_bridge.bus`` itself: the submodules are an implementation detail.
"""

from __future__ import annotations

from .memory import OVERFLOW_LOG_INTERVAL_S as OVERFLOW_LOG_INTERVAL_S
from .memory import MemoryBus
from .protocol import Bus, Envelope, Overflow, SubscriberStats, Subscription
from .topics import matches, topic

__all__ = [
    "Bus",
    "Envelope",
    "MemoryBus",
    "Overflow",
    "SubscriberStats",
    "Subscription",
    "matches",
    "topic",
]
