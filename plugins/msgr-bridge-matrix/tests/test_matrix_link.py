"""Linking against the real homeserver, and refused or unreachable credentials on connect."""

from __future__ import annotations

import pytest
from matrix_peer import Peer, make_connector
from msgr_bridge_matrix import MatrixConnector, MatrixSettings

from msgr_bridge.connectors.protocol import LinkStepKind
from msgr_bridge.errors import AuthenticationFailed, TransientError
from msgr_bridge.testing.servers import free_port
from msgr_bridge.testing.synapse import SynapseServer


async def test_link_with_password(synapse: SynapseServer, me: Peer) -> None:
    flow = MatrixConnector.link_flow({"homeserver": synapse.base_url})
    step = await flow.start()
    assert step.kind == LinkStepKind.CREDENTIALS_FORM
    fields = {f.name: f for f in step.fields}
    assert set(fields) == {*MatrixSettings.model_fields, "password", "access_token"}  # typed, from the model
    assert fields["password"].secret and fields["access_token"].secret and not fields["user_id"].secret
    assert fields["homeserver"].default == synapse.base_url and fields["timeline_limit"].type == "integer"
    result = await flow.submit({"user_id": me.user_id, "password": me.password})
    assert result.remote_user_id == me.user_id
    assert result.settings == {"homeserver": synapse.base_url, "user_id": me.user_id}
    assert set(result.secrets) == {"access_token", "device_id", "password"}
    # the token it returns works
    connector, _ = make_connector(synapse, me, secrets={"access_token": result.secrets["access_token"]})
    await connector.connect()
    await connector.disconnect()


async def test_link_keeps_only_settings_answered_differently_from_the_defaults(
    synapse: SynapseServer, me: Peer
) -> None:
    flow = MatrixConnector.link_flow({"homeserver": synapse.base_url, "auto_join_from": ["*"]})
    answers = {"user_id": me.user_id, "password": me.password, "auto_join_from": "*", "timeline_limit": "20"}
    result = await flow.submit({**answers, "max_backfill": 1000})
    # [networks.matrix]'s auto_join_from and the model's max_backfill stay defaults, so later changes apply
    assert result.settings == {"homeserver": synapse.base_url, "user_id": me.user_id, "timeline_limit": 20}


async def test_link_with_access_token(synapse: SynapseServer, me: Peer) -> None:
    flow = MatrixConnector.link_flow({})
    result = await flow.submit({"homeserver": synapse.base_url, "access_token": me.client.api.token})
    assert result.remote_user_id == me.user_id and "password" not in result.secrets


@pytest.mark.parametrize("answers", [{"password": "wrong"}, {"password": ""}, {"access_token": "syt_bogus"}])
async def test_link_refuses_bad_credentials(
    synapse: SynapseServer, me: Peer, answers: dict[str, str]
) -> None:
    flow = MatrixConnector.link_flow({"homeserver": synapse.base_url})
    with pytest.raises(AuthenticationFailed):
        await flow.submit({"user_id": me.user_id, **answers})


async def test_connect_refused_and_unreachable(synapse: SynapseServer, me: Peer) -> None:
    bad, _ = make_connector(synapse, me, secrets={"password": "wrong"})
    with pytest.raises(AuthenticationFailed):
        await bad.connect()
    bad_token, _ = make_connector(synapse, me, secrets={"access_token": "syt_revoked"})
    with pytest.raises(AuthenticationFailed):
        await bad_token.connect()
    nowhere, _ = make_connector(synapse, me, settings={"homeserver": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(TransientError):
        await nowhere.connect()
