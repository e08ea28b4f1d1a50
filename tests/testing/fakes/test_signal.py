"""The signal-cli-rest-api fake: it refuses what the published API description refuses, answers in the
upstream shapes and words, and injects its faults."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from msgr_bridge.testing.fakes.signal import RATE_LIMITED, SWAGGER, UNKNOWN_ACCOUNT, SignalFake
from msgr_bridge.testing.waiting import wait_until

ME, BOB = "+15550200001", "+15550200002"


@pytest.fixture
async def fake() -> AsyncIterator[SignalFake]:
    async with SignalFake() as server:
        server.link(ME, "Me")
        server.person(BOB, "Bob")
        yield server


@pytest.fixture
async def http(fake: SignalFake) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(fake.base_url) as session:
        yield session


async def test_unknown_paths_fields_and_parameters_are_refused(
    fake: SignalFake, http: aiohttp.ClientSession
) -> None:
    async with http.get("/v1/nothing-here") as r:
        assert r.status == 404
    body = {"number": ME, "recipients": [BOB], "message": "hi", "mesage_typo": 1}
    async with http.post("/v2/send", json=body) as r:
        assert r.status == 400 and "mesage_typo" in (await r.json())["error"]
    async with http.post("/v2/send", json={"number": ME, "message": "no recipients"}) as r:
        assert r.status == 400 and "recipients" in (await r.json())["error"]
    async with http.post(
        f"/v1/receipts/{ME}", json={"recipient": BOB, "receipt_type": "seen", "timestamp": 1}
    ) as r:
        assert r.status == 400  # not one of the enum's "read" / "viewed"
    async with http.get(f"/v1/contacts/{ME}", params={"everyone": "true"}) as r:
        assert r.status == 400
    assert len(fake.violations) == 5 and fake.sent == []


async def test_answers_match_the_api_description(fake: SignalFake, http: aiohttp.ClientSession) -> None:
    group = fake.group("Friends", [ME, BOB])
    for path in ("/v1/about", "/v1/accounts", f"/v1/contacts/{ME}", f"/v1/groups/{ME}"):
        async with http.get(path) as r:
            assert r.status == 200, path
    async with http.get("/v1/qrcodelink", params={"device_name": "bridge"}) as r:
        assert r.content_type == "image/png" and (await r.read()).startswith(b"\x89PNG")
    async with http.post("/v2/send", json={"number": ME, "recipients": [group.id], "message": "hi"}) as r:
        assert r.status == 201 and (await r.json())["timestamp"].isdigit()
    assert fake.violations == [] and fake.sent[0]["recipients"] == [group.id]


async def test_envelopes_are_checked_against_the_description(fake: SignalFake) -> None:
    assert SWAGGER.check_value({"$ref": "#/definitions/data.Message"}, {"account": ME, "envelope": {}}, "x")
    with pytest.raises(AssertionError):
        fake.deliver(ME, {"account": ME, "envelope": {"timestamp": "yesterday"}})


async def test_websocket_delivery_and_what_happens_without_a_listener(
    fake: SignalFake, http: aiohttp.ClientSession
) -> None:
    bob = fake.person(BOB)
    fake.peer_message(bob, ME, "nobody listens")  # json-rpc mode: dropped, as upstream does
    async with http.get(f"/v1/receive/{ME}") as r:
        assert r.status == 400 and "websocket" in (await r.json())["error"]
    async with http.ws_connect(f"/v1/receive/{ME}") as ws:
        await wait_until(lambda: fake.listening(ME) > 0, timeout=5)
        fake.peer_message(bob, ME, "now")
        got = await asyncio.wait_for(ws.receive_json(), 5)
        assert got["account"] == ME and got["envelope"]["dataMessage"]["message"] == "now"
        fake.drop_websockets()
        closing = await asyncio.wait_for(ws.receive(), 5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert [d["envelope"]["dataMessage"]["message"] for d in fake.dropped] == ["nobody listens"]


async def test_rate_limit_and_challenge_are_worded_as_upstream(
    fake: SignalFake, http: aiohttp.ClientSession
) -> None:
    fake.rate_limit(ME, challenge_tokens=["tok-1"])
    async with http.post("/v2/send", json={"number": ME, "recipients": [BOB], "message": "x"}) as r:
        assert r.status == 429
        assert await r.json() == {"error": RATE_LIMITED, "challenge_tokens": ["tok-1"], "account": ME}
    async with http.post("/v2/send", json={"number": ME, "recipients": [BOB], "message": "x"}) as r:
        assert r.status == 201  # one fault, used up


async def test_link_by_qr_code_and_unlink(fake: SignalFake, http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/qrcodelink/raw", params={"device_name": "bridge"}) as r:
        assert (await r.json())["device_link_uri"].startswith("sgnl://linkdevice?uuid=")
    fake.scan("+15550200003")
    async with http.get("/v1/accounts") as r:
        assert set(await r.json()) == {ME, "+15550200003"}
    fake.unlink(ME)
    async with http.get("/v1/accounts") as r:
        assert await r.json() == ["+15550200003"]
    async with http.post("/v2/send", json={"number": ME, "recipients": [BOB], "message": "x"}) as r:
        assert r.status == 400 and (await r.json())["error"] == UNKNOWN_ACCOUNT


async def test_normal_mode_polls_and_drains() -> None:
    async with SignalFake(mode="normal") as fake, aiohttp.ClientSession(fake.base_url) as http:
        fake.link(ME)
        fake.peer_message(fake.person(BOB), ME, "kept until polled")
        fake.peer_message(fake.person(BOB), ME, "the next one")
        async with http.get(f"/v1/receive/{ME}", params={"timeout": "1", "max_messages": "1"}) as r:
            (first,) = await r.json()
        async with http.get(f"/v1/receive/{ME}") as r:
            (second,) = await r.json()
        async with http.get(f"/v1/receive/{ME}") as r:
            assert await r.json() == []
        assert second["envelope"]["dataMessage"]["message"] == "the next one"
    assert first["envelope"]["dataMessage"]["message"] == "kept until polled"


async def test_runs_standalone() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "msgr_bridge.testing.fakes.signal", "--port", "0", "--auto-link", ME,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert found, line
        async with aiohttp.ClientSession(found.group(0)) as http:
            async with http.get("/v1/about") as r:
                assert (await r.json())["mode"] == "json-rpc"
            async with http.get("/v1/qrcodelink/raw", params={"device_name": "bridge"}) as r:
                assert r.status == 200
            async with http.get("/v1/accounts") as r:
                assert await r.json() == [ME]  # --auto-link: the shown code was "scanned" by ME
    finally:
        process.terminate()
        await process.wait()


async def test_messages_are_modelled_with_their_edits_deletes_and_reactions(
    fake: SignalFake, http: aiohttp.ClientSession
) -> None:
    bob = fake.person(BOB)
    theirs = fake.peer_message(bob, ME, "from bob")
    async with http.post("/v2/send", json={"number": ME, "recipients": [BOB], "message": "mine"}) as r:
        mine = int((await r.json())["timestamp"])
    body = {"number": ME, "recipients": [BOB], "message": "mine, edited", "edit_timestamp": mine}
    async with http.post("/v2/send", json=body) as r:
        assert r.status == 201
    reaction = {"recipient": BOB, "reaction": "👍", "target_author": BOB, "timestamp": theirs}
    async with http.post(f"/v1/reactions/{ME}", json=reaction) as r:
        assert r.status == 204
    fake.peer_reaction(bob, ME, "❤️", fake.model.accounts[ME].person, mine)
    fake.peer_edit(bob, ME, mine, "bob cannot edit my message")
    fake.peer_delete(bob, ME, theirs)
    own, other = fake.model.messages[(ME, mine)], fake.model.messages[(BOB, theirs)]
    assert (own.text, own.edits, own.reactions, own.conversation) == (
        "mine, edited",
        1,
        {BOB: "❤️"},
        f"{ME}|{BOB}",
    )
    assert other.deleted and other.text == "" and other.reactions == {ME: "👍"}


async def test_records_are_bounded(fake: SignalFake, http: aiohttp.ClientSession) -> None:
    from msgr_bridge.testing.fakes import signal_model

    bob = fake.person(BOB)
    for _ in range(30):
        fake.peer_message(bob, ME, "nobody listens")  # dropped: no websocket
    for _ in range(30):
        async with http.get("/v1/about") as r:
            assert r.status == 200
    assert len(fake.dropped) == 30 and len(fake.requests) == 30
    signal_model.keep_last(fake.dropped, 10)
    assert len(fake.dropped) == 10 and fake.dropped[-1]["envelope"]["timestamp"] == max(
        m["envelope"]["timestamp"] for m in fake.dropped
    )
    messages = dict(fake.model.messages)
    signal_model.keep_newest(messages, 5)
    assert list(messages) == list(fake.model.messages)[-5:]
