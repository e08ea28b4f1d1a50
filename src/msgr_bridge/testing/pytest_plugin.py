"""The msgr-bridge pytest plugin (entry point ``pytest11``), active wherever msgr-bridge is installed.

It gives plugin authors the fixtures the project's own tests use. Nothing starts until a test asks for
it: each server fixture is session-scoped and starts its server on first use, on a random loopback port
in a temp dir, and stops it at the end of the session. Importing this module only imports the standard
library helpers below, so it costs nothing in a test run that uses none of them.

- ``collecting_sink``: an inbound sink that records every payload a connector pushes.
- ``media``: the core's media helper (what a connector gets as ``ctx.media``) over share-link storage in
  the test's ``tmp_path`` (``testing/media.py``: ``temporary_media``; ``chunks_of`` feeds it bytes).
- ``prosody``: a real Prosody (``testing/prosody.py``): ``.register(user, pw)``, ``.jid(user)``,
  ``.connection_settings()``, ``.stop()``/``.start()``.
- ``ngircd``: a real ngIRCd without a server password (``testing/ngircd.py``): ``.host``, ``.port``.
- ``synapse``: a real Synapse with SQLite (``testing/synapse.py``): ``.base_url``,
  ``.register_user(localpart, pw)``; creates ``.venv-synapse`` on first use when it is missing.
- ``openbao_server`` / ``fresh_openbao``: an OpenBao dev server with Transit (``testing/openbao.py``).
- ``s3_server``: a real S3-compatible server (``testing/s3.py``: moto, or ``MSGR_TEST_S3_URL``):
  ``.endpoint_url``, ``.new_bucket()``, ``.client()``, ``.api_settings(bucket, secrets_dir)``.

A ``conftest.py`` fixture of the same name overrides any of these (e.g. an ngIRCd with a password).
The connector contract suite is in ``msgr_bridge.testing.contract`` (not imported here: it needs
hypothesis, a development dependency).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .fakes import CollectingSink
from .ngircd import NgircdServer, running_ngircd
from .openbao import fresh_openbao, openbao_server
from .prosody import ProsodyServer, running_prosody
from .s3 import S3Server, running_s3
from .synapse import SynapseServer, synapse_fixture

if TYPE_CHECKING:
    from ..sdk.media import Media

try:  # the development extra brings pytest-asyncio; its fixture decorator works in strict and auto mode
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - without it, async fixtures run under anyio's pytest plugin
    async_fixture = pytest.fixture  # type: ignore[assignment]

__all__ = [
    "collecting_sink",
    "fresh_openbao",
    "media",
    "ngircd",
    "openbao_server",
    "prosody",
    "s3_server",
    "synapse",
]


@pytest.fixture
def collecting_sink() -> CollectingSink:
    """An inbound sink that records every payload a connector pushes."""
    return CollectingSink()


@async_fixture
async def media(tmp_path: Path) -> AsyncIterator[Media]:
    """The core's media helper over share-link storage in ``tmp_path`` (SQLite ``media.db``, files under
    ``media/``), as ``ctx.media`` gives it to a connector."""
    from .media import temporary_media  # imported on use: it brings the store and aiohttp

    async with temporary_media(tmp_path) as helper:
        yield helper


@pytest.fixture(scope="session")
def prosody() -> Iterator[ProsodyServer]:
    """A real Prosody for the session (XMPP on 127.0.0.1, MUC at ``conference.localhost``, MAM on)."""
    with running_prosody() as server:
        yield server


@pytest.fixture(scope="session")
def ngircd() -> Iterator[NgircdServer]:
    """A real ngIRCd for the session (plain listener on 127.0.0.1, no server password)."""
    with running_ngircd() as server:
        yield server


@pytest.fixture(scope="session")
def synapse() -> Iterator[SynapseServer]:
    """A real Synapse homeserver for the session (client API on 127.0.0.1, SQLite, lifted rate limits)."""
    yield from synapse_fixture()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server for the session (moto on 127.0.0.1 with key checks, or
    ``MSGR_TEST_S3_URL``); each test makes its own bucket with ``.new_bucket()``."""
    with running_s3() as server:
        yield server
