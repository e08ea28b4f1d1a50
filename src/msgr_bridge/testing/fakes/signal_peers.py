"""The other side of the Signal fake: what other people (and the person's own phone) do, and what the
linked accounts did, recorded in ``SignalModel.sent`` and delivered to other linked accounts of the fake."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .signal_model import FakeGroup, Person, keep_last

if TYPE_CHECKING:
    from .signal_model import SignalModel

File = tuple[bytes, str, str | None]
"""An attachment as a peer sends it: (bytes, content type, file name)."""


class PeerActions:
    model: SignalModel
    sync_echo: bool
    on_sent: Callable[[dict[str, Any]], None] | None = None
    """Called with each entry recorded in ``sent`` (benchmarks time arrivals with it)."""

    def deliver(self, account: str, message: dict[str, Any]) -> None:
        raise NotImplementedError

    # --- other people ------------------------------------------------------------------------------------

    def peer_message(
        self,
        sender: Person,
        account: str,
        text: str | None,
        *,
        group: FakeGroup | None = None,
        quote: tuple[int, Person] | None = None,
        files: list[File] | None = None,
    ) -> int:
        """``sender`` writes to ``account`` (or into ``group``); returns the message's timestamp (its id)."""
        ts = self.model.timestamp()
        extra: dict[str, Any] = {}
        if quote is not None:
            quoted_ts, author = quote
            extra["quote"] = {"id": quoted_ts, "author": author.number, "authorNumber": author.number,
                              "authorUuid": author.uuid, "text": "", "attachments": []}  # fmt: skip
        if files:
            ids = [self.model.add_attachment(data, mime, name) for data, mime, name in files]
            extra["attachments"] = [self.model.attachment_info(i) for i in ids]
        data = self.model.data_message(ts, text, _gid(group), **extra)
        self.model.store(
            sender.number, ts, self.model.conversation(sender.number, account, group), text or ""
        )
        self.deliver(account, self.model.envelope(account, sender, ts, dataMessage=data))
        return ts

    def peer_edit(
        self, sender: Person, account: str, target_ts: int, text: str, group: FakeGroup | None = None
    ) -> int:
        ts = self.model.timestamp()
        data = self.model.data_message(ts, text, _gid(group))
        edit = {"targetSentTimestamp": target_ts, "dataMessage": data}
        self.model.edit(sender.number, target_ts, text)
        self.deliver(account, self.model.envelope(account, sender, ts, editMessage=edit))
        return ts

    def peer_delete(
        self, sender: Person, account: str, target_ts: int, group: FakeGroup | None = None
    ) -> int:
        ts = self.model.timestamp()
        data = self.model.data_message(ts, None, _gid(group), remoteDelete={"timestamp": target_ts})
        self.model.delete(sender.number, target_ts)
        self.deliver(account, self.model.envelope(account, sender, ts, dataMessage=data))
        return ts

    def peer_reaction(
        self,
        sender: Person,
        account: str,
        emoji: str,
        target_author: Person,
        target_ts: int,
        *,
        remove: bool = False,
        group: FakeGroup | None = None,
    ) -> int:
        ts = self.model.timestamp()
        reaction = {"emoji": emoji, "isRemove": remove, "targetAuthor": target_author.number,
                    "targetAuthorNumber": target_author.number, "targetAuthorUuid": target_author.uuid,
                    "targetSentTimestamp": target_ts}  # fmt: skip
        data = self.model.data_message(ts, None, _gid(group), reaction=reaction)
        self.model.react(sender.number, target_author.number, target_ts, emoji, remove)
        self.deliver(account, self.model.envelope(account, sender, ts, dataMessage=data))
        return ts

    def peer_receipt(
        self, sender: Person, account: str, timestamps: list[int], *, kind: str = "read"
    ) -> None:
        ts = self.model.timestamp()
        receipt = {"when": ts, "isDelivery": kind == "delivery", "isRead": kind == "read",
                   "isViewed": kind == "viewed", "timestamps": timestamps}  # fmt: skip
        self.deliver(account, self.model.envelope(account, sender, ts, receiptMessage=receipt))

    def peer_typing(
        self, sender: Person, account: str, *, active: bool = True, group: FakeGroup | None = None
    ) -> None:
        ts = self.model.timestamp()
        typing: dict[str, Any] = {"action": "STARTED" if active else "STOPPED", "timestamp": ts}
        if group is not None:
            typing["groupId"] = group.internal_id
        self.deliver(account, self.model.envelope(account, sender, ts, typingMessage=typing))

    def own_device_sent(
        self,
        account: str,
        text: str,
        *,
        destination: Person | None = None,
        group: FakeGroup | None = None,
        ts: int | None = None,
    ) -> int:
        """The person sent ``text`` from their phone: linked devices get a sync message."""
        ts = ts or self.model.timestamp()
        other = destination.number if destination is not None else ""
        self.model.store(account, ts, self.model.conversation(account, other, group), text)
        self.deliver(account, self._sync(account, ts, text, destination, group))
        return ts

    def _sync(
        self, account: str, ts: int, text: str, to: Person | None, group: FakeGroup | None, **extra: Any
    ) -> dict[str, Any]:
        sent = self.model.data_message(ts, text, _gid(group), **extra)
        if to is not None:
            sent.update(destination=to.number, destinationNumber=to.number, destinationUuid=to.uuid)
        me = self.model.accounts[account].person
        return self.model.envelope(account, me, ts, syncMessage={"sentMessage": sent})

    # --- what linked accounts do ----------------------------------------------------------------------

    def _resolve(self, recipient: str) -> Person | FakeGroup | None:
        if recipient in self.model.groups:
            return self.model.groups[recipient]
        if recipient in self.model.people:
            return self.model.people[recipient]
        return next((p for p in self.model.people.values() if p.uuid == recipient), None)

    def record_send(
        self,
        account: str,
        body: dict[str, Any],
        files: list[tuple[str, str | None, bytes]],
        ts: int,
        *,
        styles: list[str] | None = None,
    ) -> None:
        """Record a send (``body["message"]`` as Signal carries it, after styled markers were read) and
        deliver it; ``styles`` are its ``start:length:STYLE`` ranges, ``mentions`` are kept as sent."""
        edit_of = body.get("edit_timestamp")
        entry: dict[str, Any] = {
            "kind": "edit" if edit_of else "message",
            "account": account,
            "recipients": list(body["recipients"]),
            "message": body.get("message", ""),
            "timestamp": ts,
            "target": edit_of,
            "attachments": [{"content_type": m, "filename": f, "data": d} for m, f, d in files],
            "styles": list(styles or ()),
            "mentions": list(body.get("mentions") or ()),
        }
        if body.get("quote_timestamp") is not None:
            entry["quote"] = {"timestamp": body["quote_timestamp"], "author": body.get("quote_author")}
        self._record(entry)
        me = self.model.accounts[account].person
        for recipient in body["recipients"]:
            target = self._resolve(recipient)
            group = target if isinstance(target, FakeGroup) else None
            if edit_of:
                self.model.edit(account, edit_of, entry["message"])
            elif isinstance(target, Person | FakeGroup):
                other = target.number if isinstance(target, Person) else ""
                self.model.store(
                    account, ts, self.model.conversation(account, other, group), entry["message"]
                )
            people = (
                group.members if group is not None else [target.number] if isinstance(target, Person) else []
            )
            for number in people:
                if number != account and self.model.linked(number):
                    text = body.get("message", "")
                    if edit_of:
                        data = self.model.data_message(ts, text, _gid(group))
                        payload: dict[str, Any] = {
                            "editMessage": {"targetSentTimestamp": edit_of, "dataMessage": data}
                        }
                    else:
                        payload = {"dataMessage": self.model.data_message(ts, text, _gid(group))}
                    self.deliver(number, self.model.envelope(number, me, ts, **payload))
            if self.sync_echo and not edit_of:
                to = target if isinstance(target, Person) else None
                self.deliver(account, self._sync(account, ts, body.get("message", ""), to, group))

    def record_action(self, account: str, kind: str, recipient: str, **fields: Any) -> None:
        self._record({"kind": kind, "account": account, "recipient": recipient, **fields})
        if kind == "delete":
            self.model.delete(account, fields["target"])
        elif kind == "reaction":
            author = self._resolve(fields["target_author"])
            if isinstance(author, Person):
                self.model.react(
                    account, author.number, fields["target"], fields.get("emoji"), fields["remove"]
                )

    def _record(self, entry: dict[str, Any]) -> None:
        self.model.sent.append(entry)
        keep_last(self.model.sent)
        if self.on_sent is not None:
            self.on_sent(entry)


def _gid(group: FakeGroup | None) -> str | None:
    return None if group is None else group.id
