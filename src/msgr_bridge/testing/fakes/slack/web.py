"""The Web API methods the fake serves: ``handler(call) -> response fields`` (``ok: true`` is added).

Each handler reads the already checked arguments of ``call`` and answers what Slack answers, or raises
``SlackError`` with Slack's error code. Paging follows Slack: an opaque ``cursor`` argument and
``response_metadata.next_cursor`` ("" on the last page).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .entities import TEAM_DOMAIN, TEAM_ID, Msg, SlackError, Token
from .model import Workspace

if TYPE_CHECKING:
    from .server import FakeSlack

HISTORY_MAX = 999
NON_MARKETPLACE_HISTORY_MAX = 15
"""Since May 2025 apps outside the Slack Marketplace get at most 15 messages per history/replies call."""


@dataclass
class Call:
    fake: FakeSlack
    method: str
    token: Token
    args: dict[str, Any]

    @property
    def ws(self) -> Workspace:
        return self.fake.workspace

    @property
    def me(self) -> str:
        return self.token.user_id

    def text(self, name: str, default: str = "") -> str:
        value = self.args.get(name, default)
        return value if isinstance(value, str) else json.dumps(value) if value is not None else default

    def number(self, name: str, default: int, maximum: int) -> int:
        try:
            return max(1, min(int(self.args.get(name, default) or default), maximum))
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None

    def flag(self, name: str) -> bool:
        return str(self.args.get(name, "")).lower() in ("1", "true")


Handler = Callable[[Call], Awaitable[dict[str, Any]]]
HANDLERS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def page[T](items: list[T], call: Call, *, default: int = 100, maximum: int = 1000) -> tuple[list[T], str]:
    """One page of ``items`` and the cursor of the next ("" when this is the last)."""
    limit = call.number("limit", default, maximum)
    cursor = call.text("cursor")
    try:
        start = int(base64.b64decode(cursor).decode().removeprefix("next:")) if cursor else 0
    except ValueError:
        raise SlackError("invalid_cursor") from None
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    return chunk, base64.b64encode(f"next:{start + limit}".encode()).decode() if more else ""


# --- identity ---------------------------------------------------------------------------------------


@method("api.test")
async def api_test(call: Call) -> dict[str, Any]:
    return {"args": {k: v for k, v in call.args.items() if k != "token"}}


@method("auth.test")
async def auth_test(call: Call) -> dict[str, Any]:
    user = call.ws.user(call.me)
    return {
        "url": f"https://{TEAM_DOMAIN}.slack.com/",
        "team": TEAM_DOMAIN,
        "user": user.name,
        "team_id": TEAM_ID,
        "user_id": user.id,
        "is_enterprise_install": False,
    }


@method("users.list")
async def users_list(call: Call) -> dict[str, Any]:
    members, cursor = page([u.as_api() for u in call.ws.users.values()], call, default=200)
    return {"members": members, "cache_ts": 0, "response_metadata": {"next_cursor": cursor}}


@method("users.info")
async def users_info(call: Call) -> dict[str, Any]:
    return {"user": call.ws.user(call.text("user")).as_api()}


# --- conversations ----------------------------------------------------------------------------------


@method("conversations.list")
async def conversations_list(call: Call) -> dict[str, Any]:
    kinds = {"public_channel": "public", "private_channel": "private", "im": "im", "mpim": "mpim"}
    wanted = {kinds.get(t.strip(), "?") for t in (call.text("types") or "public_channel").split(",")}
    exclude_archived = call.flag("exclude_archived")
    found = [
        c.as_api(call.me)
        for c in call.ws.channels.values()
        if c.kind in wanted
        and (c.kind == "public" or call.me in c.members)
        and not (exclude_archived and c.archived)
    ]
    channels, cursor = page(found, call)
    return {"channels": channels, "response_metadata": {"next_cursor": cursor}}


@method("conversations.info")
async def conversations_info(call: Call) -> dict[str, Any]:
    return {"channel": call.ws.channel(call.text("channel"), call.me).as_api(call.me)}


@method("conversations.members")
async def conversations_members(call: Call) -> dict[str, Any]:
    members, cursor = page(list(call.ws.channel(call.text("channel"), call.me).members), call)
    return {"members": members, "response_metadata": {"next_cursor": cursor}}


@method("conversations.mark")
async def conversations_mark(call: Call) -> dict[str, Any]:
    call.ws.mark(call.text("channel"), call.me, call.text("ts"))
    return {}


def _history_cap(call: Call) -> int:
    return NON_MARKETPLACE_HISTORY_MAX if call.fake.non_marketplace else HISTORY_MAX


@method("conversations.history")
async def conversations_history(call: Call) -> dict[str, Any]:
    channel = call.ws.member(call.text("channel"), call.me)
    found = call.ws.history(
        channel,
        oldest=call.text("oldest") or "0",
        latest=call.text("latest") or None,
        inclusive=call.flag("inclusive"),
    )
    chunk, cursor = page(found, call, default=100, maximum=_history_cap(call))
    return {
        "messages": [call.ws.message_api(m) for m in chunk],
        "has_more": bool(cursor),
        "pin_count": 0,
        "response_metadata": {"next_cursor": cursor},
    }


@method("conversations.replies")
async def conversations_replies(call: Call) -> dict[str, Any]:
    channel = call.ws.member(call.text("channel"), call.me)
    oldest = call.text("oldest") or "0"
    thread = call.ws.replies(channel, call.text("ts"))
    found = thread[:1] + [m for m in thread[1:] if float(m.ts) > float(oldest)]
    chunk, cursor = page(found, call, default=100, maximum=_history_cap(call))
    return {
        "messages": [call.ws.message_api(m) for m in chunk],
        "has_more": bool(cursor),
        "response_metadata": {"next_cursor": cursor},
    }


# --- messages ---------------------------------------------------------------------------------------


def _message_out(call: Call, channel: str, msg: Msg) -> dict[str, Any]:
    return {"channel": channel, "ts": msg.ts, "message": call.ws.message_api(msg)}


def _metadata(call: Call) -> None:
    if "metadata" in call.args and call.token.kind in ("user", "session"):
        raise SlackError("metadata_must_be_sent_from_app")


@method("chat.postMessage")
async def chat_post_message(call: Call) -> dict[str, Any]:
    _metadata(call)
    text = call.text("text")
    if not text and not call.args.get("blocks") and not call.args.get("attachments"):
        raise SlackError("no_text")
    if len(text) > 40000:
        raise SlackError("msg_too_long")
    channel = call.text("channel")
    msg = call.ws.post(
        channel,
        call.me,
        text,
        thread_ts=call.text("thread_ts") or None,
        reply_broadcast=call.flag("reply_broadcast"),
    )
    return _message_out(call, channel, msg)


@method("chat.update")
async def chat_update(call: Call) -> dict[str, Any]:
    _metadata(call)
    text = call.text("text")
    if not text and not call.args.get("blocks"):
        raise SlackError("no_text")
    channel = call.text("channel")
    msg = call.ws.update(channel, call.text("ts"), call.me, text)
    return {**_message_out(call, channel, msg), "text": text}


@method("chat.delete")
async def chat_delete(call: Call) -> dict[str, Any]:
    channel, ts = call.text("channel"), call.text("ts")
    call.ws.delete(channel, ts, call.me)
    return {"channel": channel, "ts": ts}


def _reaction_name(call: Call) -> str:
    name = call.text("name").strip(":")
    if not name or any(ch in name for ch in " \t\n"):
        raise SlackError("invalid_name")
    return name


@method("reactions.add")
async def reactions_add(call: Call) -> dict[str, Any]:
    call.ws.react(call.text("channel"), call.text("timestamp"), call.me, _reaction_name(call), add=True)
    return {}


@method("reactions.remove")
async def reactions_remove(call: Call) -> dict[str, Any]:
    if not call.text("channel") or not call.text("timestamp"):
        raise SlackError("no_item_specified")
    call.ws.react(call.text("channel"), call.text("timestamp"), call.me, _reaction_name(call), add=False)
    return {}


# --- files --------------------------------------------------------------------------------------------


@method("files.getUploadURLExternal")
async def files_get_upload_url(call: Call) -> dict[str, Any]:
    length = call.number("length", 0, call.fake.max_upload_bytes + 1)
    if length > call.fake.max_upload_bytes:
        raise SlackError("invalid_arguments")
    file = call.fake.new_file(call.me, call.text("filename"), length)
    return {"upload_url": f"{call.fake.url}upload/v1/{file.id}", "file_id": file.id}


@method("files.completeUploadExternal")
async def files_complete_upload(call: Call) -> dict[str, Any]:
    raw = call.args.get("files")
    try:
        items: list[Any] = json.loads(raw) if isinstance(raw, str) else list(raw or ())
        ids = [(str(i["id"]), str(i.get("title") or "")) for i in items]
    except (TypeError, ValueError, KeyError, AttributeError):
        raise SlackError("invalid_arguments") from None
    for file_id, title in ids:
        file = call.ws.files.get(file_id)
        if file is None or file.user != call.me or file.content is None:
            raise SlackError("file_not_found")
        file.title = title or file.name
    channel = call.text("channel_id")
    if channel:
        call.ws.post(
            channel,
            call.me,
            call.text("initial_comment"),
            thread_ts=call.text("thread_ts") or None,
            files=[f for f, _ in ids],
        )
    return {"files": [call.ws.files[f].as_api(call.ws.base_url) for f, _ in ids]}


@method("files.info")
async def files_info(call: Call) -> dict[str, Any]:
    file = call.ws.files.get(call.text("file"))
    if file is None or file.content is None:
        raise SlackError("file_not_found")
    return {"file": file.as_api(call.ws.base_url)}


# --- real-time ------------------------------------------------------------------------------------------


@method("apps.connections.open")
async def apps_connections_open(call: Call) -> dict[str, Any]:
    return {"url": call.fake.socket_url("link", call.token)}


@method("oauth.v2.access")
async def oauth_v2_access(call: Call) -> dict[str, Any]:
    return call.fake.oauth_exchange(call.args)


@method("rtm.connect")
async def rtm_connect(call: Call) -> dict[str, Any]:
    user = call.ws.user(call.me)
    return {
        "url": call.fake.socket_url("websocket", call.token),
        "self": {"id": user.id, "name": user.name},
        "team": {"id": TEAM_ID, "name": TEAM_DOMAIN, "domain": TEAM_DOMAIN},
    }
