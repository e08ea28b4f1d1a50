"""Linking by QR code, flow by flow: the code, "not yet" until the phone scans it, and who may claim which
number."""

from __future__ import annotations

import pytest
from msgr_bridge_signal import SignalConnector
from signal_fixtures import ME

from msgr_bridge.connectors.protocol import LinkResult, LinkStep, LinkStepKind
from msgr_bridge.errors import AuthenticationFailed, ConfigError
from msgr_bridge.sdk.settings import check_network_tables
from msgr_bridge.testing.fakes.signal import SignalFake

NEW = "+15550100500"


async def test_qr_code_then_not_yet_then_linked(fake: SignalFake) -> None:
    flow = SignalConnector.link_flow({"base_url": fake.base_url, "device_name": "my bridge"})
    step = await flow.start()
    assert (
        step.kind == LinkStepKind.QR_CODE and step.qr_data and step.qr_data.startswith("sgnl://linkdevice?")
    )
    assert [f.name for f in step.fields] == ["number"]
    again = await flow.submit({"number": NEW})
    assert isinstance(again, LinkStep) and again.qr_data == step.qr_data and "Not linked yet" in again.prompt
    fake.scan(NEW)
    done = await flow.submit({"number": " +1 555 010 0500 "})
    assert isinstance(done, LinkResult) and done.remote_user_id == NEW and done.secrets == {}
    assert done.settings == {"base_url": fake.base_url, "number": NEW}  # the rest follows [networks.signal]
    assert fake.model.accounts[NEW].device_name == "my bridge"
    assert [r["query"] for r in fake.requests if r["path"] == "/v1/qrcodelink/raw"] == [
        {"device_name": "my bridge"}
    ]


async def test_a_number_linked_before_the_code_is_not_claimed(fake: SignalFake) -> None:
    flow = SignalConnector.link_flow({"base_url": fake.base_url})
    await flow.start()
    fake.scan(NEW)
    still = await flow.submit({"number": ME})  # linked on the REST API already, by someone else's flow
    assert isinstance(still, LinkStep)
    with pytest.raises(AuthenticationFailed):
        await SignalConnector.link_flow({"base_url": fake.base_url}).submit({"number": ME})
    claimed = await SignalConnector.link_flow(
        {"base_url": fake.base_url, "link_existing_accounts": True}
    ).submit({"number": ME})
    assert isinstance(claimed, LinkResult) and claimed.remote_user_id == ME


async def test_bad_answers_and_settings_are_refused(fake: SignalFake) -> None:
    flow = SignalConnector.link_flow({"base_url": fake.base_url})
    await flow.start()
    with pytest.raises(AuthenticationFailed):
        await flow.submit({"number": "0170 1234567"})  # no country code
    with pytest.raises(ConfigError):
        SignalConnector.link_flow({"base_url": "file:///etc/passwd"})
    with pytest.raises(ConfigError):
        SignalConnector.link_flow({"base_url": fake.base_url, "receive": "carrier pigeon"})


def test_network_table_is_checked_against_the_settings_model() -> None:
    good = {"signal": {"base_url": "http://signal-api:8080", "receive": "poll", "liveness_interval_s": "60"}}
    assert check_network_tables(good, {"signal": SignalConnector})[0] == []
    bad = {"signal": {"base_url": "ftp://signal-api", "recieve": "poll", "max_attachment_bytes": 0}}
    (problem,) = check_network_tables(bad, {"signal": SignalConnector})[0]
    assert "base_url" in problem and "recieve" in problem and "max_attachment_bytes" in problem
