"""The contract suite itself: it has teeth (a dishonest connector fails it) and its tools behave."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest
from _pytest.outcomes import Failed
from hypothesis import given, settings
from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork

from msgr_bridge.connectors.protocol import RawPayload
from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import Account, Capabilities, Message, ReactionAction, Sender
from msgr_bridge.testing.contract import ConnectorContract, _apply, check_events, mutations
from msgr_bridge.testing.harness import ConnectorHarness

ACCOUNT = Account(id="a1", network="loopback", remote_user_id="alice")
SAMPLE = {"type": "message", "id": "m1", "sender": "bob", "conversation": "g1", "ts": 1.0, "text": "hi"}


class TypingWithoutSaying(LoopbackConnector):
    """Dishonest: types on the wire while declaring that it cannot."""

    capabilities: ClassVar[Capabilities] = LoopbackConnector.capabilities.model_copy(update={"typing": False})

    async def set_typing(self, conversation_id: str, active: bool) -> None:
        self.net.typing(conversation_id, self.me, active)


class DeafToEdits(LoopbackConnector):
    """Dishonest: declares edits but never puts them on the wire."""

    async def edit(self, conversation_id: str, target_id: str, message: Any) -> Any:
        return await self.send_message(conversation_id, message)


class CrashingConvert(LoopbackConnector):
    @staticmethod
    def convert(payload: RawPayload, account: Account) -> Sequence[Any]:
        return [payload["text"].upper()]  # KeyError or AttributeError on bad input, and not events


class MiniHarness(ConnectorHarness):
    """Just enough of a loopback harness to drive single contract tests."""

    def __init__(self, cls: type[LoopbackConnector]) -> None:
        super().__init__()
        self.connector_class = cls  # type: ignore[misc]
        self.name = f"contract-self-{uuid.uuid4().hex[:8]}"
        self.net = LoopbackNetwork.get(self.name)
        self.net.add_user("alice", password="pw")
        self.net.add_user("bob", password="pw")
        self.net.create_group("g1", "G", ["alice", "bob"])
        self.conversation_id = "g1"

    def link_settings(self) -> Mapping[str, Any]:
        return {"network": self.name}

    def link_answers(self) -> Mapping[str, str]:
        return {"user_id": "alice", "password": "pw"}

    async def peer_wait_message(self, text: str) -> str:
        return next(p["text"] for p in self.net.log if p["type"] == "message" and text in p["text"])

    async def peer_sees_edit(self, target_id: str, text: str) -> None:
        assert any(p["type"] == "edit" and p["target"] == target_id for p in self.net.log), "no edit seen"

    async def peer_send(self, text: str) -> str | None:
        return str(self.net.post("g1", "bob", text)["id"])

    async def peer_sees_reaction(self, target_id: str, emoji: str, action: ReactionAction) -> None:
        wanted = (target_id, emoji, action.value)
        assert any(
            p["type"] == "reaction" and (p["target"], p["emoji"], p["action"]) == wanted for p in self.net.log
        )

    def sample_payloads(self) -> Sequence[RawPayload]:
        return [{**SAMPLE, "conversation": "g1"}]


async def test_undeclared_capability_that_works_fails_the_suite(harness_for: Any) -> None:
    with pytest.raises(Failed, match="DID NOT RAISE"):
        await ConnectorContract().test_capability(harness_for(TypingWithoutSaying), "typing")


async def test_declared_capability_the_peer_never_sees_fails_the_suite(harness_for: Any) -> None:
    with pytest.raises(AssertionError, match="no edit seen"):
        await ConnectorContract().test_capability(harness_for(DeafToEdits), "edits")


async def test_an_honest_connector_passes_the_same_tests(harness_for: Any) -> None:
    await ConnectorContract().test_capability(harness_for(LoopbackConnector), "edits")
    await ConnectorContract().test_capability(harness_for(TypingWithoutSaying), "reactions")


async def test_a_crashing_convert_fails_the_fuzz_test(harness_for: Any) -> None:
    with pytest.raises((KeyError, AttributeError, AssertionError, TypeError, ExceptionGroup)):
        await ConnectorContract().test_convert_fuzz(harness_for(CrashingConvert))


def test_check_events_refuses_events_of_another_account() -> None:
    event = Message(
        network="loopback", account_id="someone-else", conversation_id="g1", remote_id="m1",
        sender=Sender(user_id="bob"), text="hi",
    )  # fmt: skip
    with pytest.raises(AssertionError):
        check_events([event], "loopback", ACCOUNT)
    with pytest.raises(AssertionError):
        check_events("not a list", "loopback", ACCOUNT)
    check_events([event.model_copy(update={"account_id": "a1"})], "loopback", ACCOUNT)


def test_apply_removes_and_replaces_and_skips_vanished_paths() -> None:
    nested = {"a": {"b": [1, 2]}, "c": 3}
    assert _apply(nested, [(("a", "b", 0), False, "x")]) == {"a": {"b": ["x", 2]}, "c": 3}
    assert _apply(nested, [(("a",), True, None), (("a", "b"), False, 1)]) == {"c": 3}
    assert nested == {"a": {"b": [1, 2]}, "c": 3}  # the sample itself is never changed


@settings(max_examples=200, deadline=None)
@given(mutations([SAMPLE]))
def test_mutations_stay_json_and_loopback_convert_survives_them(payload: Any) -> None:
    try:
        events = LoopbackConnector.convert(payload, ACCOUNT)
    except MalformedPayload:
        return
    check_events(events, "loopback", ACCOUNT)


def test_importing_the_pytest_plugin_is_cheap_and_starts_nothing() -> None:
    code = (
        "import sys, msgr_bridge.testing.pytest_plugin as p\n"
        "heavy = {'hypothesis', 'slixmpp', 'mautrix', 'bottom', 'msgr_bridge.testing.contract'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "print(sorted(n for n in ('prosody', 'ngircd', 'synapse', 'openbao_server') if hasattr(p, n)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded, fixtures = result.stdout.splitlines()
    assert loaded == "[]"
    assert fixtures == "['ngircd', 'openbao_server', 'prosody', 'synapse']"


def test_server_fixtures_are_registered(request: pytest.FixtureRequest) -> None:
    manager = request.session._fixturemanager
    for name in ("prosody", "ngircd", "synapse", "openbao_server", "collecting_sink", "media"):
        assert manager.getfixturedefs(name, request.node), name
