"""What the Signal fake knows: people, linked accounts, groups, attachments, and the envelopes it delivers.

Envelopes have signal-cli's JSON shape (``{"envelope": {...}, "account": "+..."}``, as signal-cli-rest-api
passes them on); ``SignalFake`` checks each against ``data.Message`` of the vendored swagger before it
leaves. The ``peer_*`` methods play the other people (and ``own_device_sent`` the person's own phone).
"""

from __future__ import annotations

import base64
import itertools
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

INBOX_MAX = 10_000
"""Envelopes kept for a polling receiver (normal mode); older ones are dropped, like a full queue."""
RECORDS_MAX = 10_000
"""Requests, sends, drops and violations kept (the oldest go first): a fake left running stays small."""
MESSAGES_MAX = 100_000
ATTACHMENTS_MAX = 1_000


def keep_last(records: list[Any], limit: int = RECORDS_MAX) -> None:
    """Trim ``records`` to its newest ``limit`` entries (after an append)."""
    if len(records) > limit:
        del records[: len(records) - limit]


def keep_newest(items: dict[Any, Any], limit: int) -> None:
    while len(items) > limit:
        del items[next(iter(items))]


@dataclass
class Person:
    number: str
    uuid: str
    name: str


@dataclass
class FakeAccount:
    """A number linked (or registered) on the REST API; ``linked`` turns false when the phone unlinks it."""

    person: Person
    device_name: str = "msgr-bridge"
    linked: bool = True


@dataclass
class FakeGroup:
    internal_id: str
    name: str
    members: list[str]

    @property
    def id(self) -> str:
        """The REST API's group id: ``group.`` + base64 of the internal id (what ``/v2/send`` takes)."""
        return "group." + base64.b64encode(self.internal_id.encode()).decode()


@dataclass
class Attachment:
    data: bytes
    content_type: str
    filename: str | None


@dataclass
class StoredMessage:
    """A message as the network holds it after edits, deletes and reactions (key: author, timestamp)."""

    author: str
    timestamp: int
    conversation: str
    text: str
    deleted: bool = False
    edits: int = 0
    reactions: dict[str, str] = field(default_factory=dict)
    """reactor's number -> emoji (Signal keeps one reaction per person and message)."""


@dataclass
class PendingLink:
    uri: str
    device_name: str
    number: str | None = None


