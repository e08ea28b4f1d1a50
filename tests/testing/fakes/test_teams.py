"""The Teams fake: msal signs in against it over TLS, and Graph requests are checked against the published
description (a request Graph would refuse is refused here too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import msal
import pytest
import requests

from msgr_bridge.testing.fakes.teams import FakeTeams

SESSIONS: list[requests.Session] = []


@pytest.fixture
async def fake() -> AsyncIterator[FakeTeams]:
    async with FakeTeams() as started:
        yield started
    while SESSIONS:
        SESSIONS.pop().close()


def _msal_app(fake: FakeTeams, client_id: str | None = None) -> msal.PublicClientApplication:
    http = requests.Session()
    http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify= otherwise
    http.verify = str(fake.ca_file)
    SESSIONS.append(http)
    return msal.PublicClientApplication(
        client_id or fake.client_id, authority=fake.authority, instance_discovery=False, http_client=http
    )


async def msal_app(fake: FakeTeams, client_id: str | None = None) -> msal.PublicClientApplication:
    """msal's constructor fetches the OIDC discovery document: off the event loop, like every msal call."""
    return await anyio.to_thread.run_sync(lambda: _msal_app(fake, client_id))


async def graph(fake: FakeTeams, token: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    import ssl

    context = ssl.create_default_context(cafile=str(fake.ca_file))
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        http.request(
            method, fake.graph_url + path, headers={"Authorization": f"Bearer {token}"}, **kw
        ) as resp,
    ):
        return resp.status, (await resp.json() if resp.content_type == "application/json" else None)


async def sign_in(fake: FakeTeams, user: str) -> dict[str, Any]:
    app = await msal_app(fake)
    flow = await anyio.to_thread.run_sync(lambda: app.initiate_device_flow(scopes=["Chat.ReadWrite"]))
    pending = await anyio.to_thread.run_sync(
        lambda: app.acquire_token_by_device_flow(dict(flow), exit_condition=lambda f: True)
    )
    assert pending["error"] == "authorization_pending"
    fake.identity.approve_pending(user)
    result: dict[str, Any] = await anyio.to_thread.run_sync(
        lambda: app.acquire_token_by_device_flow(flow, exit_condition=lambda f: True)
    )
    return result


async def test_device_code_sign_in_then_graph(fake: FakeTeams) -> None:
    alice, bob = fake.add_user("alice", "Alice"), fake.add_user("bob", "Bob")
    chat = fake.add_chat([alice, bob])
    for i in range(3):
        fake.post_as(bob, chat, f"<p>m{i}</p>")
    result = await sign_in(fake, alice)
    assert result["id_token_claims"]["oid"] == alice
    token = result["access_token"]
    status, me = await graph(fake, token, "GET", "/me")
    assert status == 200 and me["id"] == alice
    status, page = await graph(fake, token, "GET", f"/chats/{chat}/messages", params={"$top": "2"})
    assert [m["body"]["content"] for m in page["value"]] == ["<p>m2</p>", "<p>m1</p>"]
    assert "@odata.nextLink" in page


async def test_requests_outside_the_published_description_are_refused(fake: FakeTeams) -> None:
    alice, bob = fake.add_user("alice", "Alice"), fake.add_user("bob", "Bob")
    chat = fake.add_chat([alice, bob])
    token = (await sign_in(fake, alice))["access_token"]
    status, body = await graph(fake, token, "POST", f"/chats/{chat}/messages", json={"body": {"text": "x"}})
    assert status == 400 and body["error"]["code"] == "BadRequest"
    status, body = await graph(fake, token, "POST", f"/chats/{chat}/messages", json={"text": "x"})
    assert status == 400 and "text" in body["error"]["message"]
    status, _ = await graph(fake, token, "GET", "/chats/getAllMessages/delta")
    assert status == 400
    status, _ = await graph(fake, token, "POST", f"/chats/{chat}/messages/1/setReaction", json={"emoji": "x"})
    assert status == 400
    assert len(fake.refused) == 4
    ok, sent = await graph(
        fake,
        token,
        "POST",
        f"/chats/{chat}/messages",
        json={"body": {"contentType": "html", "content": "<p>hi</p>"}},
    )
    assert ok == 201 and sent["from"]["user"]["id"] == alice


async def test_revocation_gives_invalid_grant_with_the_aadsts_reason(fake: FakeTeams) -> None:
    alice = fake.add_user("alice", "Alice")
    result = await sign_in(fake, alice)
    fake.identity.revoke(alice)
    app = await msal_app(fake)
    refreshed = await anyio.to_thread.run_sync(
        lambda: app.acquire_token_by_refresh_token(result["refresh_token"], scopes=["Chat.ReadWrite"])
    )
    assert refreshed["error"] == "invalid_grant" and "AADSTS50173" in refreshed["error_description"]
    status, body = await graph(fake, result["access_token"], "GET", "/me")
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"


async def test_unknown_client_is_refused(fake: FakeTeams) -> None:
    app = await msal_app(fake, client_id="99999999-0000-4000-8000-000000000000")
    flow = await anyio.to_thread.run_sync(lambda: app.initiate_device_flow(scopes=["Chat.ReadWrite"]))
    assert flow["error"] == "unauthorized_client" and "AADSTS700016" in flow["error_description"]


async def test_throttling_on_demand(fake: FakeTeams) -> None:
    alice = fake.add_user("alice", "Alice")
    token = (await sign_in(fake, alice))["access_token"]
    fake.throttle("/me", status=503, retry_after=3, count=1)
    status, body = await graph(fake, token, "GET", "/me")
    assert status == 503 and body["error"]["code"] == "ServiceUnavailable"
    status, _ = await graph(fake, token, "GET", "/me")
    assert status == 200


async def test_subscription_needs_the_validation_handshake(fake: FakeTeams) -> None:
    from aiohttp import web

    alice, bob = fake.add_user("alice", "Alice"), fake.add_user("bob", "Bob")
    chat = fake.add_chat([alice, bob])
    token = (await sign_in(fake, alice))["access_token"]
    received: list[Any] = []
    arrived = anyio.Event()
    echo = {"on": False}

    async def hook(request: web.Request) -> web.Response:
        if "validationToken" in request.query:
            return web.Response(
                text=request.query["validationToken"] if echo["on"] else "no", content_type="text/plain"
            )
        received.append(await request.json())
        if len(received) == 2:
            arrived.set()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        import datetime as dt

        expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=50)).isoformat()
        body = {
            "changeType": "created,updated",
            "notificationUrl": f"http://127.0.0.1:{port}/hook",
            "resource": f"/chats/{chat}/messages",
            "expirationDateTime": expiry,
            "clientState": "s3cret",
        }
        status, _ = await graph(fake, token, "POST", "/subscriptions", json=body)
        assert status == 400  # the endpoint did not echo the token
        echo["on"] = True
        status, sub = await graph(fake, token, "POST", "/subscriptions", json=body)
        assert status == 201
        fake.post_as(bob, chat, "<p>pushed</p>")
        fake.lifecycle(sub["id"], "reauthorizationRequired")
        with anyio.fail_after(5):
            await arrived.wait()
        assert received[0]["value"][0]["clientState"] == "s3cret"
        assert received[1]["value"][0]["lifecycleEvent"] == "reauthorizationRequired"
    finally:
        await runner.cleanup()
