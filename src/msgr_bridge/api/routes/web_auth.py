"""The web app's sign-in routes (``/v1/web/...``): who is signed in, first-time setup, sign in, sign out.

These are public (no token); setup and sign-in take JSON only (a cross-site form cannot send it without
the browser asking first) and refuse another site's ``Origin``. See ``api/web_session.py``.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ConfigDict, Field

from ...store.web_auth import MAX_PASSWORD_LENGTH, WebAuthError
from ..auth import tokens_changed
from ..bodies import Body, read_json
from ..common import json_ok, web_of
from ..openapi import op
from ..problems import ApiProblem
from ..web_session import COOKIE, csrf_token

routes = web.RouteTableDef()


class SetupBody(Body):
    """The one-time setup token (from the link the bridge printed) and the owner's new login."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"token": "from-the-setup-link", "username": "owner", "password": "a long passphrase"}
            ]
        }
    )
    token: str = Field(min_length=1, max_length=200)
    username: str = Field(min_length=1, max_length=100, pattern=r"^\S+$")
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class LoginBody(Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"username": "owner", "password": "a long passphrase"}]}
    )
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


DOCS = [
    op("GET", "/v1/web/session", "The web app's sign-in state (and its CSRF token when signed in)"),
    op("POST", "/v1/web/setup", "Create the owner's login with the one-time setup token", model=SetupBody),
    op("POST", "/v1/web/login", "Sign in to the web app (sets the session cookie)", model=LoginBody),
    op("POST", "/v1/web/logout", "Sign out (ends the session)"),
]
PUBLIC_PATHS = frozenset(o.path for o in DOCS)


def _json_only(request: web.Request) -> None:
    web_of(request).check_origin(request)
    if request.content_type != "application/json":
        raise ApiProblem(415, "json_required", "send this as JSON", hint="Content-Type: application/json")


@routes.get("/v1/web/session")
async def session(request: web.Request) -> web.Response:
    wa = web_of(request)
    found = await wa.from_cookie(request)
    if found is None:
        return json_ok({"signed_in": False, "owner_exists": await wa.owner_exists()})
    info, cookie = found
    return json_ok(
        {"signed_in": True, "owner_exists": True, "username": info.username, "csrf_token": csrf_token(cookie)}
    )


@routes.post("/v1/web/setup")
async def setup(request: web.Request) -> web.Response:
    _json_only(request)
    wa = web_of(request)
    addr = request.remote or "?"
    wa.throttle.check(addr)
    body = await read_json(request, SetupBody)
    try:
        created = await wa.setup_owner(body.token, body.username, body.password)
    except WebAuthError as exc:
        raise ApiProblem(422, "setup_refused", exc.message, hint=exc.hint) from None
    if not created:
        wa.throttle.failed(addr)
        raise ApiProblem(
            403,
            "setup_link_invalid",
            "this setup link is not valid (it works once, and only until the owner exists)",
            hint="sign in instead; a bridge without an owner prints a fresh link each time it starts",
        )
    return await wa.open_session(request, {"signed_in": True}, status=201)


@routes.post("/v1/web/login")
async def login(request: web.Request) -> web.Response:
    _json_only(request)
    wa = web_of(request)
    addr = request.remote or "?"
    wa.throttle.check(addr)
    body = await read_json(request, LoginBody)
    if not await wa.verify(body.username, body.password):
        wa.throttle.failed(addr)
        raise ApiProblem(401, "login_failed", "wrong name or password")
    wa.throttle.succeeded(addr)
    return await wa.open_session(request, {"signed_in": True})


@routes.post("/v1/web/logout")
async def logout(request: web.Request) -> web.Response:
    response = json_ok({"signed_in": False})
    await web_of(request).sign_out(request, response)
    tokens_changed(request)  # the session's event streams end now, not at their next check
    return response


__all__ = ["COOKIE", "DOCS", "PUBLIC_PATHS", "routes"]
