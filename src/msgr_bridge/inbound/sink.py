"""The door a connector pushes raw payloads through: onto the bus, keyed by account.

The connector's task is the only publisher for its account, so the bus keeps the account's (and so each of
its conversations') order. ``push`` waits when the pipeline is behind (backpressure); it never drops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..bus import Bus, topic
from ..connectors.protocol import Ack, RawPayload
from ..observability import tracing
from ..schema import Account


@dataclass(frozen=True, slots=True)
class RawInbound:
    """One raw payload on its way through the inbound pipeline."""

    account: Account
    payload: RawPayload
    ack: Ack | None = None
    received_ns: int = field(default_factory=time.perf_counter_ns)
    """When the bridge received it (monotonic), for receipt-to-notification latency."""
    source: str = "live"
    """``live`` from subscribe(), ``sync`` from catch-up history."""
    trace: tracing.Carrier | None = None
    """The payload's trace (its ``inbound.receive`` span) while tracing is on."""


def inbound_topic(tenant: str, network: str) -> str:
    return topic(tenant, network, "inbound")


class AccountSink:
    """``InboundSink`` for one account."""

    def __init__(self, bus: Bus, account: Account, *, source: str = "live") -> None:
        self._bus = bus
        self._account = account
        self._topic = inbound_topic(account.tenant, account.network)
        self._source = source

    async def push(self, payload: RawPayload, *, ack: Ack | None = None) -> None:
        if not tracing.enabled():
            item = RawInbound(self._account, payload, ack, source=self._source)
            await self._bus.publish(self._topic, item, key=self._account.id)
            return
        attributes = {"msgr.network": self._account.network, "msgr.account": self._account.id}
        with tracing.span("inbound.receive", root=True, attributes=attributes) as s:
            item = RawInbound(self._account, payload, ack, source=self._source, trace=tracing.carrier(s))
            await self._bus.publish(self._topic, item, key=self._account.id)  # the wait is backpressure
