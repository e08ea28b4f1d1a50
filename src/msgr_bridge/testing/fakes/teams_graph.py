"""The Microsoft Graph half of the Teams fake: one handler for ``/v1.0/*`` that authenticates the bearer
token, applies throttling on demand, checks the request against the published description and dispatches
on the path. Shapes follow Graph v1.0 (chatMessage, chat, aadUserConversationMember, subscription).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .teams import FakeTeams

MAX_TOP = 50
Handler = Callable[[web.Request, str, "re.Match[str]", Any], Awaitable[web.StreamResponse]]


def graph_error(status: int, code: str, message: str) -> web.Response:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    inner = {"date": stamp, "request-id": secrets.token_hex(16), "client-request-id": secrets.token_hex(16)}
    return web.json_response(
        {"error": {"code": code, "message": message, "innerError": inner}}, status=status
    )


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _offset(token: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["o"])
    except (ValueError, KeyError, TypeError):
        return -1


class Graph:
    def __init__(self, fake: FakeTeams) -> None:
        self.fake = fake
        ids = r"([^/]+)"
        chat_msg = rf"/chats/{ids}/messages/{ids}"
        chan = rf"/teams/{ids}/channels/{ids}"
        self.table: list[tuple[str, re.Pattern[str], Handler]] = [
            (m, re.compile(f"^{p}$"), h)
            for m, p, h in [
                ("GET", "/me", self.me),
                ("GET", "/me/chats", self.list_chats),
                ("GET", rf"/chats/{ids}/members", self.chat_members),
                ("GET", rf"/chats/{ids}/messages", self.list_messages),
                ("POST", rf"/chats/{ids}/messages", self.send),
                ("GET", chat_msg, self.get_message),
                ("PATCH", chat_msg, self.edit),
                ("POST", chat_msg + "/(softDelete|undoSoftDelete)", self.soft_delete),
                ("POST", chat_msg + "/(setReaction|unsetReaction)", self.reaction),
                ("POST", rf"/chats/{ids}/markChatReadForUser", self.mark_read),
                ("GET", chan + "/messages/delta", self.channel_delta),
                ("POST", chan + "/messages", self.channel_send),
                ("POST", chan + rf"/messages/{ids}/replies", self.channel_send),
                ("GET", chan + rf"/messages/{ids}/replies", self.channel_replies),
                ("PATCH", chan + rf"/messages/{ids}(?:/replies/{ids})?", self.channel_change),
                ("POST", chan + rf"/messages/{ids}(?:/replies/{ids})?/(softDelete)", self.channel_change),
                (
                    "POST",
                    chan + rf"/messages/{ids}(?:/replies/{ids})?/(setReaction|unsetReaction)",
                    self.channel_change,
                ),
                *self.fake.drives.handlers(ids),
                ("POST", "/subscriptions", self.subscribe),
                ("PATCH", rf"/subscriptions/{ids}", self.renew),
                ("DELETE", rf"/subscriptions/{ids}", self.unsubscribe),
            ]
        ]

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/v1.0/{tail:.*}", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fake = self.fake
        path = "/" + request.match_info["tail"]
        header = request.headers.get("Authorization", "")
        entry = fake.access_tokens.get(header.removeprefix("Bearer "))
        fake.record(request, entry[0] if entry else None)
        if entry is None or entry[1] < time.time():
            response = graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid."
                if entry
                else "IDX14100: JWT is not well formed.",
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="", error="invalid_token"'
            return response
        throttled = fake.take_throttle(path)
        if throttled is not None:
            return throttled
        body: Any = None
        if request.can_read_body and not (request.method == "PUT" and path.endswith("/content")):
            try:
                body = await request.json()
            except ValueError:
                return graph_error(400, "BadRequest", "Unable to read JSON request payload.")
        why = fake.checker.check(request.method, path, dict(request.query), body)
        if why is not None:
            fake.refused.append((request.method, path, why))
            return graph_error(400, "BadRequest", why)
        delay = fake.take_slowdown(request.method, path)
        for method, pattern, handler in self.table:
            match = pattern.match(path)
            if match and method == request.method:
                answer = await handler(request, entry[0], match, body)
                if delay:
                    await asyncio.sleep(delay)
                return answer
        return graph_error(400, "BadRequest", f"Resource not found for the segment '{path}'.")

    # --- helpers -------------------------------------------------------------------------------------

    def _chat(self, user: str, chat_id: str) -> dict[str, Any] | web.Response:
        chat = self.fake.chats.get(chat_id)
        if chat is None or user not in chat["members"]:
            return graph_error(404, "NotFound", "Chat not found or the caller is not a member.")
        return chat

    def _page(
        self, request: web.Request, items: list[dict[str, Any]], extra: dict[str, Any] | None = None
    ) -> web.Response:
        try:
            top = int(request.query.get("$top", "20"))
        except ValueError:
            return graph_error(400, "BadRequest", "Invalid $top value.")
        if not 1 <= top <= MAX_TOP:
            return graph_error(
                400,
                "BadRequest",
                f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_TOP} inclusive.",
            )
        start = _offset(request.query["$skiptoken"]) if "$skiptoken" in request.query else 0
        if start < 0:
            return graph_error(400, "BadRequest", "Invalid skip token.")
        page: dict[str, Any] = {
            "@odata.context": f"{self.fake.graph_url}/$metadata",
            "@odata.count": len(items),
            "value": items[start : start + top],
        }
        if start + top < len(items):
            query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = _token(start + top)
            page["@odata.nextLink"] = str(request.url.with_scheme("https").with_query(query))
        elif extra:
            page.update(extra)
        return web.json_response(page)

    # --- me, chats, members --------------------------------------------------------------------------

    async def me(self, request: web.Request, user: str, m: re.Match[str], body: Any) -> web.StreamResponse:
        return web.json_response(
            {"@odata.context": f"{self.fake.graph_url}/$metadata#users/$entity", **self.fake.users[user]}
        )

    async def list_chats(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        chats = [
            {
                "id": c["id"],
                "topic": c["topic"],
                "chatType": c["chatType"],
                "createdDateTime": c["createdDateTime"],
                "lastUpdatedDateTime": (
                    c["messages"][-1]["lastModifiedDateTime"] if c["messages"] else c["createdDateTime"]
                ),
                "tenantId": self.fake.tenant_id,
                "webUrl": None,
            }
            for c in self.fake.chats.values()
            if user in c["members"]
        ]
        return self._page(request, chats)

    def _member(self, user_id: str) -> dict[str, Any]:
        u = self.fake.users[user_id]
        return {
            "@odata.type": "#microsoft.graph.aadUserConversationMember",
            "id": f"member-{user_id}",
            "roles": ["owner"],
            "displayName": u["displayName"],
            "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z",
            "userId": user_id,
            "email": u["mail"],
            "tenantId": self.fake.tenant_id,
        }

    async def chat_members(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        chat = self._chat(user, m.group(1))
        if isinstance(chat, web.Response):
            return chat
        return self._page(request, [self._member(u) for u in chat["members"]])

    # --- chat messages -------------------------------------------------------------------------------

    async def list_messages(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        chat = self._chat(user, m.group(1))
        if isinstance(chat, web.Response):
            return chat
        order = request.query.get("$orderby", "createdDateTime desc")
        key = order.split()[0]
        if order not in ("createdDateTime desc", "lastModifiedDateTime desc"):
            return graph_error(
                400,
                "BadRequest",
                "$orderby supports only 'lastModifiedDateTime desc' and 'createdDateTime desc'.",
            )
        items = sorted(chat["messages"], key=lambda x: x[key], reverse=True)
        flt = request.query.get("$filter")
        if flt is not None:
            fm = re.fullmatch(r"(lastModifiedDateTime|createdDateTime) (gt|lt) (\S+)", flt.strip())
            if fm is None or fm.group(1) != key:
                return graph_error(
                    400, "BadRequest", "$filter must be on the $orderby property, with gt or lt."
                )
            bound = fm.group(3)
            items = [x for x in items if (x[key] > bound if fm.group(2) == "gt" else x[key] < bound)]
        return self._page(request, items)

    async def get_message(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        chat = self._chat(user, m.group(1))
        if isinstance(chat, web.Response):
            return chat
        msg = self.fake.find(chat["id"], m.group(2))
        return web.json_response(msg) if msg else graph_error(404, "NotFound", "Message not found.")

    async def send(self, request: web.Request, user: str, m: re.Match[str], body: Any) -> web.StreamResponse:
        chat = self._chat(user, m.group(1))
        if isinstance(chat, web.Response):
            return chat
        if not (body.get("body") or {}).get("content") and not body.get("attachments"):
            return graph_error(400, "BadRequest", "Message body cannot be empty.")
        extra = {k: body[k] for k in ("attachments", "mentions", "subject", "importance") if body.get(k)}
        msg = self.fake.post_as(user, chat["id"], body["body"]["content"], **extra)
        if body["body"].get("contentType") == "text":
            msg["body"]["contentType"] = "text"
        return web.json_response(msg, status=201)

    async def edit(self, request: web.Request, user: str, m: re.Match[str], body: Any) -> web.StreamResponse:
        chat = self._chat(user, m.group(1))
        if isinstance(chat, web.Response):
            return chat
        msg = self.fake.find(chat["id"], m.group(2))
        note = self._chat_note(chat["id"])
        return self._edit(msg, user, body, note)

    def _chat_note(self, chat_id: str) -> Callable[[dict[str, Any], str], None]:
        return lambda msg, change: self.fake.notify(
            f"chats('{chat_id}')/messages('{msg['id']}')", change, msg
        )

    def _edit(
        self, msg: dict[str, Any] | None, user: str, body: Any, note: Callable[[dict[str, Any], str], None]
    ) -> web.Response:
        if msg is None or msg["deletedDateTime"]:
            return graph_error(404, "NotFound", "Message not found.")
        if msg["from"]["user"]["id"] != user or set(body) - {"body", "mentions", "attachments"}:
            return graph_error(403, "Forbidden", "Only the sender can update the body of a message.")
        msg["body"] = body["body"]
        msg["lastEditedDateTime"] = self.fake.now()
        self.fake.touch(msg)
        note(msg, "updated")
        return web.Response(status=204)

    async def soft_delete(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        chat = self._chat(user, m.group(1))
        if isinstance(chat, web.Response):
            return chat
        msg = self.fake.find(chat["id"], m.group(2))
        return self._soft_delete(msg, user, m.group(3) == "undoSoftDelete", self._chat_note(chat["id"]))

    def _soft_delete(
        self, msg: dict[str, Any] | None, user: str, undo: bool, note: Callable[[dict[str, Any], str], None]
    ) -> web.Response:
        if msg is None:
            return graph_error(404, "NotFound", "Message not found.")
        if msg["from"]["user"]["id"] != user:
            return graph_error(403, "Forbidden", "Only the sender can delete a message.")
        msg["deletedDateTime"] = None if undo else self.fake.now()
        self.fake.touch(msg)
        note(msg, "updated" if undo else "deleted")
        return web.Response(status=204)

    async def reaction(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        chat = self._chat(user, m.group(1))
        if isinstance(chat, web.Response):
            return chat
        msg = self.fake.find(chat["id"], m.group(2))
        return self._react(msg, user, body, m.group(3), self._chat_note(chat["id"]))

    def _react(
        self,
        msg: dict[str, Any] | None,
        user: str,
        body: Any,
        verb: str,
        note: Callable[[dict[str, Any], str], None],
    ) -> web.Response:
        kind = (body or {}).get("reactionType")
        if msg is None or not kind:
            return graph_error(
                404 if msg is None else 400,
                "NotFound" if msg is None else "BadRequest",
                "Message not found." if msg is None else "reactionType is required.",
            )
        mine = [r for r in msg["reactions"] if r["user"]["user"]["id"] == user and r["reactionType"] == kind]
        if verb == "setReaction" and not mine:
            msg["reactions"].append(
                {
                    "reactionType": kind,
                    "displayName": None,
                    "reactionContentUrl": None,
                    "createdDateTime": self.fake.now(),
                    "user": {
                        "application": None,
                        "device": None,
                        "user": {"id": user, "displayName": None, "userIdentityType": "aadUser"},
                    },
                }
            )
        elif verb == "unsetReaction":
            msg["reactions"] = [r for r in msg["reactions"] if r not in mine]
        self.fake.touch(msg)
        note(msg, "updated")
        return web.Response(status=204)

    async def mark_read(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        chat = self._chat(user, m.group(1))
        if isinstance(chat, web.Response):
            return chat
        if (body.get("user") or {}).get("id") != user:
            return graph_error(403, "Forbidden", "A chat can be marked read only for the signed-in user.")
        chat["read"][user] = self.fake.now()
        return web.Response(status=204)

    # --- channels ------------------------------------------------------------------------------------

    def _channel(self, user: str, team_id: str, channel_id: str) -> dict[str, Any] | web.Response:
        team = self.fake.teams.get(team_id)
        if team is None or user not in team["members"] or channel_id not in team["channels"]:
            return graph_error(404, "NotFound", "Team or channel not found.")
        channel: dict[str, Any] = team["channels"][channel_id]
        return channel

    async def channel_send(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        channel = self._channel(user, m.group(1), m.group(2))
        if isinstance(channel, web.Response):
            return channel
        content = (body.get("body") or {}).get("content", "")
        root = m.group(3) if m.lastindex == 3 else None
        msg = self.fake.post_channel_as(user, m.group(1), m.group(2), content, reply_to=root)
        if msg is None:
            return graph_error(404, "NotFound", "Message not found.")
        return web.json_response(msg, status=201)

    async def channel_change(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        """PATCH, softDelete, setReaction and unsetReaction of a channel's root message or reply."""
        team, chan_id, root, reply = m.group(1), m.group(2), m.group(3), m.group(4)
        channel = self._channel(user, team, chan_id)
        if isinstance(channel, web.Response):
            return channel
        msg = self.fake.find_channel_message(team, chan_id, f"{root}/{reply}" if reply else root)

        def note(changed: dict[str, Any], change: str) -> None:
            if reply and msg is not None:  # [U] a changed reply modifies its root too (delta returns it)
                root_msg = self.fake.find_channel_message(team, chan_id, root)
                if root_msg is not None:
                    self.fake.touch(root_msg)
            self.fake.notify_channel(team, chan_id, changed, change)

        verb = m.group(5) if m.lastindex == 5 else None
        if request.method == "PATCH":
            return self._edit(msg, user, body, note)
        if verb == "softDelete":
            return self._soft_delete(msg, user, False, note)
        return self._react(msg, user, body, str(verb), note)

    async def channel_replies(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        channel = self._channel(user, m.group(1), m.group(2))
        if isinstance(channel, web.Response):
            return channel
        root = next((x for x in channel["messages"] if x["id"] == m.group(3)), None)
        if root is None:
            return graph_error(404, "NotFound", "Message not found.")
        return self._page(request, list(reversed(root.get("_replies", []))))

    async def channel_delta(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        channel = self._channel(user, m.group(1), m.group(2))
        if isinstance(channel, web.Response):
            return channel
        since = ""
        if "$deltatoken" in request.query:
            since = base64.urlsafe_b64decode(request.query["$deltatoken"] + "==").decode(errors="replace")
        items = [
            {k: v for k, v in x.items() if k != "_replies"}
            for x in channel["messages"]
            if x["lastModifiedDateTime"] > since
        ]
        items.sort(key=lambda x: x["lastModifiedDateTime"])
        newest = items[-1]["lastModifiedDateTime"] if items else since
        query = {"$deltatoken": base64.urlsafe_b64encode(newest.encode()).decode().rstrip("=")}
        link = str(request.url.with_scheme("https").with_query(query))
        return self._page(request, items, {"@odata.deltaLink": link})

    # --- subscriptions -------------------------------------------------------------------------------

    async def subscribe(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        for key in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not body.get(key):
                return graph_error(400, "InvalidRequest", f"{key} is required.")
        if not str(body["notificationUrl"]).startswith(("https://", "http://127.0.0.1", "http://localhost")):
            return graph_error(400, "InvalidRequest", "The notificationUrl must use https.")
        limit = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=60)
        if dt.datetime.fromisoformat(body["expirationDateTime"]) > limit:
            return graph_error(
                400,
                "InvalidRequest",
                "Subscription expiration can only be 60 minutes in the future for chatMessage resources.",
            )
        if not await self.fake.validate_endpoint(body["notificationUrl"]):
            return graph_error(
                400,
                "ValidationError",
                "Subscription validation request failed. Response must "
                "exactly match validationToken query parameter.",
            )
        sub = {**body, "id": secrets.token_hex(16), "applicationId": self.fake.client_id, "creatorId": user}
        self.fake.subscriptions[sub["id"]] = sub
        return web.json_response(sub, status=201)

    async def renew(self, request: web.Request, user: str, m: re.Match[str], body: Any) -> web.StreamResponse:
        sub = self.fake.subscriptions.get(m.group(1))
        if sub is None:
            return graph_error(404, "ResourceNotFound", "The object was not found.")
        sub["expirationDateTime"] = body.get("expirationDateTime", sub["expirationDateTime"])
        return web.json_response(sub)

    async def unsubscribe(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.StreamResponse:
        if self.fake.subscriptions.pop(m.group(1), None) is None:
            return graph_error(404, "ResourceNotFound", "The object was not found.")
        return web.Response(status=204)
