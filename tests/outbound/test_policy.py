"""The policy engine against a table of messages that must pass, be denied, be held or be redacted."""

from __future__ import annotations

from typing import Any

import pluggy
import pytest

from msgr_bridge import hookspecs
from msgr_bridge.errors import ConfigError, PolicyDenied
from msgr_bridge.outbound.policy import Decision, PolicyAction, PolicyEngine, PolicyRequest
from msgr_bridge.outbound.policy_rules import SendCapRule, luhn_ok, rules_from_config
from msgr_bridge.schema import Attachment, OutboundMessage

CONFIG: dict[str, Any] = {
    "dlp": {
        "builtin": [
            "card",
            "github",
            "slack",
            "stripe",
            {"name": "aws", "action": "deny"},
            {"name": "private_key", "action": "deny"},
        ],
        "action": "redact",
        "keywords": ["Project Nightingale"],
        "patterns": [
            {
                "name": "confidential",
                "regex": r"(?i)\bconfidential\b",
                "action": "hold",
                "label": "confidential marker",
            }
        ],
    },
    "attachments": {"allow": ["image/*", "application/pdf"], "deny": ["image/svg+xml"], "max_size": 1000},
    "destinations": [
        {"tenant": "acme", "users": ["*"], "networks": ["slack"], "conversations": ["C-general", "C-team-*"]},
        {"tenant": "acme", "users": ["boss"], "networks": ["*"], "conversations": ["*"]},
    ],
}

GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
STRIPE = "sk_live_" + "51HxYz" + "AbCdEfGhIjKlMnOpQrStUv"
AWS = "AKIAIOSFODNN7EXAMPLE"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"


def req(
    text: str = "",
    *,
    tenant: str = "default",
    user: str = "alice",
    network: str = "slack",
    conversation: str = "C-general",
    attachments: tuple[Attachment, ...] = (),
    formatted: str | None = None,
) -> PolicyRequest:
    return PolicyRequest(
        tenant=tenant,
        user=user,
        account_id="acct-1",
        network=network,
        conversation_id=conversation,
        message=OutboundMessage(txn_id="txn-1", text=text, formatted=formatted, attachments=attachments),
    )


@pytest.fixture
def engine() -> PolicyEngine:
    return PolicyEngine(rules_from_config(CONFIG))


@pytest.mark.parametrize(
    "text",
    [
        "hello there",
        "call me on +1 415 555 0100",
        "order 4111 1111 1111 1112 shipped",  # near miss: fails Luhn
        "ref 12345678901234",  # 14 digits, fails Luhn
        "invoice 1234567890123",  # 13 digits, fails Luhn
        "4111 1111 1111",  # too short to be a card
        "ghp_tooShort and xoxb- and sk_test_abcdefghijklmnopqrstuvwx",
        "akiaiosfodnn7example",  # lowercase: not a key id
        "BEGIN PRIVATE KEY without the dashes",
        "nightingales sing at night",
    ],
)
async def test_messages_that_pass(engine: PolicyEngine, text: str) -> None:
    outcome = await engine.evaluate(req(text))
    assert outcome.action is PolicyAction.ALLOW, outcome.decisions
    assert outcome.request.message.text == text
    assert [d.rule for d in outcome.decisions] == ["dlp", "attachments", "destinations"]


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (f"my key is {AWS} ok", "AWS access key"),
        (f"here:\n{PEM}\n", "private key"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn", "private key"),
    ],
)
async def test_messages_that_are_denied(engine: PolicyEngine, text: str, label: str) -> None:
    outcome = await engine.evaluate(req(text))
    assert outcome.action is PolicyAction.DENY
    assert label in outcome.reason
    assert AWS not in outcome.reason and "MIIEow" not in outcome.reason
    assert [d.rule for d in outcome.decisions] == ["dlp"]  # evaluation stops at a denial
    with pytest.raises(PolicyDenied) as info:
        outcome.raise_if_denied()
    assert info.value.rule == "dlp" and info.value.reason == outcome.reason


