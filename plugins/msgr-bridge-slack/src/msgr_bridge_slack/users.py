"""The user directory the connector keeps: Slack user id -> the name people see, bounded (least recently
seen dropped first). Filled from ``users.list`` on connect and kept current by ``user_change`` events;
each pushed payload carries the names its event needs, so ``convert`` stays pure."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from msgr_bridge.schema import Contact

USERS_MAX = 20_000
MENTION = "<@"


class UserDirectory:
    def __init__(self, limit: int = USERS_MAX) -> None:
        self.names: OrderedDict[str, str] = OrderedDict()
        self.limit = limit

    def __len__(self) -> int:
        return len(self.names)

    def get(self, user_id: str, default: str | None = None) -> str | None:
        return self.names.get(user_id, default)

    def remember(self, user: Any) -> None:
        """Take a Slack user object (users.list, users.info, user_change); anything else is ignored."""
        if not isinstance(user, Mapping) or not isinstance(user.get("id"), str):
            return
        profile = user.get("profile")
        if not isinstance(profile, Mapping):
            profile = {}
        name = profile.get("display_name") or user.get("real_name") or user.get("name") or user["id"]
        self.names[user["id"]] = str(name)
        self.names.move_to_end(user["id"])
        while len(self.names) > self.limit:
            self.names.popitem(last=False)

    def names_for(self, event: Mapping[str, Any]) -> dict[str, str]:
        """Names of the users an event speaks of: its sender, inviter, and every ``<@U...>`` in its text
        (and in an edited message's old and new text)."""
        wanted: list[str] = []
        for part in (event, event.get("message"), event.get("previous_message")):
            if isinstance(part, Mapping):
                wanted += _user_ids(part)
        wanted += [event[k] for k in ("inviter",) if isinstance(event.get(k), str)]
        return {uid: self.names[uid] for uid in wanted if uid in self.names}

    def contacts(self, account_id: str, self_id: str) -> tuple[Contact, ...]:
        return tuple(
            Contact(
                network="slack",
                account_id=account_id,
                remote_id=uid,
                display_name=name,
                is_self=uid == self_id,
            )
            for uid, name in self.names.items()
        )


def _user_ids(message: Mapping[str, Any]) -> list[str]:
    text = message.get("text")
    found = [str(message["user"])] if isinstance(message.get("user"), str) else []
    if isinstance(text, str) and MENTION in text:
        for piece in text.split(MENTION)[1:200]:
            found.append(piece.split(">", 1)[0].split("|", 1)[0])
    return found
