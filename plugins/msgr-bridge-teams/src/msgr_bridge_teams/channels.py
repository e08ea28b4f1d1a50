"""Receiving channel messages: Graph's delegated delta query per channel, with replies as threads.

``GET /teams/{t}/channels/{c}/messages/delta`` returns the root messages changed since its ``deltaLink``
(the first call: every root of the last 8 months; only the newest ``IMPORT_ROOTS`` are imported). Replies
are not in the delta; a root whose thread got a reply is returned again, and its replies are read
(``…/messages/{root}/replies``, newest page) for those modified since the channel's last timestamp.

Per channel the connector keeps ``{"link": deltaLink, "stamp": newest lastModifiedDateTime}``; the
committed copy (``ctx.state['channels']``) moves when every payload of a round was acknowledged, so a
restart reads the channel again from the last committed link.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .client import Graph
from .convert import PAYLOAD_VERSION
from .poll import Known, changes, seen_of

IMPORT_ROOTS = 50
Entry = dict[str, str | None]


async def channel_changes(
    graph: Graph,
    conv: str,
    entry: Entry,
    known: Known,
    self_id: str,
    sent: dict[str, str],
    settle: Callable[[list[dict[str, Any]]], Awaitable[None]],
) -> tuple[list[dict[str, Any]], Entry]:
    team, _, channel = conv.partition("/")
    base = f"/teams/{team}/channels/{channel}/messages"
    link, stamp = entry.get("link"), entry.get("stamp")
    if link:
        roots, new_link = await graph.delta(link)
    else:
        roots, new_link = await graph.delta(f"{base}/delta", {"$top": "50"})
    await settle(roots)
    roots = sorted(
        (r for r in roots if isinstance(r.get("id"), str) and isinstance(r.get("lastModifiedDateTime"), str)),
        key=lambda r: str(r["lastModifiedDateTime"]),
    )
    if not link:
        roots = roots[-IMPORT_ROOTS:]
    out: list[dict[str, Any]] = []
    newest = stamp

    def emit(msg: dict[str, Any], key: str) -> None:
        nonlocal newest
        for part in changes(conv, msg, stamp, known.get(conv, key)):
            payload = {"v": PAYLOAD_VERSION, "self_id": self_id, "conversation": conv, "message": msg, **part}
            if part["change"] == "message" and msg["id"] in sent:
                payload["txn_id"] = sent[msg["id"]]
            out.append(payload)
        known.put(conv, key, seen_of(msg))
        modified = str(msg["lastModifiedDateTime"])
        newest = modified if newest is None or modified > newest else newest

    for root in roots:
        emit(root, root["id"])
        if link:
            replies = await graph.pages(f"{base}/{root['id']}/replies", {"$top": "50"}, 1)
            await settle(replies)
            fresh = [
                r
                for r in replies
                if isinstance(r.get("id"), str) and str(r.get("lastModifiedDateTime", "")) > (stamp or "")
            ]
            for reply in sorted(fresh, key=lambda r: str(r["lastModifiedDateTime"])):
                reply.setdefault("replyToId", root["id"])
                emit(reply, f"{root['id']}/{reply['id']}")
    return out, {"link": new_link or link, "stamp": newest}
