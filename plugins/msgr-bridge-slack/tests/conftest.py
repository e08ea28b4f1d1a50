"""Fixtures: a fake Slack (``msgr_bridge.testing.fakes.slack``) with a workspace of two people, ``me`` (the
account under test) and ``bob``, who share ``#general`` (helpers in ``slack_world.py``)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from msgr_bridge.testing.fakes.slack import FakeSlack

sys.path.insert(0, str(Path(__file__).parent))  # tests import their helpers as `slack_world`

from slack_world import Slack


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    async with FakeSlack() as fake:
        ws = fake.workspace
        me, bob = ws.add_user("me", "Me Myself"), ws.add_user("bob", "Bob Builder")
        general = ws.create_channel("general", [me.id, bob.id])
        bob_web = AsyncWebClient(token=ws.issue_token(bob.id).value, base_url=fake.base_url)
        yield Slack(
            fake,
            me,
            bob,
            general,
            ws.issue_token(me.id),
            ws.issue_token(me.id, "app"),
            ws.issue_token(me.id, "session"),
            bob_web,
        )
        assert fake.violations == [], "requests Slack's description does not allow"
