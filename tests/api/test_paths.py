"""Conversation ids that a URL path cannot carry as they are (``127.0.0.1/#channel``): every conversation
has a URL-safe ``path_id`` the API maps back; percent-encoding works too; a bare 404 says how."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from msgr_bridge_loopback import LoopbackNetwork
from yarl import URL

from msgr_bridge.api.paths import from_path, path_id
from msgr_bridge.testing.waiting import wait_until

from .conftest import Start

IRC_LIKE = "127.0.0.1/#channel"


@pytest.mark.parametrize(
    "raw",
    [
        "general",
        "!room:matrix.org",
        "user@example.org",
        IRC_LIKE,
        "a b?c%d",
        "~tilde",
        "..",
        "ünïcode",
        "+/=",
    ],
)
def test_path_ids_are_url_safe_and_map_back(raw: str) -> None:
    pid = path_id(raw)
    assert quote(pid, safe="") == pid.replace("@", "%40").replace(":", "%3A").replace("!", "%21")
    assert "/" not in pid and "#" not in pid and "?" not in pid and pid not in (".", "..")
    assert from_path(pid) == raw


def test_plain_ids_are_their_own_path_form() -> None:
    assert path_id("general") == "general" and path_id(IRC_LIKE) == "~MTI3LjAuMC4xLyNjaGFubmVs"
    assert from_path("~not base64!") is None and from_path("~") is None


async def test_a_conversation_id_with_a_slash_and_a_hash_works_in_paths(
    start: Start, net: LoopbackNetwork
) -> None:
    net.create_group(IRC_LIKE, "#channel", ["alice", "bob"])
    async with start() as api:
        a = await api.link("alice", "pw-alice")
        net.post(IRC_LIKE, "bob", "hi from irc")
        base = f"/v1/accounts/{a}/conversations"

        async def listed() -> list[dict[str, object]]:
            _, page = await api.call("GET", base)
            return [c for c in page["conversations"] if c["id"] == IRC_LIKE]

        await wait_until(listed)
        [conv] = await listed()
        pid = str(conv["path_id"])
        assert pid == path_id(IRC_LIKE) and pid.startswith("~")

        async def history(segment: str) -> tuple[int, object]:
            url = URL(api.base + f"{base}/{segment}/messages", encoded=True)
            async with api.http.get(url, headers=api.h()) as r:
                return r.status, await r.json()

        async def stored() -> bool:  # the conversation is listed by the sync, maybe before the message
            status, page = await history(pid)
            return status == 200 and bool(page["messages"])  # type: ignore[index]

        await wait_until(stored)
        for segment in (pid, quote(IRC_LIKE, safe="")):
            status, page = await history(segment)
            assert status == 200, (segment, page)
            [m] = page["messages"]  # type: ignore[index]
            assert m["text"] == "hi from irc" and m["conversation_id"] == IRC_LIKE
            assert m["conversation_path_id"] == pid

        status, entry = await api.call("POST", f"{base}/{pid}/messages", json={"text": "hello irc"})
        assert status == 202 and entry["conversation_id"] == IRC_LIKE, entry

        async def delivered() -> bool:
            return any(p.get("text") == "hello irc" and p.get("conversation") == IRC_LIKE for p in net.log)

        await wait_until(delivered)
        status, caps = await api.call("GET", f"{base}/{pid}/capabilities")
        assert status == 200 and caps["conversation_id"] == IRC_LIKE

        # unencoded, the '#' starts a fragment and the '/' a new segment: a 404 that says what to do
        status, problem = await history("127.0.0.1/#channel")
        assert status == 404 and "path_id" in problem["hint"], problem  # type: ignore[index]
        status, problem = await history("~bad!")
        assert status == 404 and problem["code"] == "conversation_not_found" and "path_id" in problem["hint"]  # type: ignore[index]
