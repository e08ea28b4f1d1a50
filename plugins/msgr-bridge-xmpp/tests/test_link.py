"""Linking: the form, a verified login (good and bad passwords, unreachable server, TLS)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from msgr_bridge_xmpp.client import make_client
from msgr_bridge_xmpp.connector import XmppConnector
from xmpp_peer import Running, make_connector

from msgr_bridge import AuthenticationFailed, LinkResult, LinkStepKind, TransientError
from msgr_bridge.errors import ConfigError
from msgr_bridge.testing.prosody import ProsodyServer, free_port, start_prosody


async def test_link_with_good_credentials(prosody: ProsodyServer, users: dict[str, tuple[str, str]]) -> None:
    jid, password = users["me"]
    flow = XmppConnector.link_flow(prosody.connection_settings())
    step = await flow.start()
    assert step.kind == LinkStepKind.CREDENTIALS_FORM
    assert {f.name for f in step.fields if f.secret} == {"password"}
    result = await flow.submit(
        {"jid": jid.upper(), "password": password, "rooms": "Lobby@conference.localhost"}
    )
    assert isinstance(result, LinkResult)
    assert result.remote_user_id == jid
    assert result.secrets == {"password": password}
    assert "password" not in result.settings
    assert result.settings["rooms"] == ["lobby@conference.localhost"]
    assert result.settings["port"] == prosody.c2s_port


async def test_link_with_bad_password(prosody: ProsodyServer, users: dict[str, tuple[str, str]]) -> None:
    flow = XmppConnector.link_flow(prosody.connection_settings())
    with pytest.raises(AuthenticationFailed):
        await flow.submit({"jid": users["me"][0], "password": "wrong"})


async def test_link_with_unreachable_server_is_transient(prosody: ProsodyServer) -> None:
    settings = {**prosody.connection_settings(), "port": free_port()}
    flow = XmppConnector.link_flow(settings)
    with pytest.raises(TransientError):
        await flow.submit({"jid": "nobody@localhost", "password": "x"})


@pytest.mark.parametrize(
    "answers",
    [{"jid": "not a jid", "password": "x"}, {"jid": "me@localhost", "password": ""}, {"jid": "me@localhost",
     "password": "x", "rooms": "room@conference.localhost/nick"}],
)  # fmt: skip
async def test_link_refuses_bad_input(prosody: ProsodyServer, answers: dict[str, str]) -> None:
    flow = XmppConnector.link_flow(prosody.connection_settings())
    with pytest.raises(ConfigError):
        await flow.submit(answers)


async def test_tls_is_the_default_and_unknown_modes_are_refused() -> None:
    client = make_client("me@example.org", "pw", {})
    assert client.enable_starttls and not client.enable_plaintext
    assert make_client("me@example.org", "pw", {"security": "direct_tls"}).enable_direct_tls
    with pytest.raises(ConfigError):
        make_client("me@example.org", "pw", {"security": "maybe"})


@pytest.fixture(scope="module")
def tls_server() -> Iterator[ProsodyServer]:
    server = start_prosody(tls=True)
    yield server
    server.cleanup()


async def test_starttls_server_link_and_message(tls_server: ProsodyServer) -> None:
    jid = tls_server.register("tlsuser", "tlspw")
    settings = tls_server.connection_settings()
    assert settings["security"] == "starttls"
    result = await XmppConnector.link_flow(settings).submit({"jid": jid, "password": "tlspw"})
    assert isinstance(result, LinkResult)
    me = await Running(*make_connector(tls_server, jid, "tlspw")).start()
    client = me.connector._client
    assert client is not None and client.transport is not None
    assert client.transport.get_extra_info("ssl_object") is not None  # really encrypted
    await me.stop()
