import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# The helpers sit next to this file; tests/ is not a package (so it cannot clash with other plugins' tests).
sys.path.insert(0, str(Path(__file__).parent))

from matrix_peer import Peer, Running, make_connector, start

from msgr_bridge.testing.synapse import SynapseServer, synapse_fixture

synapse = pytest.fixture(scope="session")(synapse_fixture)


@pytest.fixture
async def me(synapse: SynapseServer) -> AsyncIterator[Peer]:
    """The bridged account (its own client here only joins rooms, as the user would in another app)."""
    peer = await Peer.create(synapse, "me", "Me Myself")
    yield peer
    await peer.close()


@pytest.fixture
async def other(synapse: SynapseServer) -> AsyncIterator[Peer]:
    """The other person: an independent real mautrix client."""
    peer = await Peer.create(synapse, "bob", "Bob")
    yield peer
    await peer.close()


@pytest.fixture
async def running(synapse: SynapseServer, me: Peer) -> AsyncIterator[Running]:
    connector, sink = make_connector(synapse, me)
    run = await start(connector, sink)
    yield run
    await run.stop()
