"""Contract tests for the keyed-state and settings pieces of the connector SDK, against the real server.

A connector package adds them next to ``ConnectorContract``, with the same ``connector_harness``::

    from msgr_bridge.testing.contract_state import StateContract

    class TestStateContract(StateContract):
        pass

- **State stays bounded, across a restart.** What a connector keeps in ``ctx.state`` must not grow with
  the messages it sees: plain keys are a fixed few (cursors, tokens), anything per message lives in a
  bounded map (``ctx.state.map(name, max_entries=N)``) and stays within its bound. A second connector on
  the same state (a restart) starts from it and still receives.
- **Ids outlive a restart.** What a connector needs to edit its own message or react to someone's (a
  room's stanza-id, our reaction's event id) is in ``ctx.state`` or the server, not only in memory: a
  connector restarted on the same state edits a message sent before, and removes a reaction added before.
- **Settings are validated.** With a ``settings_model``, the settings a link stores validate, and an
  unknown key (a typo) is refused with a ``ConfigError`` naming it.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..errors import ConfigError
from ..schema import ReactionAction
from ..sdk.settings import settings_model_of, validate_settings
from .contract import out, unique
from .fakes import MemoryStateStore
from .harness import ConnectorHarness, Live

MESSAGES = 12
"""Messages per round: enough to show growth per message, few enough for a slow server."""


def _shape(state: MemoryStateStore) -> tuple[set[str], dict[str, tuple[int, int]]]:
    """(the plain keys, each map's (size, bound))."""
    maps = {name: (len(m.entries), m.max_entries) for name, m in state.maps.items()}
    return set(state.values), maps


async def _round(live: Live, h: ConnectorHarness, label: str) -> None:
    texts = [f"{label} {i}" for i in range(MESSAGES)]
    for text in texts:
        await h.peer_send(text)
    await live.wait_text(texts[-1])


class StateContract:
    """Keyed state and typed settings; needs a ``connector_harness`` fixture (see ``ConnectorContract``)."""

    async def test_state_does_not_grow_with_messages_and_survives_a_restart(
        self, connector_harness: ConnectorHarness
    ) -> None:
        h = connector_harness
        state = MemoryStateStore()
        async with Live(await h.build_connector(state=state)) as live:
            await _round(live, h, "first round")
            keys_after_one, _maps = _shape(state)
            await _round(live, h, "second round")
            keys_after_two, maps = _shape(state)
        assert keys_after_two == keys_after_one, (
            "plain state keys grew with the messages seen: keep per-message state in a bounded map"
        )
        for name, (size, bound) in maps.items():
            assert size <= bound, f"map {name!r} holds {size} entries, over its bound of {bound}"
        async with Live(await h.build_connector(state=state)) as again:  # a restart on the same state
            await _round(again, h, "after the restart")
        assert _shape(state)[0] == keys_after_two

    async def test_settings_refuse_an_unknown_key(self, connector_harness: ConnectorHarness) -> None:
        h = connector_harness
        model = settings_model_of(h.connector_class)
        if model is None:
            pytest.skip("the connector declares no settings_model")
        result = await h.link()
        network = h.connector_class.network
        stored: dict[str, Any] = {**h.link_settings(), **result.settings}
        validate_settings(model, stored, network=network)
        with pytest.raises(ConfigError, match="no_such_setting"):
            validate_settings(model, {**stored, "no_such_setting": 1}, network=network)

    async def test_a_restarted_connector_edits_and_unreacts_to_earlier_messages(
        self, connector_harness: ConnectorHarness
    ) -> None:
        h = connector_harness
        caps, conv = h.connector_class.capabilities, h.conversation_id
        if not (caps.edits or caps.reactions):
            pytest.skip("the connector declares neither edits nor reactions")
        state = MemoryStateStore()
        mine_text, mine, theirs = unique("mine, before the restart"), None, None
        async with Live(await h.build_connector(state=state)) as live:
            if caps.edits:
                mine = (await live.connector.send_message(conv, out(mine_text))).remote_id
                await h.peer_wait_message(mine_text)
            if caps.reactions:
                text = unique("theirs, before the restart")
                await h.peer_send(text)
                theirs = (await live.wait_text(text)).remote_id
                await live.connector.react(conv, theirs, "👍", ReactionAction.ADD)
                await h.peer_sees_reaction(theirs, "👍", ReactionAction.ADD)
        async with Live(await h.build_connector(state=state)) as again:
            if mine is not None:
                await again.connector.edit(conv, mine, out(mine_text + " (edited)"))
                await h.peer_sees_edit(mine, mine_text + " (edited)")
            if theirs is not None:
                await again.connector.react(conv, theirs, "👍", ReactionAction.REMOVE)
                await h.peer_sees_reaction(theirs, "👍", ReactionAction.REMOVE)
