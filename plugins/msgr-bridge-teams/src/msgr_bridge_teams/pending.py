"""Our own sends across a crash: which Graph message carries which transaction id.

Graph has no client-chosen id for a chat message, so the echo of our send is matched to its ``txn_id`` by
the message id the POST returned (``sent``). A crash between Graph accepting the POST and the bridge
recording the answer would lose that: the delivery worker, finding the send "on the wire" after the restart,
would send it again. So before each POST the send is written to keyed state as *pending*
(``pending/<txn id>``: conversation and plain text, 24 h TTL); once the POST returns, the entry gets the
message id and is kept ``KEEP_S`` more (a kill can also come after the answer, before the outbox recorded
it). After a restart the entries with an id fill ``sent`` again, and a message from ourselves that no
``sent`` entry names is matched to a pending send of the same conversation with the same plain text; its
echo then carries the ``txn_id`` and the worker marks the entry sent instead of sending it twice
(``Capabilities.echoes_own_sends``). The same text typed by the person in
another Teams client while a send was pending could be taken for it: the cost is one message not relayed
back, against one duplicated in Teams.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .convert import html_to_text

PREFIX = "pending/"
TTL_S = 86_400.0
KEEP_S = 900.0
"""How long a send's txn id stays findable by its message id after its POST returned."""
SENT_MAX = 2_000
PENDING_MAX = 500


def conversation_of(msg: dict[str, Any]) -> str | None:
    chat = msg.get("chatId")
    if isinstance(chat, str):
        return chat
    ident = msg.get("channelIdentity")
    if isinstance(ident, dict) and isinstance(ident.get("teamId"), str):
        return f"{ident['teamId']}/{ident.get('channelId')}"
    return None


def plain(msg_or_html: dict[str, Any] | str) -> str:
    if isinstance(msg_or_html, str):
        return html_to_text(msg_or_html)[0]
    body = msg_or_html.get("body")
    content = body.get("content") if isinstance(body, dict) else None
    return html_to_text(content)[0] if isinstance(content, str) else ""


class Pending:
    def __init__(self, state: Any, sent: OrderedDict[str, str]) -> None:
        self.state, self.sent = state, sent
        self.waiting: dict[str, dict[str, str]] = {}
        """txn id -> {"conv", "text"}: sends whose message id is not known."""

    async def load(self) -> None:
        stored = await self.state.list(PREFIX, limit=PENDING_MAX)
        for key, value in stored.items():
            if not isinstance(value, dict):
                continue
            txn = key.removeprefix(PREFIX)
            if isinstance(value.get("id"), str):
                self.remember(value["id"], txn)
            else:
                self.waiting[txn] = {k: str(v) for k, v in value.items()}

    async def before(self, txn_id: str, conv: str, html: str) -> None:
        entry = {"conv": conv, "text": plain(html)}
        self.waiting[txn_id] = entry
        await self.state.set(PREFIX + txn_id, entry, ttl_s=TTL_S)

    async def after(self, txn_id: str, message_id: str | None) -> None:
        """The POST returned ``message_id`` (kept ``KEEP_S``), or Graph refused it (None: forgotten)."""
        entry = self.waiting.pop(txn_id, None)
        if message_id is None:
            await self.state.delete(PREFIX + txn_id)
            return
        self.remember(message_id, txn_id)
        await self.state.set(PREFIX + txn_id, {**(entry or {}), "id": message_id}, ttl_s=KEEP_S)

    def remember(self, message_id: str, txn_id: str) -> None:
        self.sent[message_id] = txn_id
        while len(self.sent) > SENT_MAX:
            self.sent.popitem(last=False)

    async def adopt(self, items: list[dict[str, Any]], self_id: str) -> None:
        """Match our own messages that no send names to a pending send (see the module's docstring)."""
        if not self.waiting:
            return
        for msg in items:
            user = (msg.get("from") or {}).get("user") or {}
            msg_id = msg.get("id")
            if user.get("id") != self_id or not isinstance(msg_id, str) or msg_id in self.sent:
                continue
            conv, text = conversation_of(msg), plain(msg)
            txn = next((t for t, e in self.waiting.items() if e["conv"] == conv and e["text"] == text), None)
            if txn is not None:
                entry = self.waiting.pop(txn)
                self.remember(msg_id, txn)
                await self.state.set(PREFIX + txn, {**entry, "id": msg_id}, ttl_s=KEEP_S)
