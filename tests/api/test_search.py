"""``GET /v1/search`` against a running bridge on both backends: what inbound messages and API sends put in
the index, what their edits and deletes take out, scopes (a token of one account never sees another's
messages), filters, pages, snippets, and queries that must never reach the engine as syntax."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.testing.waiting import wait_until

from .conftest import Api, Start


async def _search(api: Api, token: str | None = None, **params: Any) -> tuple[int, Any]:
    return await api.call("GET", "/v1/search?" + urlencode(params), token)


async def _texts(api: Api, q: str, token: str | None = None, **params: Any) -> list[str]:
    status, body = await _search(api, token, q=q, **params)
    assert status == 200, body
    return [r["message"]["text"] for r in body["results"]]


async def _until_texts(api: Api, q: str, expected: list[str], **params: Any) -> None:
    async def found() -> bool:
        return await _texts(api, q, **params) == expected

    await wait_until(found, timeout=30, interval=0.05)  # a loaded machine delays delivery and indexing


async def _sent(api: Api, outbox_id: str) -> None:
    async def done() -> bool:
        _, body = await api.call("GET", f"/v1/outbox/{outbox_id}")
        return bool(body["state"] == "sent")

    await wait_until(done, timeout=30, interval=0.05)


async def test_inbound_messages_edits_and_deletes_reach_the_index(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        posted = net.post("g", "carol", "The quick zebra jumps over the lazy dog")
        await _until_texts(api, "zebra", ["The quick zebra jumps over the lazy dog"])
        _, body = await _search(api, q="ZEBRA")
        [hit] = body["results"]
        assert hit["account_id"] == a and hit["network"] == "loopback"
        assert hit["message"]["id"] == posted["id"] and hit["message"]["conversation_id"] == "g"
        start_, end = hit["highlights"][0]
        assert hit["snippet"][start_:end] == "zebra"

        net.edit("g", "carol", posted["id"], "The quick giraffe jumps")
        await _until_texts(api, "giraffe", ["The quick giraffe jumps"])
        assert await _texts(api, "zebra") == []

        net.delete("g", "carol", posted["id"])
        await _until_texts(api, "giraffe", [])
        assert await _texts(api, "quick") == []


async def test_api_sends_edits_and_deletes_reach_the_index(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        conv = f"/v1/accounts/{a}/conversations/g/messages"
        status, body = await api.call("POST", conv, json={"text": "hello walrus"})
        assert status == 202
        await _sent(api, body["outbox_id"])
        await _until_texts(api, "walrus", ["hello walrus"])
        [hit] = (await _search(api, q="walrus"))[1]["results"]
        assert hit["message"]["sender"]["is_self"] is True
        remote = hit["message"]["id"]

        status, body = await api.call("PATCH", f"{conv}/{remote}", json={"text": "hello narwhal"})
        assert status == 202
        await _sent(api, body["outbox_id"])
        await _until_texts(api, "narwhal", ["hello narwhal"])
        assert await _texts(api, "walrus") == []

        status, body = await api.call("DELETE", f"{conv}/{remote}")
        assert status == 202
        await _sent(api, body["outbox_id"])
        await _until_texts(api, "narwhal", [])


async def test_a_token_of_one_account_never_sees_another_accounts_messages(
    start: Start, net: LoopbackNetwork
) -> None:
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        b = await api.link("bob", "pw-bob")
        dm = net.direct("alice", "carol")
        net.post(dm.id, "carol", "secret pineapple for alice")
        net.post("g", "carol", "shared pineapple for everyone")
        await _until_texts(api, "pineapple", ["shared pineapple for everyone", "secret pineapple for alice"])
        bob_only = await api.token(f"read:{b}")
        assert await _texts(api, "pineapple", bob_only) == ["shared pineapple for everyone"]
        status, body = await _search(api, bob_only, q="pineapple")
        assert body["results"][0]["account_id"] == b  # seen by both: answered as the account it may read
        assert await _texts(api, "secret", bob_only) == []
        assert await _texts(api, "pineapple", bob_only, conversation=dm.id) == []
        status, body = await _search(api, bob_only, q="pineapple", account=a)
        assert status == 403 and body["code"] == "scope_missing"
        status, body = await _search(api, bob_only, q="pineapple", account="nobody")
        assert status == 404 and body["code"] == "account_not_found"
        sender_only = await api.token(f"send:{a}")
        status, body = await _search(api, sender_only, q="pineapple")
        assert status == 403 and body["code"] == "scope_missing"
        unknown_account = await api.token("read:gone")
        assert await _texts(api, "pineapple", unknown_account) == []

        # filters and pages, with an admin token
        assert await _texts(api, "pineapple", account=a, conversation=dm.id) == ["secret pineapple for alice"]
        assert await _texts(api, "pineapple", sender="nobody") == []
        assert await _texts(api, "pineapple", network="irc") == []
        assert len(await _texts(api, "pineapple", network="loopback", sender="carol")) == 2
        assert await _texts(api, "pineapple", since="2999-01-01T00:00:00Z") == []
        assert len(await _texts(api, "pineapple", until="2999-01-01T00:00:00+02:00")) == 2
        status, page = await _search(api, q="pineapple", limit=1)
        assert [r["message"]["text"] for r in page["results"]] == ["shared pineapple for everyone"]
        status, rest = await _search(api, q="pineapple", limit=1, cursor=page["next_cursor"])
        assert [r["message"]["text"] for r in rest["results"]] == ["secret pineapple for alice"]
        assert rest["next_cursor"] is None
        assert await _texts(api, '"for alice"') == ["secret pineapple for alice"]
        assert await _texts(api, "pineap*") == await _texts(api, "pineapple")


HOSTILE = [
    '"unterminated',
    "NEAR(a b)",
    "text:pineapple",
    "pineapple OR",
    "AND",
    "-pineapple",
    "^pineapple",
    "pine*apple",
    "(pineapple",
    "pineapple'",
    "a & b | !c <-> d:*",
    "\\",
    "'; DROP TABLE messages; --",
    '""',
    "🍍 pineapple",
    "x" * 200,
    "\x00pineapple\x07",
]


async def test_query_syntax_never_reaches_the_engine(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        await api.link("alice", "pw-alice")
        net.post("g", "carol", "pineapple and apple")
        await _until_texts(api, "pineapple", ["pineapple and apple"])
        for q in HOSTILE:
            status, body = await _search(api, q=q)
            assert status in (200, 400), (q, status, body)
            if status == 400:
                assert body["code"] == "invalid_query", (q, body)
        assert await _texts(api, "text:pineapple") == []  # read as the phrase "text pineapple"
        assert await _texts(api, "pineapple OR") == []  # OR is a word, not an operator
        assert await _texts(api, "pineapple AND") == ["pineapple and apple"]

        for params, code, field in (
            ({}, 422, "q"),
            ({"q": "   "}, 422, "q"),
            ({"q": "!!!"}, 400, None),
            ({"q": "x" * 257}, 400, None),
            ({"q": " ".join(["w"] * 17)}, 400, None),
            ({"q": "a", "limit": "0"}, 422, "limit"),
            ({"q": "a", "limit": "101"}, 422, "limit"),
            ({"q": "a", "cursor": "nope"}, 422, "cursor"),
            ({"q": "a", "cursor": base64.urlsafe_b64encode(b"s1:" + b"9" * 30).decode()}, 422, "cursor"),
            ({"q": "a", "since": "yesterday"}, 422, "since"),
            ({"q": "a", "until": "2026-01-01T00:00:00"}, 422, "until"),
            ({"q": "a", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422, "until"),
            ({"q": "a", "sender": "s" * 1001}, 422, "sender"),
            ({"q": "a", "conversation": "g\x00"}, 422, "conversation"),
        ):
            status, body = await _search(api, **params)
            assert status == code, (params, body)
            if field is not None:
                assert body["errors"][0]["field"] == field, (params, body)
            else:
                assert body["code"] == "invalid_query" and body["hint"], (params, body)


async def test_search_is_documented(start: Start) -> None:
    async with start() as api:
        _, doc = await api.call("GET", "/openapi.json")
        operation = doc["paths"]["/v1/search"]["get"]
        names = [p["name"] for p in operation["parameters"]]
        assert names == [
            "q",
            "account",
            "network",
            "conversation",
            "sender",
            "since",
            "until",
            "limit",
            "cursor",
        ]
        assert "read" in operation["description"]
