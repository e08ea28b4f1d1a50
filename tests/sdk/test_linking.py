"""Link-flow helpers: reasons from errors with no text, probes closed before the flow ends, and the link
service closing the flow before the account's real connection starts."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel, Field

from msgr_bridge import FormField, LinkResult
from msgr_bridge.errors import AuthenticationFailed, TransientError, describe_error
from msgr_bridge.sdk.linking import SettingsLinkFlow
from msgr_bridge.sdk.settings import OPERATOR_ONLY, OperatorSettingRefused


def _raised(exc: BaseException, cause: BaseException | None = None) -> BaseException:
    try:
        if cause is None:
            raise exc
        raise exc from cause
    except BaseException as caught:
        return caught


def test_describe_error_is_never_empty_and_follows_the_cause() -> None:
    assert "TLS handshake" in describe_error(ssl.SSLError())
    assert "SSLError" in describe_error(ssl.SSLError())
    assert "no answer in time" in describe_error(TimeoutError())
    assert describe_error(ValueError()) == "ValueError (the error gave no detail)"
    chained = _raised(TransientError("cannot connect to irc.example:6697: "), ssl.SSLError())
    assert describe_error(chained).startswith("cannot connect to irc.example:6697: the TLS handshake")
    empty_bridge_error = _raised(TransientError(""), ConnectionResetError())
    assert describe_error(empty_bridge_error) == "the server closed the connection (ConnectionResetError)"
    assert describe_error(AuthenticationFailed("wrong password")) == "wrong password"


class Knobs(BaseModel):
    host: str = Field(description="server")
    port: int = Field(6697, ge=1, le=65535)


class ProbingFlow(SettingsLinkFlow):
    settings_model = Knobs
    identity_fields = (FormField(name="nick", label="Nick"),)
    secret_fields = (FormField(name="password", label="Password", secret=True, required=False),)

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        super().__init__(defaults)
        self.events: list[str] = []

    async def verify(
        self, settings: Knobs, secrets: Mapping[str, str], identity: Mapping[str, Any]
    ) -> LinkResult:
        async def close() -> None:
            self.events.append("probe closed")

        self.events.append(f"probe opened to {settings.host}:{settings.port}")
        self.probe(close)
        if secrets.get("password") != "right":
            raise AuthenticationFailed("the server refused the password")
        return LinkResult(
            remote_user_id=str(identity["nick"]), settings=settings.model_dump(), secrets=secrets
        )


async def test_settings_link_flow_validates_retries_and_closes_its_probe() -> None:
    flow = ProbingFlow({"host": "irc.example"})
    step = await flow.start()
    assert [(f.name, f.type, f.required) for f in step.fields] == [
        ("nick", "string", True),
        ("host", "string", False),  # the operator's default
        ("port", "integer", False),
        ("password", "string", False),
    ]
    with pytest.raises(Exception, match="port"):
        await flow.submit({"nick": "me", "port": 70000})
    assert flow.events == []  # refused before any connection
    with pytest.raises(AuthenticationFailed):
        await flow.submit({"nick": "me", "port": "6697", "password": "wrong"})
    assert flow.events == ["probe opened to irc.example:6697", "probe closed"]
    result = await flow.submit({"nick": "me", "port": 6698, "password": "right"})
    assert isinstance(result, LinkResult) and result.settings == {"host": "irc.example", "port": 6698}
    assert flow.events[-1] == "probe closed" and result.secrets == {"password": "right"}


class GuardedKnobs(Knobs):
    api_url: str = Field("https://api.example.invalid/", json_schema_extra=OPERATOR_ONLY)


class GuardedFlow(ProbingFlow):
    settings_model = GuardedKnobs  # type: ignore[assignment]


async def test_an_operator_only_setting_is_not_in_the_form_and_not_accepted_as_an_answer() -> None:
    flow = GuardedFlow({"api_url": "https://operator.example.invalid/"})  # [networks] may set it
    step = await flow.start()
    assert "api_url" not in {f.name for f in step.fields} and "host" in {f.name for f in step.fields}
    with pytest.raises(OperatorSettingRefused, match="api_url can only be set by the operator"):
        await flow.submit({"nick": "me", "host": "h", "api_url": "http://10.0.0.1/", "password": "right"})
    done = await flow.submit({"nick": "me", "host": "h", "password": "right"})
    assert isinstance(done, LinkResult) and done.settings["api_url"] == "https://operator.example.invalid/"


async def test_an_empty_answer_for_an_operator_only_setting_leaves_the_operators_value() -> None:
    flow = GuardedFlow({"api_url": "https://operator.example.invalid/"})
    done = await flow.submit({"nick": "me", "host": "h", "password": "right", "api_url": ""})
    assert isinstance(done, LinkResult) and done.settings["api_url"] == "https://operator.example.invalid/"
