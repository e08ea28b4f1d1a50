"""Linking: the form, a verified login (good and bad passwords, unreachable server, TLS)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import msgr_bridge_xmpp.connector
import pytest
from msgr_bridge_xmpp.client import make_client
from msgr_bridge_xmpp.config import XmppSettings
from msgr_bridge_xmpp.connector import XmppConnector
from xmpp_peer import Running, make_connector

from msgr_bridge import AuthenticationFailed, LinkResult, LinkStepKind, TransientError
from msgr_bridge.errors import ConfigError
from msgr_bridge.flags import FeatureFlags
from msgr_bridge.linking import LinkService
from msgr_bridge.sdk.settings import OperatorSettingRefused, validate_settings
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
    client = make_client("me@example.org", "pw", XmppSettings())
    assert client.enable_starttls and not client.enable_plaintext
    assert make_client("me@example.org", "pw", XmppSettings(security="direct_tls")).enable_direct_tls
    with pytest.raises(ConfigError):
        validate_settings(XmppSettings, {"security": "maybe"}, network="xmpp")


async def test_the_link_form_offers_only_the_account_settings_and_refuses_the_operators(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]]
) -> None:
    """Where to connect and which CA file to read are the operator's ([networks.xmpp]); a link answer
    naming them is refused with a reason, and the same flow then accepts a right answer."""
    jid, password = users["me"]
    flow = XmppConnector.link_flow(prosody.connection_settings())
    step = await flow.start()
    assert [(f.name, f.type) for f in step.fields] == [
        ("jid", "string"),
        ("rooms", "list"),
        ("nick", "string"),
        ("password", "string"),
    ]
    for answer in ({"server": "10.0.0.1", "port": 6379}, {"ca_file": "/etc/shadow"}):
        with pytest.raises(ConfigError, match="can only be set by the operator"):
            await flow.submit({"jid": jid, "password": password, **answer})
    result = await flow.submit({"jid": jid, "password": password, "nick": " me ", "server": ""})
    assert isinstance(result, LinkResult) and result.settings["nick"] == "me"
    assert result.settings["server"] == "127.0.0.1"  # the operator's
    assert "ping_interval" not in result.settings  # model defaults are not frozen into the account


async def test_the_test_login_is_closed_before_the_flow_returns(
    prosody: ProsodyServer, users: dict[str, tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    jid, password = users["me"]
    flow = XmppConnector.link_flow(prosody.connection_settings())
    clients: list[object] = []
    real_make_client = make_client

    def recording(*args: object, **kwargs: object) -> object:
        client = real_make_client(*args, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    monkeypatch.setattr(msgr_bridge_xmpp.connector, "make_client", recording)
    assert isinstance(await flow.submit({"jid": jid, "password": password}), LinkResult)
    assert len(clients) == 1 and clients[0].transport is None  # type: ignore[attr-defined]


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


async def test_a_link_request_cannot_choose_where_to_connect_or_a_ca_file() -> None:
    """The settings of a link request are refused like answers (they were merged into the flow's defaults,
    so a client could make the bridge connect to a host of its choosing or read a local file as a CA)."""
    host = SimpleNamespace(
        registry=SimpleNamespace(connectors={"xmpp": XmppConnector}),
        settings=SimpleNamespace(networks={}, bridge=SimpleNamespace(tenant="default")),
        flags=FeatureFlags({}),
    )
    links = LinkService(host)  # type: ignore[arg-type]  # start() reads the registry, settings and flags
    for settings in ({"ca_file": "/etc/shadow"}, {"server": "10.0.0.1", "port": 6379}, {"read_queue": 5}):
        with pytest.raises(OperatorSettingRefused):
            await links.start("xmpp", settings)
    live = await links.start("xmpp", {"rooms": ["room@muc.example.org"], "nick": "me"})
    assert live.step is not None and "ca_file" not in {f.name for f in live.step.fields}