@dataclass
class SignalModel:
    people: dict[str, Person] = field(default_factory=dict)
    accounts: dict[str, FakeAccount] = field(default_factory=dict)
    groups: dict[str, FakeGroup] = field(default_factory=dict)
    attachments: dict[str, Attachment] = field(default_factory=dict)
    links: list[PendingLink] = field(default_factory=list)
    inboxes: dict[str, deque[dict[str, Any]]] = field(default_factory=dict)
    messages: dict[tuple[str, int], StoredMessage] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    """What linked accounts did on the network (messages, edits, deletes, reactions, receipts, typing)."""
    _clock: int = 0
    _ids: Any = field(default_factory=itertools.count)

    # --- entities --------------------------------------------------------------------------------------

    def person(self, number: str, name: str | None = None) -> Person:
        if number not in self.people:
            self.people[number] = Person(number, str(uuid.uuid4()), name or f"Person {number[-4:]}")
        return self.people[number]

    def link_account(self, number: str, name: str | None = None, device_name: str = "msgr-bridge") -> None:
        self.accounts[number] = FakeAccount(self.person(number, name), device_name)
        self.inbox(number)

    def inbox(self, number: str) -> deque[dict[str, Any]]:
        return self.inboxes.setdefault(number, deque(maxlen=INBOX_MAX))

    def linked(self, number: str) -> bool:
        account = self.accounts.get(number)
        return account is not None and account.linked

    def add_group(self, name: str, members: list[str]) -> FakeGroup:
        group = FakeGroup(f"internal-{next(self._ids)}-{uuid.uuid4().hex[:8]}", name, list(members))
        self.groups[group.id] = group
        return group

    def add_attachment(self, data: bytes, content_type: str, filename: str | None) -> str:
        attachment_id = f"{uuid.uuid4().hex}{_extension(content_type)}"
        self.attachments[attachment_id] = Attachment(data, content_type, filename)
        keep_newest(self.attachments, ATTACHMENTS_MAX)
        return attachment_id

    # --- messages ------------------------------------------------------------------------------------

    def conversation(self, one: str, other: str, group: FakeGroup | None = None) -> str:
        """A group's id, or the two numbers of a 1:1 chat in order."""
        return group.id if group is not None else "|".join(sorted((one, other)))

    def store(self, author: str, ts: int, conversation: str, text: str) -> None:
        self.messages[(author, ts)] = StoredMessage(author, ts, conversation, text)
        keep_newest(self.messages, MESSAGES_MAX)

    def edit(self, author: str, target_ts: int, text: str) -> None:
        found = self.messages.get((author, target_ts))
        if found is not None and not found.deleted:  # apps only show edits from a message's author
            found.text, found.edits = text, found.edits + 1

    def delete(self, author: str, target_ts: int) -> None:
        found = self.messages.get((author, target_ts))
        if found is not None:
            found.deleted, found.text = True, ""

    def react(
        self, reactor: str, target_author: str, target_ts: int, emoji: str | None, remove: bool
    ) -> None:
        found = self.messages.get((target_author, target_ts))
        if found is None:
            return
        if remove:
            found.reactions.pop(reactor, None)
        elif emoji:
            found.reactions[reactor] = emoji

    def timestamp(self) -> int:
        """Milliseconds since the epoch, strictly increasing (Signal's message ids)."""
        self._clock = max(int(time.time() * 1000), self._clock + 1)
        return self._clock

    # --- envelopes -----------------------------------------------------------------------------------

    def envelope(self, account: str, source: Person, ts: int, **payload: Any) -> dict[str, Any]:
        return {
            "envelope": {
                "source": source.number,
                "sourceNumber": source.number,
                "sourceUuid": source.uuid,
                "sourceName": source.name,
                "sourceDevice": 1,
                "timestamp": ts,
                "serverReceivedTimestamp": ts + 5,
                "serverDeliveredTimestamp": ts + 9,
                **payload,
            },
            "account": account,
        }

    def group_info(self, group_id: str | None) -> dict[str, Any]:
        if group_id is None:
            return {}
        group = self.groups[group_id]
        return {
            "groupInfo": {
                "groupId": group.internal_id,
                "groupName": group.name,
                "revision": 1,
                "type": "DELIVER",
            }
        }

    def attachment_info(self, attachment_id: str) -> dict[str, Any]:
        item = self.attachments[attachment_id]
        info: dict[str, Any] = {"id": attachment_id, "contentType": item.content_type, "size": len(item.data)}
        if item.filename is not None:
            info["filename"] = item.filename
        return info

    def data_message(self, ts: int, text: str | None, group_id: str | None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"timestamp": ts, "expiresInSeconds": 0, "viewOnce": False}
        if text is not None:
            body["message"] = text
        return {**body, **self.group_info(group_id), **extra}

    # --- REST-side answers ------------------------------------------------------------------------------

    def contact_entries(self, account: str) -> list[dict[str, Any]]:
        return [
            {
                "number": p.number,
                "uuid": p.uuid,
                "name": p.name,
                "profile_name": p.name,
                "username": "",
                "color": "",
                "blocked": False,
                "message_expiration": "0",
                "given_name": p.name,
                "note": "",
                "nickname": {"name": "", "given_name": "", "family_name": ""},
                "profile": {
                    "given_name": p.name,
                    "lastname": "",
                    "about": "",
                    "has_avatar": False,
                    "last_updated_timestamp": 0,
                },
            }
            for p in self.people.values()
            if p.number != account
        ]

    def group_entries(self, account: str) -> list[dict[str, Any]]:
        return [
            {
                "name": g.name,
                "id": g.id,
                "internal_id": g.internal_id,
                "members": list(g.members),
                "admins": g.members[:1],
                "blocked": False,
                "pending_invites": [],
                "pending_requests": [],
                "invite_link": "",
                "description": "",
                "member": True,
                "permissions": {
                    "add_members": "only-admins",
                    "edit_group": "only-admins",
                    "send_messages": "every-member",
                },
            }
            for g in self.groups.values()
            if account in g.members
        ]


def _extension(content_type: str) -> str:
    return {"image/png": ".png", "image/jpeg": ".jpg", "text/plain": ".txt"}.get(content_type, "")
