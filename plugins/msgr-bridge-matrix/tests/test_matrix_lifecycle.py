"""Lifecycle edges of the Matrix connector against a real Synapse: a stop that overtakes ``subscribe()``."""

from __future__ import annotations

import asyncio

import pytest
from matrix_peer import Peer, Running, make_connector, wait_event
from mautrix.types import RoomID

from msgr_bridge.errors import PermanentError
from msgr_bridge.schema import Message
from msgr_bridge.testing.synapse import SynapseServer


async def test_disconnect_before_subscribe_starts_ends_it_quietly(
    synapse: SynapseServer, me: Peer, other: Peer
) -> None:
    """connect -> subscribe task -> stop at once: the contract wants ``subscribe()`` to return normally
    after ``disconnect()``, even when the disconnect ran before the task's first step."""
    room = await other.room_with(me, direct=True)
    connector, sink = make_connector(synapse, me)
    await connector.connect()
    task = asyncio.create_task(connector.subscribe())  # not started yet: no await in between
    await connector.disconnect()
    await asyncio.wait_for(task, 10)  # returns normally: raised "not connected" before the fix
    assert sink.payloads == []

    # the same instance connects and subscribes again (the stop did not stick)
    await connector.connect()
    running = Running(connector, sink, asyncio.create_task(connector.subscribe()))
    try:
        live = str(await other.client.send_text(RoomID(room), "after the quick stop"))
        await wait_event(running, lambda e: isinstance(e, Message) and e.remote_id == live)
    finally:
        await running.stop()


async def test_subscribe_without_connect_still_fails(synapse: SynapseServer, me: Peer) -> None:
    """Only a stop ends ``subscribe()`` quietly; never having connected is still a caller error."""
    connector, _ = make_connector(synapse, me)
    with pytest.raises(PermanentError, match="not connected"):
        await connector.subscribe()