@pytest.mark.parametrize(
    ("text", "secret", "tag"),
    [
        ("pay with 4111 1111 1111 1111 please", "4111 1111 1111 1111", "[redacted card number]"),
        ("card 5500-0000-0000-0004.", "5500-0000-0000-0004", "[redacted card number]"),
        ("amex 378282246310005", "378282246310005", "[redacted card number]"),
        (f"token {GITHUB}", GITHUB, "[redacted GitHub token]"),
        (f"bot {SLACK} here", SLACK, "[redacted Slack token]"),
        (f"stripe={STRIPE}", STRIPE, "[redacted Stripe secret key]"),
        ("about project  NIGHTINGALE today", "project  NIGHTINGALE", "[redacted keyword]"),
    ],
)
async def test_messages_that_are_redacted(engine: PolicyEngine, text: str, secret: str, tag: str) -> None:
    outcome = await engine.evaluate(req(text, formatted=f"<b>{text}</b>"))
    assert outcome.action is PolicyAction.REDACT and outcome.allowed
    sent = outcome.request.message
    assert secret not in sent.text and tag in sent.text
    assert sent.formatted is not None and secret not in sent.formatted and tag in sent.formatted
    assert sent.txn_id == "txn-1"
    dlp = outcome.decisions[0]
    assert dlp.action is PolicyAction.REDACT and secret not in repr(dlp.audit_details())


async def test_only_the_valid_card_is_redacted_next_to_a_near_miss(engine: PolicyEngine) -> None:
    outcome = await engine.evaluate(req("old 4111 1111 1111 1112, new 4111 1111 1111 1111"))
    assert outcome.request.message.text == "old 4111 1111 1111 1112, new [redacted card number]"


async def test_a_confidential_marker_is_held_for_confirmation(engine: PolicyEngine) -> None:
    outcome = await engine.evaluate(req("CONFIDENTIAL: q3 numbers"))
    assert outcome.action is PolicyAction.HOLD and not outcome.allowed
    assert "confirm" in outcome.reason
    outcome.raise_if_denied()  # a hold is not a denial


@pytest.mark.parametrize(
    ("attachment", "allowed"),
    [
        (Attachment(name="cat.png", mime_type="image/png", size=500), True),
        (Attachment(name="doc.pdf", mime_type="application/pdf"), True),
        (Attachment(name="x.svg", mime_type="image/svg+xml", size=10), False),
        (Attachment(name="run.exe", mime_type="application/x-msdownload", size=10), False),
        (Attachment(name="big.png", mime_type="IMAGE/PNG", size=1001), False),
    ],
)
async def test_attachment_rules(engine: PolicyEngine, attachment: Attachment, allowed: bool) -> None:
    outcome = await engine.evaluate(req("see file", attachments=(attachment,)))
    assert outcome.allowed is allowed
    if not allowed:
        assert outcome.deciding is not None and outcome.deciding.rule == "attachments"
        assert outcome.reason


@pytest.mark.parametrize(
    ("tenant", "user", "network", "conversation", "allowed"),
    [
        ("acme", "alice", "slack", "C-general", True),
        ("acme", "alice", "slack", "C-team-ops", True),
        ("acme", "alice", "slack", "C-board", False),
        ("acme", "alice", "xmpp", "C-general", False),
        ("acme", "boss", "xmpp", "anything", True),
        ("other-workspace", "alice", "irc", "#anywhere", True),  # no entries: unaffected
    ],
)
async def test_destination_rules(
    engine: PolicyEngine, tenant: str, user: str, network: str, conversation: str, allowed: bool
) -> None:
    outcome = await engine.evaluate(
        req("hi", tenant=tenant, user=user, network=network, conversation=conversation)
    )
    assert outcome.allowed is allowed
    if not allowed:
        assert f"{conversation} on {network}" in outcome.reason


