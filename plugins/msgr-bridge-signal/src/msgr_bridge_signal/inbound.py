"""What the connector does with each received item before the core gets it: signal-cli-rest-api's error
frames are logged (or end the connection when they say the number is no longer linked), a sync message
that is the echo of one of our sends gets our ``txn_id``, a receipt gets the groups of the messages it names
(``receipt_groups``, from a bounded map in ``ctx.state`` kept across restarts: Signal's receipts do not say
which group a message went to), and attachments are streamed into the core's storage
(``ctx.media.receive``) so the payload can name their share-link URLs."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from msgr_bridge.errors import AuthenticationFailed, BridgeError

from .client import UNLINKED_WORDS, SignalApi
from .config import SignalSettings
from .convert import PAYLOAD_VERSION, RECEIPTS_MAX

OURS_MAX = 4096
"""Timestamps of our recent sends remembered to recognise their sync-message echoes."""
ATTACHMENTS_MAX = 32
GROUP_SENDS_MAX = 20_000
"""Our group messages whose receipts can be placed in their group (the most recent ones)."""
GROUP_SENDS_TTL_S = 30 * 24 * 3600.0


class Inbound:
    def __init__(self, ctx: Any, settings: SignalSettings, number: str, log: Any) -> None:
        self.ctx, self.settings, self.number, self.log = ctx, settings, number, log
        self.ours: OrderedDict[int, tuple[str, str]] = OrderedDict()
        """Our recent sends: timestamp -> (transaction id, conversation)."""
        self.group_sends = ctx.state.map("group_sends", max_entries=GROUP_SENDS_MAX)

    async def remember(self, stamp: int, txn_id: str, conversation_id: str) -> None:
        self.ours[stamp] = (txn_id, conversation_id)
        while len(self.ours) > OURS_MAX:
            self.ours.popitem(last=False)
        if conversation_id.startswith("group."):
            await self.group_sends.set(str(stamp), conversation_id, ttl_s=GROUP_SENDS_TTL_S)

    async def handle(self, api: SignalApi, raw: Any, stopped: Callable[[], bool]) -> None:
        """Push one frame (or polled item) as a payload, unless the connector stopped meanwhile."""
        try:
            item = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            item = {"unparsable": str(raw)[:1000]}
        if isinstance(item, dict) and "error" in item and "envelope" not in item:
            said = str(item["error"])
            if any(words in said.lower() for words in UNLINKED_WORDS):
                raise AuthenticationFailed(f"signal-cli reports {self.number}: {said}")
            self.log.warning("signal.receive_error", error=said[:500])
            return
        payload: dict[str, Any] = (
            {**item, "v": PAYLOAD_VERSION} if isinstance(item, dict) else {"v": 1, "raw": item}
        )
        self._mark_echo(payload)
        await self._mark_receipt_groups(payload)
        await self._store_media(api, payload)
        if not stopped():
            await self.ctx.sink.push(payload)

    def _mark_echo(self, payload: dict[str, Any]) -> None:
        sent = _path(payload, "envelope", "syncMessage", "sentMessage")
        stamp = sent.get("timestamp") if sent is not None else None
        if isinstance(stamp, int) and stamp in self.ours:
            payload["txn_id"] = self.ours[stamp][0]

    async def _mark_receipt_groups(self, payload: dict[str, Any]) -> None:
        receipt = _path(payload, "envelope", "receiptMessage")
        stamps = receipt.get("timestamps") if receipt is not None else None
        if not isinstance(stamps, list):
            return
        groups = {}
        for stamp in stamps[:RECEIPTS_MAX]:
            recent = self.ours.get(stamp) if isinstance(stamp, int) else None
            # a recent send is known here; only older ones (or from before a restart) are looked up
            group = recent[1] if recent is not None else await self.group_sends.get(str(stamp))
            if isinstance(group, str) and group.startswith("group."):
                groups[str(stamp)] = group
        if groups:
            payload["receipt_groups"] = groups

    async def _store_media(self, api: SignalApi, payload: dict[str, Any]) -> None:
        envelope = payload.get("envelope")
        data = None
        for path in (("dataMessage",), ("syncMessage", "sentMessage"), ("editMessage", "dataMessage")):
            data = data or _path(envelope, *path)
        items = data.get("attachments") if data is not None else None
        if not isinstance(items, list):
            return
        stored: dict[str, Any] = {}
        for item in items[:ATTACHMENTS_MAX]:
            attachment_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(attachment_id, str):
                continue
            name = item.get("filename") if isinstance(item.get("filename"), str) else attachment_id
            mime = (
                item.get("contentType")
                if isinstance(item.get("contentType"), str)
                else "application/octet-stream"
            )
            try:
                async with api.attachment(attachment_id) as chunks:
                    saved = await self.ctx.media.receive(
                        chunks, name=name, mime_type=mime, max_bytes=self.settings.max_attachment_bytes
                    )
                stored[attachment_id] = {"url": saved.url, "size": saved.size}
            except BridgeError as exc:  # kept as a reference without a file; the message still arrives
                self.log.warning("signal.attachment_not_stored", attachment=attachment_id, error=exc.message)
        if stored:
            payload["media"] = stored


def _path(value: Any, *keys: str) -> dict[str, Any] | None:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else None
