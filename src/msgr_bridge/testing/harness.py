"""What a connector package provides to run the contract suite: a ``ConnectorHarness`` for its network.

A harness knows one real network from both sides. It links the account under test (through the
connector's own link flow, with real credentials), plays "the other person" with an independent client on
the same server, names one conversation both can use, and, where it can, stops and starts the server.
``msgr_bridge.testing.contract`` drives it; see that module for the few lines a plugin author writes.

Override what your network needs; the defaults build the connector from the link flow's ``LinkResult``
(exactly what the core stores when a person links an account) and raise ``NotImplementedError`` for the
other person's observations, which the suite only asks for when the connector declares the capability.
``Live`` runs a connector the way the supervisor does (connect, sync, subscribe in a task).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from ..connectors.protocol import Connector, LinkResult, RawPayload, SyncSnapshot
from ..schema import Event, Message, ReactionAction
from .fakes import CollectingSink, make_context

WAIT_S = 20.0
"""How long the suite waits for anything to cross the wire (generous: CI machines are slow)."""


class ConnectorHarness:
    """One network, seen from the bridge and from the other person. Subclass it per connector package.

    Attributes a subclass sets: ``connector_class`` (class level), ``conversation_id`` (in ``start``:
    the shared conversation as the connector names it), ``can_restart`` (True when ``stop_server`` and
    ``start_server`` work).
    """

    connector_class: ClassVar[type[Connector]]
    can_restart: ClassVar[bool] = False
    conversation_id: str = ""

    def __init__(self) -> None:
        self._link_result: LinkResult | None = None

    # --- setup -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the accounts, start the other person's client and the shared conversation."""

    async def aclose(self) -> None:
        """Stop the other person's client (connectors are stopped by the suite itself)."""

    # --- linking -----------------------------------------------------------------------------------

    def link_settings(self) -> Mapping[str, Any]:
        """The operator's network defaults given to ``link_flow`` (server address and the like)."""
        return {}

    def link_answers(self) -> Mapping[str, str]:
        """A person's answers that link the account under test (real, valid credentials)."""
        raise NotImplementedError

    def bad_link_answers(self) -> Mapping[str, str]:
        """Answers the real server refuses (a wrong password): the flow must raise AuthenticationFailed."""
        raise NotImplementedError

    async def link(self) -> LinkResult:
        """Run the connector's link flow once with ``link_answers`` (cached for this harness)."""
        if self._link_result is None:
            flow = self.connector_class.link_flow(self.link_settings())
            await flow.start()
            result = await flow.submit(self.link_answers())
            if not isinstance(result, LinkResult):
                raise AssertionError(f"the link flow asked for another step: {result!r}")
            self._link_result = result
        return self._link_result

    async def build_connector(self, *, state: Any = None) -> Connector:
        """A connector for the linked account, with a ``CollectingSink`` and in-memory secrets and state."""
        result = await self.link()
        ctx = make_context(
            self.connector_class.network,
            remote_user_id=result.remote_user_id,
            settings=result.settings,
            secrets=result.secrets,
            sink=CollectingSink(),
            state=state,
        )
        return self.connector_class(ctx)

    # --- the other person --------------------------------------------------------------------------

    async def peer_send(self, text: str) -> str | None:
        """The other person sends ``text`` into the conversation; returns its remote id when known."""
        raise NotImplementedError

    async def peer_settle(self) -> None:
        """Return once the server has processed everything the other person sent (e.g. one round trip)."""

    async def peer_wait_message(self, text: str) -> str:
        """Wait until a message from the account under test containing ``text`` reaches the other person;
        return the text as received."""
        raise NotImplementedError

    async def peer_sees_edit(self, target_id: str, text: str) -> None:
        raise NotImplementedError("declare edits=False or make the harness observe edits")

    async def peer_sees_delete(self, target_id: str) -> None:
        raise NotImplementedError("declare deletes=False or make the harness observe deletes")

    async def peer_sees_reaction(self, target_id: str, emoji: str, action: ReactionAction) -> None:
        raise NotImplementedError("declare reactions=False or make the harness observe reactions")

    async def peer_sees_read(self, up_to_id: str) -> None:
        raise NotImplementedError("declare read_receipts=False or make the harness observe receipts")

    async def peer_sees_typing(self, active: bool) -> None:
        raise NotImplementedError("declare typing=False or make the harness observe typing")

    # --- the server --------------------------------------------------------------------------------

    async def stop_server(self) -> None:
        """Stop the server (connections drop). Only called when ``can_restart``."""
        raise NotImplementedError

    async def start_server(self) -> None:
        """Start it again on the same address and reconnect the other person."""
        raise NotImplementedError

    # --- payloads ----------------------------------------------------------------------------------

    def sample_payloads(self) -> Sequence[RawPayload]:
        """Well-formed raw payloads as the connector pushes them (the seeds of the fuzz test)."""
        raise NotImplementedError


class Live:
    """A connector driven like the supervisor does: ``connect -> sync_state -> subscribe`` in a task."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.task: asyncio.Task[None] | None = None
        self.snapshot: SyncSnapshot | None = None

    @property
    def sink(self) -> CollectingSink:
        sink = self.connector.ctx.sink
        assert isinstance(sink, CollectingSink), "the harness must build connectors with a CollectingSink"
        return sink

    async def start(self, cursor: str | None = None) -> Live:
        await self.connector.connect()
        self.snapshot = await self.connector.sync_state(cursor)
        self.task = asyncio.create_task(self.connector.subscribe())
        # Let subscribe() begin before anything can disconnect: the other tests are about what happens
        # once it runs. A disconnect before its first step is a case of its own
        # (ConnectorContract.test_disconnect_before_subscribe_runs), which every shipped connector passes.
        await asyncio.sleep(0)
        return self

    async def stop(self) -> BaseException | None:
        """Disconnect and wait for ``subscribe`` to end; returns what it raised (None when it returned)."""
        await self.connector.disconnect()
        task, self.task = self.task, None
        if task is None:
            return None
        async with asyncio.timeout(WAIT_S):
            results = await asyncio.gather(task, return_exceptions=True)
        return results[0] if isinstance(results[0], BaseException) else None

    def events(self, payloads: Sequence[RawPayload] | None = None) -> list[Event]:
        account = self.connector.ctx.account
        source = self.sink.payloads if payloads is None else payloads
        return [e for p in source for e in self.connector.convert(p, account)]

    async def wait_event(self, predicate: Callable[[Event], bool], timeout: float = WAIT_S) -> Event:
        """The first converted inbound event matching ``predicate`` (waits for more payloads if needed)."""
        account = self.connector.ctx.account

        def matches(payload: RawPayload) -> bool:
            return any(predicate(e) for e in self.connector.convert(payload, account))

        payload = await self.sink.wait_for(matches, timeout)
        return next(e for e in self.connector.convert(payload, account) if predicate(e))

    async def wait_text(self, text: str) -> Message:
        event = await self.wait_event(lambda e: isinstance(e, Message) and e.text == text)
        assert isinstance(event, Message)
        return event

    async def __aenter__(self) -> Live:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.stop()
