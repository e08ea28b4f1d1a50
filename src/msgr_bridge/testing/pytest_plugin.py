"""The msgr-bridge pytest plugin (entry point ``pytest11``), active wherever msgr-bridge is installed.

It gives plugin authors the fixtures the project's own tests use. Fixtures that start real servers live in
``msgr_bridge.testing.<server>`` modules and are imported here as they are added.
"""

from __future__ import annotations

import pytest

from .fakes import CollectingSink


@pytest.fixture
def collecting_sink() -> CollectingSink:
    """An inbound sink that records every payload a connector pushes."""
    return CollectingSink()