async def test_send_caps_count_only_sends_that_go_ahead() -> None:
    now = [0.0]
    cap = SendCapRule(max_sends=2, window_s=60, clock=lambda: now[0])
    engine = PolicyEngine(
        [*rules_from_config({"dlp": {"builtin": [{"name": "aws", "action": "deny"}]}}), cap]
    )
    assert (await engine.evaluate(req("one"))).allowed
    assert not (await engine.evaluate(req(f"leak {AWS}"))).allowed  # denied earlier: does not use the quota
    assert (await engine.evaluate(req("two"))).allowed
    third = await engine.evaluate(req("three"))
    assert third.action is PolicyAction.DENY and "2 messages in the last 60 seconds" in third.reason
    assert (await engine.evaluate(req("from bob", user="bob"))).allowed  # per user
    now[0] = 61.0
    assert (await engine.evaluate(req("later"))).allowed


class Shout:
    """A plugin rule: redacts by upper-casing, to show later rules see the transformed request."""

    name = "shout"

    async def check(self, request: PolicyRequest) -> Decision:
        msg = request.message.model_copy(update={"text": request.message.text.upper()})
        return Decision.redact(self.name, request.with_message(msg), "shouted")


class Seen:
    name = "seen"

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def check(self, request: PolicyRequest) -> Decision:
        self.texts.append(request.message.text)
        return Decision.allow(self.name)


class Broken:
    name = "broken"

    async def check(self, request: PolicyRequest) -> Decision:
        raise RuntimeError("plugin bug")


async def test_rules_from_a_plugin_hook_run_in_order_and_see_redactions() -> None:
    seen = Seen()

    class Plugin:
        @hookspecs.hookimpl
        def register_policy_rules(self, config: Any) -> list[Any]:
            return [Shout(), seen]

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(Plugin())
    engine = PolicyEngine.from_hook_results(
        pm.hook.register_policy_rules(config={}), rules_from_config(CONFIG)
    )
    outcome = await engine.evaluate(req("card 4111111111111111"))
    assert seen.texts == ["CARD 4111111111111111"]
    assert outcome.request.message.text == "CARD [redacted card number]"
    assert [(d.rule, d.action) for d in outcome.decisions] == [
        ("shout", PolicyAction.REDACT),
        ("seen", PolicyAction.ALLOW),
        ("dlp", PolicyAction.REDACT),
        ("attachments", PolicyAction.ALLOW),
        ("destinations", PolicyAction.ALLOW),
    ]


async def test_a_failing_rule_denies_and_is_recorded() -> None:
    seen = Seen()
    outcome = await PolicyEngine([Broken(), seen]).evaluate(req("hi"))
    assert outcome.action is PolicyAction.DENY and "could not be checked" in outcome.reason
    assert outcome.decisions[0].details == {"error": "RuntimeError"}
    assert seen.texts == []


def test_engine_refuses_non_rules_and_duplicate_names() -> None:
    with pytest.raises(TypeError):
        PolicyEngine([object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="named 'seen'"):
        PolicyEngine([Seen(), Seen()])


@pytest.mark.parametrize(
    "bad",
    [
        {"dlp": {"builtin": ["nope"]}},
        {"dlp": {"action": "allow", "builtin": ["card"]}},
        {"dlp": {"patterns": [{"regex": "("}]}},
        {"dlp": {"patterns": [{"name": "x"}]}},
        {"dlp": {"keywords": ["  "]}},
        {"attachments": {"max_size": -1}},
        {"destinations": [{"users": ["*"]}]},
        {"send_caps": {"max": 0}},
    ],
)
def test_bad_policy_config_is_a_config_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        rules_from_config(bad)


def test_luhn_on_known_numbers() -> None:
    assert all(
        luhn_ok(n) for n in ["4111111111111111", "5500000000000004", "378282246310005", "6011111111111117"]
    )
    assert not any(luhn_ok(n) for n in ["4111111111111112", "12345678901234", "1234567890123"])
