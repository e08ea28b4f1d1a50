"""The web app's sign-in: the one-time setup link, session cookies (flags), CSRF, throttling, sign-out."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest

from msgr_bridge.api import web_session
from msgr_bridge.api.web_session import LoginThrottle
from msgr_bridge.errors import DatabaseError
from msgr_bridge.store import web_auth
from msgr_bridge.store.web_auth import check_password, hash_password

from .conftest import Api, Start

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge runs in this process: hash at a low cost (the browser test runs the real one)."""
    monkeypatch.setattr(web_auth, "SCRYPT_N", 2**10)
    monkeypatch.setattr(web_auth, "_DUMMY_HASH", web_auth.hash_password("x", n=2**10))


def setup_token(api: Api) -> str:
    assert api.bridge.api is not None
    link = api.bridge.api.web_auth.setup_link
    assert link is not None and "#setup=" in link
    return link.split("#setup=", 1)[1]


async def post(api: Api, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with api.http.post(api.base + path, json=body, headers=headers or {}) as r:
        return r.status, await r.json(content_type=None), r.headers.getall("Set-Cookie", [])


def cookie_of(set_cookie: list[str]) -> tuple[str, Any]:
    jar: SimpleCookie = SimpleCookie()
    for line in set_cookie:
        jar.load(line)
    morsel = jar[web_session.COOKIE]
    return morsel.value, morsel


async def signed_up(api: Api) -> tuple[str, str]:
    """Create the owner through the setup link: (cookie value, CSRF token)."""
    status, body, cookies = await post(
        api, "/v1/web/setup", {"token": setup_token(api), "username": "owner", "password": PASSWORD}
    )
    assert status == 201, body
    return cookie_of(cookies)[0], body["csrf_token"]


async def test_setup_link_is_printed_and_works_once(start: Start, capsys: pytest.CaptureFixture[str]) -> None:
    async with start() as api:
        token = setup_token(api)
        assert f"#setup={token}" in capsys.readouterr().out
        status, state, _ = await post(
            api, "/v1/web/setup", {"token": token, "username": "me", "password": "short"}
        )
        assert status == 422 and state["code"] == "setup_refused"  # a bad password keeps the link usable
        status, body, cookies = await post(
            api, "/v1/web/setup", {"token": token, "username": "me", "password": PASSWORD}
        )
        assert status == 201 and body["signed_in"] and body["username"] == "me"
        assert cookie_of(cookies)[0]
        status, body, _ = await post(
            api, "/v1/web/setup", {"token": token, "username": "x", "password": PASSWORD}
        )
        assert status == 403 and body["code"] == "setup_link_invalid"
        # the owner signs in with the password chosen
        status, body, _ = await post(api, "/v1/web/login", {"username": "me", "password": PASSWORD})
        assert status == 200 and body["csrf_token"]


async def test_no_setup_link_once_an_owner_exists(start: Start, capsys: pytest.CaptureFixture[str]) -> None:
    async with start() as api:
        await signed_up(api)
    capsys.readouterr()
    async with start() as api:
        assert api.bridge.api is not None and api.bridge.api.web_auth.setup_link is None
        assert "#setup=" not in capsys.readouterr().out
        async with api.http.get(api.base + "/v1/web/session") as r:
            assert (await r.json()) == {"signed_in": False, "owner_exists": True}


async def test_session_cookie_flags_over_http_and_https(start: Start) -> None:
    async with start() as api:
        _, _, cookies = await post(
            api, "/v1/web/setup", {"token": setup_token(api), "username": "o", "password": PASSWORD}
        )
        _, morsel = cookie_of(cookies)
        assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
        assert not morsel["secure"]  # plain http on loopback: a Secure cookie would never come back
    async with start(public_base_url="https://bridge.example") as api:
        _, _, cookies = await post(api, "/v1/web/login", {"username": "o", "password": PASSWORD})
        _, morsel = cookie_of(cookies)
        assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Strict"


async def test_csrf_is_required_for_cookie_authenticated_unsafe_requests(start: Start) -> None:
    async with start() as api:
        cookie, csrf = await signed_up(api)
        jar = {"Cookie": f"{web_session.COOKIE}={cookie}"}
        async with api.http.get(api.base + "/v1/tokens", headers=jar) as r:
            assert r.status == 200  # a safe request needs no token
        body = {"name": "cli", "scopes": ["read:*"]}
        async with api.http.post(api.base + "/v1/tokens", json=body, headers=jar) as r:
            assert r.status == 403 and (await r.json())["code"] == "csrf_token_invalid"
        bad = {**jar, "X-CSRF-Token": "0" * 64}
        async with api.http.post(api.base + "/v1/tokens", json=body, headers=bad) as r:
            assert r.status == 403
        good = {**jar, "X-CSRF-Token": csrf}
        async with api.http.post(api.base + "/v1/tokens", json=body, headers=good) as r:
            assert r.status == 201
        evil = {**good, "Origin": "https://evil.example"}
        async with api.http.post(api.base + "/v1/tokens", json=body, headers=evil) as r:
            assert r.status == 403 and (await r.json())["code"] == "cross_origin_refused"
        # bearer tokens keep working, with no CSRF token (browsers never add them by themselves)
        status, _ = await api.call("POST", "/v1/tokens", json=body)
        assert status == 201


async def test_without_a_session_the_api_still_wants_a_token(start: Start) -> None:
    async with start() as api, api.http.get(api.base + "/v1/accounts") as r:
        assert r.status == 401 and (await r.json())["code"] == "token_missing"
    async with start() as api:
        jar = {"Cookie": f"{web_session.COOKIE}=forged"}
        async with api.http.get(api.base + "/v1/accounts", headers=jar) as r:
            assert r.status == 401


async def test_event_stream_takes_the_session_and_refuses_other_sites(start: Start) -> None:
    async with start() as api:
        cookie, _ = await signed_up(api)
        jar = {"Cookie": f"{web_session.COOKIE}={cookie}"}
        async with api.http.ws_connect(api.base + "/v1/events", headers=jar) as ws:
            frame = await ws.receive_json(timeout=10)
            assert frame["type"] == "live"
        evil = {**jar, "Origin": "https://evil.example"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with api.http.ws_connect(api.base + "/v1/events", headers=evil):
                pass
        assert refused.value.status == 403


async def test_logout_ends_the_session(start: Start) -> None:
    async with start() as api:
        cookie, csrf = await signed_up(api)
        jar = {"Cookie": f"{web_session.COOKIE}={cookie}"}
        async with api.http.post(api.base + "/v1/web/logout", headers={**jar, "X-CSRF-Token": csrf}) as r:
            assert r.status == 200
        async with api.http.get(api.base + "/v1/accounts", headers=jar) as r:
            assert r.status == 401


async def test_signing_out_ends_the_sessions_event_stream_at_once(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: the stream's re-check timer is slow now; the sign-out itself ends the session's stream."""
    from msgr_bridge.api.routes import events as event_routes

    monkeypatch.setattr(event_routes, "TOKEN_RECHECK_S", 3600.0)
    async with start() as api:
        cookie, csrf = await signed_up(api)
        jar = {"Cookie": f"{web_session.COOKIE}={cookie}"}
        async with api.http.ws_connect(api.base + "/v1/events", headers=jar) as ws:
            assert (await ws.receive_json(timeout=10))["type"] == "live"
            async with api.http.post(api.base + "/v1/web/logout", headers={**jar, "X-CSRF-Token": csrf}) as r:
                assert r.status == 200
            assert (await ws.receive_json(timeout=10))["type"] == "unauthorized"


async def test_login_is_throttled_per_address(start: Start) -> None:
    async with start() as api:
        await signed_up(api)
        for _ in range(web_session.MAX_FAILURES):
            status, body, _ = await post(
                api, "/v1/web/login", {"username": "owner", "password": "wrong password"}
            )
            assert status == 401 and body["code"] == "login_failed"
        status, body, _ = await post(api, "/v1/web/login", {"username": "owner", "password": PASSWORD})
        assert status == 429 and body["code"] == "too_many_attempts" and body["retry_after"] > 0


async def test_sign_in_takes_json_only(start: Start) -> None:
    async with start() as api:
        await signed_up(api)
        form = {"username": "owner", "password": PASSWORD}  # what a cross-site HTML form could post
        async with api.http.post(api.base + "/v1/web/login", data=form) as r:
            assert r.status == 415 and (await r.json())["code"] == "json_required"
            assert not r.headers.getall("Set-Cookie", [])


def test_throttle_forgets_failures_after_the_window() -> None:
    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(web_session.MAX_FAILURES):
        throttle.check("a")
        throttle.failed("a")
    with pytest.raises(web_session.ApiProblem) as refused:
        throttle.check("a")
    assert refused.value.status == 429
    throttle.check("b")  # another address is not blocked
    now[0] += web_session.WINDOW_S + 1
    throttle.check("a")


def test_throttle_limits_all_addresses_together() -> None:
    throttle = LoginThrottle(clock=lambda: 5.0)
    for i in range(web_session.GLOBAL_MAX_FAILURES):
        throttle.failed(f"10.0.{i // 250}.{i % 250}")
    with pytest.raises(web_session.ApiProblem):
        throttle.check("192.0.2.1")


def test_password_hash_is_salted_scrypt() -> None:
    one, two = hash_password("secret words", n=2**10), hash_password("secret words", n=2**10)
    assert one != two and one.startswith("scrypt$1024$8$1$")
    assert check_password("secret words", one) and check_password("secret words", two)
    assert not check_password("secret wordz", one)
    assert not check_password("secret words", "scrypt$broken")
    assert not check_password("secret words", "md5$x$y$z$a$b")


async def test_no_setup_link_while_the_database_is_out_and_the_api_still_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Down:
        async def owner(self, tenant: str) -> None:
            raise DatabaseError("the database does not answer")

    wa = web_session.WebAuth(Down(), "default")  # type: ignore[arg-type]
    assert await wa.announce_setup("http://127.0.0.1:1") is None
    assert wa.setup_link is None and "#setup=" not in capsys.readouterr().out
