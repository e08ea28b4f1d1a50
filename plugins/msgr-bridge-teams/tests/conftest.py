"""Fixtures for the Teams connector tests: the wire-level fake of the identity platform and Graph
(``msgr_bridge.testing.fakes.teams``), and a linked account on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from msgr_bridge_teams.link import TeamsLinkFlow

from msgr_bridge.connectors.protocol import LinkResult
from msgr_bridge.testing.fakes import make_context
from msgr_bridge.testing.fakes.teams import FakeTeams


class Tenant:
    """The fake with two people and a 1:1 chat between them; ``alice`` is the account under test."""

    def __init__(self, fake: FakeTeams) -> None:
        self.fake = fake
        self.alice = fake.add_user("alice", "Alice")
        self.bob = fake.add_user("bob", "Bob")
        self.chat = fake.add_chat([self.alice, self.bob])

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "client_id": self.fake.client_id,
            "tenant": self.fake.tenant_id,
            "authority_host": self.fake.base_url,
            "graph_url": self.fake.graph_url,
            "ca_file": str(self.fake.ca_file),
            "poll_min_s": 0.1,
            "poll_max_s": 0.5,
            **extra,
        }

    async def link(self, **extra: Any) -> LinkResult:
        flow = TeamsLinkFlow(self.settings(**extra))
        await flow.start()
        self.fake.identity.approve_pending(self.alice)
        result = await flow.submit({})
        assert isinstance(result, LinkResult)
        return result

    async def context(self, result: LinkResult | None = None, **kw: Any) -> Any:
        result = result or await self.link()
        return make_context(
            "teams",
            remote_user_id=result.remote_user_id,
            settings=result.settings,
            secrets=result.secrets,
            **kw,
        )


@pytest.fixture
async def fake() -> AsyncIterator[FakeTeams]:
    async with FakeTeams() as started:
        yield started
    assert started.refused == [], f"requests Graph would refuse: {started.refused}"


@pytest.fixture
def tenant(fake: FakeTeams) -> Tenant:
    return Tenant(fake)
