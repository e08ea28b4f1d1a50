"""The Discord fake's REST handlers, one function per operation (the spec check has already passed).

Each takes the fake, the path parameters, the recorded request and who is asking (a user id, or
``webhook:<id>`` for webhook execution) and returns ``(status, JSON payload)``; refusals raise ``ApiError``
with Discord's error codes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .discord_gateway import INTENT_DIRECT_MESSAGES, INTENT_GUILD_MESSAGES
from .discord_rest import ApiError, Recorded

if TYPE_CHECKING:
    from .discord import DiscordFake

Handler = Callable[["DiscordFake", dict[str, str], Recorded, str], tuple[int, Any]]
MESSAGES = (INTENT_GUILD_MESSAGES, INTENT_DIRECT_MESSAGES)
MAX_WEBHOOKS_PER_CHANNEL = 15
NONCE_WINDOW_S = 300.0
"""How long ``enforce_nonce`` remembers a nonce (Discord: "the past few minutes")."""


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}


def _stored(message: dict[str, Any]) -> dict[str, Any]:
    """A message as REST reads give it back: the ``nonce`` is only in the create answer and the gateway."""
    return {k: v for k, v in _public(message).items() if k != "nonce"}


def me(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    return 200, fake.users[who]


def gateway_bot(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    limit = {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}
    return 200, {"url": fake.gateway_url, "shards": 1, "session_start_limit": limit}


def get_channel(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    return 200, fake.channel(p["channel_id"], who)


def history(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    """Newest first, as Discord answers; ``after`` gives the ``limit`` messages right after that id."""
    fake.channel(p["channel_id"], who)
    q = rec.query
    limit = int(q.get("limit", "50"))
    ordered = sorted(fake.messages[p["channel_id"]].values(), key=lambda m: int(m["id"]))
    if "after" in q:
        picked = [m for m in ordered if int(m["id"]) > int(q["after"])][:limit]
    elif "around" in q:
        index = next((i for i, m in enumerate(ordered) if int(m["id"]) >= int(q["around"])), len(ordered))
        picked = ordered[max(0, index - limit // 2) : index + (limit + 1) // 2]
    else:
        before = int(q.get("before", str(1 << 64)))
        picked = [m for m in ordered if int(m["id"]) < before][-limit:]
    return 200, [_stored(m) for m in reversed(picked)]


def _content(rec: Recorded) -> dict[str, Any]:
    body = rec.body or {}
    if not body.get("content") and not rec.files and not body.get("embeds"):
        raise ApiError(400, 50006, "Cannot send an empty message")
    return body


def create_message(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    channel = fake.channel(p["channel_id"], who)
    body = _content(rec)
    enforced = (
        (who, channel["id"], body.get("nonce")) if body.get("enforce_nonce") and body.get("nonce") else None
    )
    if enforced is not None:
        seen = fake.nonces.get(enforced)
        if seen is not None and time.monotonic() - seen[1] < NONCE_WINDOW_S:
            found = fake.messages[channel["id"]].get(seen[0])
            if found is not None:
                return 200, _public(found)  # the same author and nonce: Discord returns the first message
    extra: dict[str, Any] = {"attachments": fake.attach(channel["id"], rec.files)}
    if body.get("nonce") is not None:
        extra["nonce"] = body["nonce"]
    ref = body.get("message_reference")
    if ref:
        target = fake.messages[channel["id"]].get(ref["message_id"])
        if target is None and ref.get("fail_if_not_exists", True):
            raise ApiError(400, 50035, "Invalid Form Body: message_reference: Unknown message")
        if target is not None:
            extra |= {
                "type": 19,
                "referenced_message": _public(target),
                "message_reference": {"type": 0, "message_id": target["id"], "channel_id": channel["id"]},
            }
    message = fake.new_message(channel, fake.users[who], body.get("content") or "", **extra)
    if enforced is not None:
        now = time.monotonic()
        if len(fake.nonces) > 10_000:
            fake.nonces = {k: v for k, v in fake.nonces.items() if now - v[1] < NONCE_WINDOW_S}
        fake.nonces[enforced] = (message["id"], now)
    return 200, _public(message)


def get_message(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    fake.channel(p["channel_id"], who)
    return 200, _stored(fake.message(p["channel_id"], p["message_id"]))


def _apply_edit(fake: DiscordFake, channel: dict[str, Any], message: dict[str, Any], rec: Recorded) -> Any:
    body = rec.body or {}
    if "content" in body:
        message["content"] = body["content"] or ""
    message["edited_timestamp"] = datetime.now(UTC).isoformat()
    fake.dispatch("MESSAGE_UPDATE", channel, _public(message), MESSAGES)
    return _public(message)


def edit_message(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    channel = fake.channel(p["channel_id"], who)
    message = fake.message(channel["id"], p["message_id"])
    if message["author"]["id"] != who:
        raise ApiError(403, 50005, "Cannot edit a message authored by another user")
    return 200, _apply_edit(fake, channel, message, rec)


def delete_message(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    fake.channel(p["channel_id"], who)
    message = fake.message(p["channel_id"], p["message_id"])
    if message["author"]["id"] != who and who not in fake.message_managers:
        raise ApiError(403, 50013, "Missing Permissions")
    fake.delete(p["channel_id"], p["message_id"])
    return 204, None


def react(add: bool) -> Handler:
    def handler(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
        fake.channel(p["channel_id"], who)
        fake.react(who, p["channel_id"], p["message_id"], p["emoji_name"], add=add)
        return 204, None

    return handler


def typing(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    fake.channel(p["channel_id"], who)
    fake.typing(who, p["channel_id"])
    return 204, None


def list_webhooks(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    fake.channel(p["channel_id"], who)
    return 200, [w for w in fake.webhooks.values() if w["channel_id"] == p["channel_id"]]


def create_webhook(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    channel = fake.channel(p["channel_id"], who)
    if channel.get("type") not in (0, 5):
        raise ApiError(400, 50024, "Cannot execute action on this channel type")
    name = str((rec.body or {}).get("name", ""))
    if "clyde" in name.lower() or "discord" in name.lower():
        raise ApiError(400, 50035, 'Invalid Form Body: name: Username cannot contain "clyde" or "discord"')
    if sum(w["channel_id"] == channel["id"] for w in fake.webhooks.values()) >= MAX_WEBHOOKS_PER_CHANNEL:
        raise ApiError(400, 30007, "Maximum number of webhooks reached (15)")
    wid = fake.snowflake()
    webhook = {
        "id": wid,
        "type": 1,
        "guild_id": channel["guild_id"],
        "channel_id": channel["id"],
        "name": name,
        "avatar": None,
        "token": secrets.token_urlsafe(48),
        "application_id": who,
        "user": fake.users[who],
    }
    fake.webhooks[wid] = webhook
    return 200, webhook


def _webhook(fake: DiscordFake, p: dict[str, str]) -> dict[str, Any]:
    webhook = fake.webhooks.get(p["webhook_id"])
    if webhook is None or webhook["token"] != p["webhook_token"]:
        raise ApiError(404 if webhook is None else 401, 10015, "Unknown Webhook")
    return webhook


def _webhook_channel(fake: DiscordFake, webhook: dict[str, Any], rec: Recorded) -> dict[str, Any]:
    thread_id = rec.query.get("thread_id")
    if thread_id is None:
        return fake.channel(webhook["channel_id"])
    thread = fake.channel(thread_id)
    if thread.get("parent_id") != webhook["channel_id"]:
        raise ApiError(400, 220001, "Webhook can only be used with threads of its own channel")
    return thread


def execute_webhook(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    webhook = _webhook(fake, p)
    channel = _webhook_channel(fake, webhook, rec)
    body = _content(rec)
    name = body.get("username") or webhook["name"]
    if "clyde" in name.lower() or "discord" in name.lower():
        raise ApiError(
            400, 50035, 'Invalid Form Body: username: Username cannot contain "clyde" or "discord"'
        )
    author = {
        "id": webhook["id"],
        "username": name,
        "avatar": body.get("avatar_url"),
        "discriminator": "0000",
        "bot": True,
        "global_name": None,
    }
    attachments = fake.attach(channel["id"], rec.files)
    message = fake.new_message(
        channel,
        author,
        body.get("content") or "",
        webhook_id=webhook["id"],
        attachments=attachments,
        _avatar_url=body.get("avatar_url"),
    )
    return (200, _public(message)) if rec.query.get("wait") == "true" else (204, None)


def edit_webhook_message(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    webhook = _webhook(fake, p)
    channel = _webhook_channel(fake, webhook, rec)
    message = fake.message(channel["id"], p["message_id"])
    if message.get("webhook_id") != webhook["id"]:
        raise ApiError(404, 10008, "Unknown Message")
    return 200, _apply_edit(fake, channel, message, rec)


def delete_webhook_message(fake: DiscordFake, p: dict[str, str], rec: Recorded, who: str) -> tuple[int, Any]:
    webhook = _webhook(fake, p)
    channel = _webhook_channel(fake, webhook, rec)
    if fake.message(channel["id"], p["message_id"]).get("webhook_id") != webhook["id"]:
        raise ApiError(404, 10008, "Unknown Message")
    fake.delete(channel["id"], p["message_id"])
    return 204, None


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/users/@me"): me,
    ("GET", "/gateway/bot"): gateway_bot,
    ("GET", "/channels/{channel_id}"): get_channel,
    ("GET", "/channels/{channel_id}/messages"): history,
    ("POST", "/channels/{channel_id}/messages"): create_message,
    ("GET", "/channels/{channel_id}/messages/{message_id}"): get_message,
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"): edit_message,
    ("DELETE", "/channels/{channel_id}/messages/{message_id}"): delete_message,
    ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me"): react(True),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me"): react(False),
    ("POST", "/channels/{channel_id}/typing"): typing,
    ("GET", "/channels/{channel_id}/webhooks"): list_webhooks,
    ("POST", "/channels/{channel_id}/webhooks"): create_webhook,
    ("POST", "/webhooks/{webhook_id}/{webhook_token}"): execute_webhook,
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"): edit_webhook_message,
    ("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"): delete_webhook_message,
}
