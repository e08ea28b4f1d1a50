"""The built-in policy plugin: ``[policy]`` rules reach the engine through the ``register_policy_rules``
hook on every start, and a broken ``[policy]`` section stops the configuration from loading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from msgr_bridge.config import load_settings
from msgr_bridge.errors import ConfigError
from msgr_bridge.outbound import builtin_policy
from msgr_bridge.outbound.policy import PolicyAction, PolicyEngine, PolicyRequest
from msgr_bridge.plugins import DEFAULT_PLUGINS, PluginManager
from msgr_bridge.schema import Attachment, OutboundMessage

POLICY = """
[policy]
dlp = { builtin = ["card", { name = "aws", action = "deny" }], keywords = ["project nightingale"] }
attachments = { allow = ["image/*"], max_size = 1000 }
destinations = [{ tenant = "acme", networks = ["slack"] }]
send_caps = { max = 2, window_s = 60 }
"""


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("MSGR_BRIDGE"):
            monkeypatch.delenv(name)


def settings_with(text: str) -> object:
    path = Path("bridge.toml")
    path.write_text(text)
    return load_settings(path)


def request(text: str = "", *, tenant: str = "acme", network: str = "slack", **kw: object) -> PolicyRequest:
    return PolicyRequest(
        tenant=tenant,
        user="alice",
        account_id="acct-1",
        network=network,
        conversation_id="C-1",
        message=OutboundMessage(txn_id="t1", text=text, **kw),  # type: ignore[arg-type]
    )


def test_the_plugin_is_a_default_plugin_and_loads() -> None:
    assert "msgr_bridge.outbound.builtin_policy" in DEFAULT_PLUGINS
    registry = PluginManager(allow=[]).load(entry_points=[])
    report = next(r for r in registry.reports if r.name == "msgr_bridge.outbound.builtin_policy")
    assert report.loaded and report.error is None and report.source == "builtin"


def test_configured_rules_come_through_the_hook_in_order() -> None:
    settings = settings_with(POLICY)
    pm = PluginManager(allow=[])
    pm.load(entry_points=[])
    rules = pm.collect_policy_rules(settings)
    assert [r.name for r in rules] == ["dlp", "attachments", "destinations", "send_caps"]
    assert pm.registry.policy_rules == rules


def test_no_policy_section_means_no_rules() -> None:
    pm = PluginManager(allow=[])
    pm.load(entry_points=[])
    assert pm.collect_policy_rules(load_settings()) == []
    assert builtin_policy.register_policy_rules(config=None) == []


async def test_the_engine_built_from_the_hook_applies_the_config() -> None:
    pm = PluginManager(allow=[])
    pm.load(entry_points=[])
    engine = PolicyEngine(pm.collect_policy_rules(settings_with(POLICY)))

    redacted = await engine.evaluate(request("pay with 4111 1111 1111 1111 please"))
    assert redacted.action is PolicyAction.REDACT
    assert "4111" not in redacted.request.message.text
    assert "[redacted card number]" in redacted.request.message.text

    denied = await engine.evaluate(request("key AKIAIOSFODNN7EXAMPLE"))
    assert denied.action is PolicyAction.DENY and denied.deciding is not None
    assert "AWS access key" in denied.deciding.reason

    assert (await engine.evaluate(request("to xmpp", network="xmpp"))).action is PolicyAction.DENY
    assert (await engine.evaluate(request("other tenant", tenant="beta", network="xmpp"))).allowed

    big = Attachment(name="x.png", mime_type="image/png", size=5000)
    assert (await engine.evaluate(request("pic", attachments=(big,)))).action is PolicyAction.DENY


def test_a_mapping_config_works_too() -> None:
    rules = builtin_policy.register_policy_rules(config={"policy": {"send_caps": {"max": 1}}})
    assert [r.name for r in rules] == ["send_caps"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[policy]\ndlp = { builtin = ["cards"] }', "unknown detector 'cards'"),
        ('[policy]\ndlp = { action = "allow", keywords = ["x"] }', "is not a DLP action"),
        ("[policy]\ndlp = { patterns = [{ regex = '(' }] }", "not a valid regular expression"),
        ("[policy]\nsend_caps = { max = 0 }", "policy.send_caps needs max"),
        ('[policy]\ndestinations = [{ users = ["*"] }]', "needs a tenant"),
        ('[policy]\nattachments = { max_size = "big" }', "max_size must be a number"),
        ('[policy]\ndlp = { builtin = "card" }', "policy"),
        ("[policy]\nrules = []", "unknown key"),
    ],
)
def test_a_broken_policy_section_is_refused_at_load(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_with(text)
    assert message in str(info.value)
    assert "policy" in str(info.value)
