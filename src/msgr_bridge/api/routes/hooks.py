"""Platforms calling connectors: ``/hooks/{network}/{account_id}/{name}`` and the OAuth link callback.

No bearer token (``auth.PUBLIC_PREFIXES``): the platform calling cannot hold one; each connector's handler
checks its own secret (``msgr_bridge.sdk.hooks``). The body is read in chunks up to
``[api] hook_max_body_bytes`` (413 beyond, before the handler runs); the handler gets ``[api]
hook_timeout_s`` (504 after); at most ``MAX_CONCURRENT`` calls per account run at once (503 beyond). An
unknown network, account or hook name all answer the same 404, so the route tells a stranger nothing about
which accounts exist. A handler's own refusal (``HookRefused``) is answered with its status and reason; any
other failure is a 500 without details (the log has them).

``GET|POST /hooks/{network}/link-callback`` ends an OAuth link flow: the browser comes back with ``state``
and ``code`` (in the query, or as a form with ``response_mode=form_post``); the pending flow of that
network whose authorize URL carries the same ``state`` gets them as its answers (``LinkService.submit``),
and the person sees a short page saying whether the account is linked.
"""

from __future__ import annotations

import hmac
import html
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import anyio
import structlog
from aiohttp import web

from ...connectors.protocol import LinkStepKind
from ...sdk.hooks import MAX_CONCURRENT, HookRefused, HookRequest, HookResponse, Hooks
from ..common import hooks_of, links_of
from ..openapi import op
from ..problems import ApiProblem

log = structlog.get_logger("msgr_bridge.api.hooks")
routes = web.RouteTableDef()
HOOK = "/hooks/{network}/{account_id}/{name}"
LINK = "/hooks/{network}/link-callback"
_PUBLIC = "No bearer token: the connector checks the platform's own secret."
DOCS = [
    op("POST", HOOK, f"A platform's callback to one account's connector. {_PUBLIC}", ok="2XX"),
    op("GET", HOOK, f"A platform's callback to one account's connector. {_PUBLIC}", ok="2XX"),
    op("GET", LINK, "Where an OAuth sign-in sends the browser back to finish a link flow", query=("state",)),
    op("POST", LINK, "The same, for an answer sent as a form (response_mode=form_post)"),
]
NOT_FOUND = ("hook_not_found", "no such hook")


def _hooks_of(request: web.Request) -> Hooks:
    m = request.match_info
    hooks = hooks_of(request).find(m["network"], m["account_id"])
    if hooks is None or hooks.get(m["name"]) is None:
        raise ApiProblem(404, *NOT_FOUND)
    return hooks


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` (Content-Length or counted)."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    chunks, size = [], 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


@routes.post(HOOK)
@routes.get(HOOK)
async def hook(request: web.Request) -> web.StreamResponse:
    hooks = _hooks_of(request)
    bounds = hooks_of(request)
    name = request.match_info["name"]
    if hooks.running >= MAX_CONCURRENT:
        raise ApiProblem(503, "hook_busy", "too many calls at once; try again shortly")
    hooks.running += 1
    try:
        body = await read_bounded(request, bounds.max_body_bytes)
        call = HookRequest(
            method=request.method,
            name=name,
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
            content_type=request.content_type,
        )
        handler = hooks.get(name)
        if handler is None:  # unregistered while the body was read
            raise ApiProblem(404, *NOT_FOUND)
        answer: HookResponse | None = None
        with anyio.move_on_after(bounds.timeout_s):
            answer = await handler(call)
    except HookRefused as exc:
        return web.Response(status=exc.status, text=exc.message, content_type="text/plain")
    except (ApiProblem, web.HTTPException):
        raise
    except Exception:
        log.exception("hook.failed", network=hooks.network, account=hooks.account_id, hook=name)
        raise ApiProblem(500, "hook_failed", "the connector failed to handle the call") from None
    finally:
        hooks.running -= 1
    if answer is None:
        log.warning("hook.timeout", network=hooks.network, account=hooks.account_id, hook=name)
        raise ApiProblem(504, "hook_timeout", "the connector did not answer in time")
    body_out = answer.body.encode() if isinstance(answer.body, str) else answer.body
    return web.Response(
        status=answer.status, body=body_out, content_type=answer.content_type, headers=dict(answer.headers)
    )


def _state_of(url: str | None) -> str:
    values = parse_qs(urlsplit(url or "").query).get("state") or [""]
    return values[0]


def _page(status: int, title: str, text: str) -> web.Response:
    page = (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
    )
    return web.Response(status=status, text=page, content_type="text/html")


@routes.post(LINK)
@routes.get(LINK)
async def link_callback(request: web.Request) -> web.StreamResponse:
    bounds, links = hooks_of(request), links_of(request)
    answer = dict(request.query)
    if request.method == "POST":  # response_mode=form_post: the answer is a form in the body
        body = await read_bounded(request, bounds.max_body_bytes)
        answer.update(parse_qsl(body.decode("utf-8", "replace")))
    network, state = request.match_info["network"], answer.get("state", "")
    live: Any = None
    for candidate in list(links.flows.values()):
        step = candidate.step
        if (
            state
            and candidate.network == network
            and candidate.status == "pending"
            and step is not None
            and step.kind == LinkStepKind.OAUTH_URL
            and hmac.compare_digest(_state_of(step.url).encode(), state.encode())
        ):
            live = candidate
            break
    if live is None:
        return _page(
            404, "Unknown sign-in", "This sign-in is unknown, finished or expired; start linking again."
        )
    done = None
    with anyio.move_on_after(bounds.timeout_s * 3):
        done = await links.submit(live.id, answer)
    if done is None:
        return _page(
            504, "Still signing in", "The bridge is still finishing the sign-in; check the link flow."
        )
    if done.status == "linked":
        return _page(200, "Account linked", "The account is linked. You can close this window.")
    return _page(400, "Sign-in not completed", done.error or f"The link flow is {done.status}.")
