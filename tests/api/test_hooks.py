"""``/hooks/{network}/{account_id}/{name}``: platforms calling a connector through the API server."""

from __future__ import annotations

import time
from typing import Any

import anyio

from msgr_bridge.sdk.hooks import HookRefused, HookRequest, HookResponse

from .conftest import Start


async def _account(api: Any) -> tuple[str, Any]:
    account_id = await api.link("alice", "pw-alice")
    return account_id, api.bridge.hooks.for_account("loopback", account_id)


async def test_a_registered_hook_gets_the_call_without_a_bearer_token(start: Start) -> None:
    async with start() as api:
        account_id, hooks = await _account(api)
        seen: list[HookRequest] = []

        async def handler(request: HookRequest) -> HookResponse:
            seen.append(request)
            return HookResponse(200, request.query["validationToken"], content_type="text/plain")

        hooks.register("notify", handler)
        url = f"{api.base}/hooks/loopback/{account_id}/notify"
        async with api.http.post(url, params={"validationToken": "a b+c"}, data=b'{"x":1}') as r:
            assert r.status == 200 and r.content_type == "text/plain"
            assert await r.text() == "a b+c"
        assert seen[0].method == "POST" and seen[0].name == "notify" and seen[0].json() == {"x": 1}


async def test_unknown_network_account_or_name_answer_the_same_404(start: Start) -> None:
    async with start() as api:
        account_id, hooks = await _account(api)

        async def handler(request: HookRequest) -> HookResponse:
            return HookResponse(202)

        hooks.register("notify", handler)
        bodies = []
        for path in (
            f"/hooks/slack/{account_id}/notify",
            "/hooks/loopback/acct_nobody/notify",
            f"/hooks/loopback/{account_id}/other",
        ):
            async with api.http.post(api.base + path, data=b"{}") as r:
                assert r.status == 404
                body = await r.json(content_type=None)
                bodies.append((body["code"], body["detail"]))
        assert len(set(bodies)) == 1
        async with api.http.post(f"{api.base}/hooks/loopback/{account_id}/notify") as r:
            assert r.status == 202


async def test_a_body_over_the_cap_is_refused_while_reading(start: Start) -> None:
    async with start(hook_max_body_bytes=4096) as api:
        account_id, hooks = await _account(api)
        called: list[int] = []

        async def handler(request: HookRequest) -> HookResponse:
            called.append(len(request.body))
            return HookResponse(202)

        hooks.register("notify", handler)
        url = f"{api.base}/hooks/loopback/{account_id}/notify"

        async def chunks() -> Any:  # chunked: no Content-Length to refuse up front
            for _ in range(10):
                yield b"x" * 1024

        async with api.http.post(url, data=chunks()) as r:
            assert r.status == 413
        async with api.http.post(url, data=b"x" * 5000) as r:
            assert r.status == 413
        assert called == []
        async with api.http.post(url, data=b"x" * 4000) as r:
            assert r.status == 202
        assert called == [4000]


async def test_a_slow_handler_times_out_and_the_server_keeps_answering(start: Start) -> None:
    async with start(hook_timeout_s=0.5) as api:
        account_id, hooks = await _account(api)

        async def slow(request: HookRequest) -> HookResponse:
            await anyio.sleep(30)
            return HookResponse(200)

        hooks.register("slow", slow)
        url = f"{api.base}/hooks/loopback/{account_id}/slow"
        began = time.monotonic()
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                async with api.http.post(url) as r:
                    assert r.status == 504
                    assert (await r.json(content_type=None))["code"] == "hook_timeout"

            tg.start_soon(call)
            await anyio.sleep(0.1)
            async with api.http.get(api.base + "/health") as r:  # not stalled behind the slow call
                assert r.status == 200
        assert time.monotonic() - began < 10


async def test_refusals_and_failures_of_a_handler(start: Start) -> None:
    async with start() as api:
        account_id, hooks = await _account(api)

        async def refuse(request: HookRequest) -> HookResponse:
            if not request.secret_matches("s3cret", request.query.get("token")):
                raise HookRefused(403, "unknown sender")
            return HookResponse(204)

        async def broken(request: HookRequest) -> HookResponse:
            raise RuntimeError("internal detail that must not leak")

        hooks.register("refuse", refuse)
        hooks.register("broken", broken)
        base = f"{api.base}/hooks/loopback/{account_id}"
        async with api.http.post(base + "/refuse", params={"token": "guess"}) as r:
            assert r.status == 403 and await r.text() == "unknown sender"
        async with api.http.post(base + "/refuse", params={"token": "s3cret"}) as r:
            assert r.status == 204
        async with api.http.post(base + "/broken") as r:
            assert r.status == 500
            assert "internal detail" not in await r.text()
        hooks.unregister("refuse")
        async with api.http.post(base + "/refuse", params={"token": "s3cret"}) as r:
            assert r.status == 404


async def test_an_unknown_link_callback_state_is_a_404_page(start: Start) -> None:
    async with (
        start() as api,
        api.http.get(api.base + "/hooks/teams/link-callback", params={"state": "x", "code": "y"}) as r,
    ):
        assert r.status == 404 and r.content_type == "text/html"
