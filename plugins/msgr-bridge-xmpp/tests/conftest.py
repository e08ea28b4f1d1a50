"""Fixtures: a real Prosody (session), fresh accounts per test, the connector, and "the other person"."""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from slixmpp import JID

from msgr_bridge.testing.prosody import ProsodyServer, start_prosody

sys.path.insert(0, str(Path(__file__).parent))  # tests import their helpers as `xmpp_peer`

from xmpp_peer import Peer, Running, make_connector

_ids = itertools.count(1)


@pytest.fixture(scope="session")
def prosody() -> Iterator[ProsodyServer]:
    server = start_prosody()
    yield server
    server.cleanup()


@pytest.fixture
def users(prosody: ProsodyServer) -> dict[str, tuple[str, str]]:
    """Fresh 'me' (the linked account) and 'bob' (the other person) for each test."""
    n = next(_ids)
    out = {}
    for role in ("me", "bob"):
        user, password = f"{role}{n}", f"{role}{n}-pw"
        prosody.register(user, password)
        out[role] = (prosody.jid(user), password)
    return out


@pytest.fixture
async def bob(prosody: ProsodyServer, users: dict[str, tuple[str, str]]) -> AsyncIterator[Peer]:
    jid, password = users["bob"]
    peer = await Peer(prosody, JID(jid).user, password).start()
    yield peer
    await peer.stop()


@pytest.fixture
async def me(prosody: ProsodyServer, users: dict[str, tuple[str, str]]) -> AsyncIterator[Running]:
    jid, password = users["me"]
    running = await Running(*make_connector(prosody, jid, password)).start()
    yield running
    await running.stop()
