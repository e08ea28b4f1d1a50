"""Linking through the browser (authorization-code flow with PKCE and form_post): the step is the sign-in
URL, Microsoft sends the browser back to the bridge's link callback, and the flow finishes there; a
foreign ``state`` finds no flow, a declined consent is reported, and the code is redeemed only with the
PKCE verifier."""

from __future__ import annotations

import html
import re
import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from msgr_bridge_teams import TeamsConnector

from msgr_bridge.errors import AuthenticationFailed
from msgr_bridge.schema import ConnectionState
from msgr_bridge.testing.waiting import wait_until

from .test_link_api import call, running_bridge

FIELD = re.compile(r'name="([^"]+)" value="([^"]*)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser(tenant: Any) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(tenant.fake.ca_file))
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))


async def sign_in_page(tenant: Any, url: str) -> tuple[str, dict[str, str]]:
    """The identity platform's answer page: the form's target and its hidden fields."""
    async with browser(tenant) as http, http.get(url) as page:
        text = await page.text()
    action = re.search(r'action="([^"]+)"', text)
    assert action is not None, text
    return html.unescape(action[1]), {html.unescape(k): html.unescape(v) for k, v in FIELD.findall(text)}


async def browse(tenant: Any, url: str) -> tuple[int, str, str]:
    """What the person's browser does: open the sign-in URL, then submit the page's form (form_post) back
    to the bridge; returns the status, address and text of the bridge's page."""
    action, fields = await sign_in_page(tenant, url)
    async with browser(tenant) as http, http.post(action, data=fields) as page:
        return page.status, str(page.url), await page.text()


async def start(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    status, flow = await call(
        http, "POST", f"{base}/v1/links", {"network": "teams", "settings": {"flow": "auth_code"}}
    )
    assert status == 201, flow
    assert flow["step"]["kind"] == "oauth_url"
    return dict(flow)


async def test_sign_in_through_the_browser_links_the_account(tenant: Any, tmp_path: Path) -> None:
    port = free_port()
    async with running_bridge(tmp_path, tenant, port=port) as (running, http, base):
        flow = await start(http, base)
        query = parse_qs(urlsplit(flow["step"]["url"]).query)
        redirect = f"http://127.0.0.1:{port}/hooks/teams/link-callback"
        assert query["redirect_uri"] == [redirect] and query["response_mode"] == ["form_post"]
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
        assert query["state"][0]
        status, landed, page = await browse(tenant, flow["step"]["url"])
        assert status == 200 and landed == redirect and "Account linked" in page, page
        status, done = await call(http, "GET", f"{base}/v1/links/{flow['id']}")
        assert done["status"] == "linked", done
        account = done["account"]["id"]
        await wait_until(lambda: running.supervisor.state(account) == ConnectionState.CONNECTED, timeout=20)
        assert tenant.fake.identity.pkce == {}, "the code was redeemed with its verifier"
        await wait_until(lambda: len(tenant.fake.graph_requests()) >= 4, timeout=20)


async def test_a_foreign_state_or_a_declined_consent_links_nothing(tenant: Any, tmp_path: Path) -> None:
    port = free_port()
    async with running_bridge(tmp_path, tenant, port=port) as (_, http, base):
        flow = await start(http, base)
        async with aiohttp.ClientSession() as stranger:
            forged = f"{base}/hooks/teams/link-callback"
            async with stranger.post(forged, data={"code": "stolen", "state": "guessed"}) as page:
                assert page.status == 404
        tenant.fake.identity.decline_authorize = True
        status, _, page = await browse(tenant, flow["step"]["url"])
        assert status == 400 and "AADSTS65004" in page, page
        status, after = await call(http, "GET", f"{base}/v1/links/{flow['id']}")
        assert after["status"] == "pending" and "AADSTS65004" in after["error"], after
        tenant.fake.identity.decline_authorize = False
        status, _, page = await browse(tenant, flow["step"]["url"])  # the person tries again
        assert status == 200 and "Account linked" in page, page
        await wait_until(lambda: len(tenant.fake.graph_requests()) >= 4, timeout=20)


async def test_a_code_is_refused_without_its_pkce_verifier(tenant: Any) -> None:
    redirect = "http://127.0.0.1:9/hooks/teams/link-callback"
    flow: Any = TeamsConnector.link_flow({**tenant.settings(flow="auth_code"), "link_callback_url": redirect})
    step = await flow.start()
    _, answer = await sign_in_page(tenant, str(step.url))
    flow.flow["code_verifier"] = "not-the-verifier-sent-with-the-challenge"
    with pytest.raises(AuthenticationFailed) as refused:
        await flow.submit(answer)
    assert "AADSTS501481" in refused.value.explain()
