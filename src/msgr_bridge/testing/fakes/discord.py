"""A wire-level fake of Discord: the bot gateway (websocket) and the REST routes a bridge uses.

It keeps users, guilds with members, channels (text, threads, DMs), messages with reactions and
attachments, and webhooks, and answers in Discord's JSON shapes. Tests (or a person trying the bridge
offline) act as the other people with ``post``, ``edit``, ``delete``, ``react``, ``typing``,
``create_thread`` and ``add_member``; every change is dispatched on the gateway to the bots that can see
it and that declared the matching intent. Requests are checked against Discord's OpenAPI description
(``discord_spec``) and recorded; rate limits, 5xx, dropped connections, refused resumes and revoked tokens
can be injected (``rest``, ``gateway``, ``revoke``). Run it alone::

    python -m msgr_bridge.testing.fakes.discord --port 8999

which seeds a bot, a guild with a channel and a person, and prints the token and URLs to use.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .discord_gateway import (
    CLOSE_AUTH_FAILED,
    INTENT_DIRECT_MESSAGE_REACTIONS,
    INTENT_DIRECT_MESSAGE_TYPING,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGE_REACTIONS,
    INTENT_GUILD_MESSAGE_TYPING,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    PRIVILEGED_INTENTS,
    Gateway,
)
from .discord_rest import ApiError, Recorded, RestApi
from .discord_spec import SpecChecker

DISCORD_EPOCH_MS = 1420070400000
GUILD_TEXT, DM, GUILD_ANNOUNCEMENT, PUBLIC_THREAD = 0, 1, 5, 11
THREADS = (10, 11, 12)
MESSAGE_EVENTS = {"MESSAGE_CREATE", "MESSAGE_UPDATE"}


def _now() -> str:
    return datetime.now(UTC).isoformat()


class DiscordFake:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.spec = SpecChecker()
        self.rest = RestApi(self)
        self.gateway = Gateway(self)
        self.users: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, str] = {}
        self.guilds: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, dict[str, Any]]] = {}
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.files: dict[str, tuple[str, bytes]] = {}
        self.nonces: dict[tuple[str, str, Any], tuple[str, float]] = {}
        """(author, channel, nonce) -> (message id, when): ``enforce_nonce`` deduplication."""
        self.message_managers: set[str] = set()
        """Users granted Manage Messages: they may delete other people's messages."""
        self.privileged_intents = PRIVILEGED_INTENTS
        """The privileged intents the operator switched on for the bot in the developer portal."""
        self.observers: list[Callable[[str, dict[str, Any]], None]] = []
        """Called with every dispatch (event name, data), e.g. to time when a bot's message arrived."""
        self._counter = itertools.count()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # --- server ------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    async def start(self) -> DiscordFake:
        app = web.Application(client_max_size=11 << 20)
        app.router.add_route("*", "/api/v10/{tail:.*}", self.rest.handle)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/attachments/{file_id}/{filename}", self.attachment)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Stop serving (connections drop; sessions stay resumable while the window lasts)."""
        await self.gateway.drop_connections(4000)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordFake:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def attachment(self, request: web.Request) -> web.StreamResponse:
        found = self.files.get(request.match_info["file_id"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found[1], content_type="application/octet-stream")

    # --- the model -------------------------------------------------------------------------------------

    def snowflake(self) -> str:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._counter) % (1 << 22)))

    def _touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked after every change); returns its value."""
        async with asyncio.timeout(timeout):
            while not (found := predicate()):
                await self._changed.wait()
        return found

    def add_user(self, name: str, *, bot: bool = False) -> dict[str, Any]:
        uid = self.snowflake()
        user = {
            "id": uid,
            "username": name,
            "global_name": None if bot else name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
        }
        self.users[uid] = user
        return user

    def add_bot(self, name: str) -> tuple[dict[str, Any], str]:
        user = self.add_user(name, bot=True)
        token = f"{secrets.token_urlsafe(18)}.{secrets.token_urlsafe(6)}.{secrets.token_urlsafe(27)}"
        self.tokens[token] = user["id"]
        return user, token

    async def revoke(self, token: str) -> None:
        """The operator reset the bot's token: REST answers 401, the gateway closes with 4004."""
        self.tokens.pop(token, None)
        await self.gateway.close_sessions_of(token, CLOSE_AUTH_FAILED)

    def add_guild(self, name: str, members: list[str]) -> dict[str, Any]:
        gid = self.snowflake()
        self.guilds[gid] = {"id": gid, "name": name, "owner_id": members[0], "members": {}, "channels": []}
        for uid in members:
            self.guilds[gid]["members"][uid] = {
                "user": self.users[uid],
                "nick": None,
                "roles": [],
                "joined_at": _now(),
                "deaf": False,
                "mute": False,
            }
        return self.guilds[gid]

    def add_channel(self, guild_id: str, name: str, *, kind: int = GUILD_TEXT) -> dict[str, Any]:
        cid = self.snowflake()
        channel = {
            "id": cid,
            "type": kind,
            "guild_id": guild_id,
            "name": name,
            "position": 0,
            "permission_overwrites": [],
            "last_message_id": None,
            "parent_id": None,
        }
        self.channels[cid] = channel
        self.guilds[guild_id]["channels"].append(cid)
        self.messages[cid] = {}
        return channel

    def open_dm(self, user_id: str, bot_id: str) -> dict[str, Any]:
        for channel in self.channels.values():
            if channel["type"] == DM and {r["id"] for r in channel["recipients"]} == {user_id, bot_id}:
                return channel
        cid = self.snowflake()
        channel = {
            "id": cid,
            "type": DM,
            "last_message_id": None,
            "recipients": [self.users[user_id], self.users[bot_id]],
        }
        self.channels[cid], self.messages[cid] = channel, {}
        return channel

    def audience(self, channel: dict[str, Any]) -> set[str]:
        """The users who see what happens in ``channel``."""
        if channel["type"] == DM:
            return {r["id"] for r in channel["recipients"]}
        return set(self.guilds[channel["guild_id"]]["members"])

    def channel(self, channel_id: str, who: str | None = None) -> dict[str, Any]:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        if who is not None and not who.startswith("webhook:") and who not in self.audience(channel):
            raise ApiError(403, 50001, "Missing Access")
        return channel

    def message(self, channel_id: str, message_id: str) -> dict[str, Any]:
        found = self.messages[channel_id].get(message_id)
        if found is None:
            raise ApiError(404, 10008, "Unknown Message")
        return found

    def dispatch(
        self, event: str, channel: dict[str, Any], data: dict[str, Any], intent: tuple[int, int]
    ) -> None:
        self.gateway.dispatch(event, data, to=self.audience(channel), intent=intent[channel["type"] == DM])
        for observer in self.observers:
            observer(event, data)
        self._touch()

    # --- the other people ------------------------------------------------------------------------------

    def new_message(
        self, channel: dict[str, Any], author: dict[str, Any], content: str, **extra: Any
    ) -> dict[str, Any]:
        mid = self.snowflake()
        mentions = [u for u in self.users.values() if f"<@{u['id']}>" in content]
        message = {
            "id": mid,
            "channel_id": channel["id"],
            "author": author,
            "content": content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "reactions": [],
            **extra,
        }
        if "guild_id" in channel:
            message["guild_id"] = channel["guild_id"]
            member = self.guilds[channel["guild_id"]]["members"].get(author["id"])
            if member is not None:
                message["member"] = {k: v for k, v in member.items() if k != "user"}
        self.messages[channel["id"]][mid] = message
        channel["last_message_id"] = mid
        self.dispatch("MESSAGE_CREATE", channel, message, (INTENT_GUILD_MESSAGES, INTENT_DIRECT_MESSAGES))
        return message

    def attach(self, channel_id: str, files: dict[str, tuple[str, bytes]]) -> list[dict[str, Any]]:
        out = []
        for _, (filename, data) in sorted(files.items()):
            fid = self.snowflake()
            self.files[fid] = (filename, data)
            url = f"{self.base_url}/attachments/{fid}/{filename}"
            out.append(
                {
                    "id": fid,
                    "filename": filename,
                    "size": len(data),
                    "url": url,
                    "proxy_url": url,
                    "content_type": "application/octet-stream",
                }
            )
        return out

    def post(
        self,
        channel_id: str,
        author_id: str,
        content: str,
        *,
        reply_to: str | None = None,
        files: dict[str, tuple[str, bytes]] | None = None,
    ) -> dict[str, Any]:
        """``author_id`` says ``content`` in the channel (optionally replying, optionally with files)."""
        channel = self.channel(channel_id)
        extra: dict[str, Any] = {"attachments": self.attach(channel_id, files or {})}
        if reply_to is not None:
            extra |= {
                "type": 19,
                "message_reference": {"type": 0, "message_id": reply_to, "channel_id": channel_id},
                "referenced_message": self.message(channel_id, reply_to),
            }
            extra["message_reference"] |= {"guild_id": channel["guild_id"]} if "guild_id" in channel else {}
        return self.new_message(channel, self.users[author_id], content, **extra)

    def edit(self, channel_id: str, message_id: str, content: str) -> dict[str, Any]:
        channel, message = self.channel(channel_id), self.message(channel_id, message_id)
        message.update(content=content, edited_timestamp=_now())
        self.dispatch("MESSAGE_UPDATE", channel, message, (INTENT_GUILD_MESSAGES, INTENT_DIRECT_MESSAGES))
        return message

    def delete(self, channel_id: str, message_id: str) -> None:
        channel = self.channel(channel_id)
        self.message(channel_id, message_id)
        del self.messages[channel_id][message_id]
        data = {"id": message_id, "channel_id": channel_id}
        data |= {"guild_id": channel["guild_id"]} if "guild_id" in channel else {}
        self.dispatch("MESSAGE_DELETE", channel, data, (INTENT_GUILD_MESSAGES, INTENT_DIRECT_MESSAGES))

    def react(self, user_id: str, channel_id: str, message_id: str, emoji: str, *, add: bool = True) -> None:
        channel, message = self.channel(channel_id), self.message(channel_id, message_id)
        users = message.setdefault("_reactors", {}).setdefault(emoji, [])
        if add == (user_id in users):
            return
        users.append(user_id) if add else users.remove(user_id)
        message["reactions"] = [
            {"emoji": {"id": None, "name": e}, "count": len(u), "me": False}
            for e, u in message["_reactors"].items()
            if u
        ]
        data = {
            "user_id": user_id,
            "channel_id": channel_id,
            "message_id": message_id,
            "emoji": {"id": None, "name": emoji},
        }
        data |= {"guild_id": channel["guild_id"]} if "guild_id" in channel else {}
        event = "MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE"
        self.dispatch(event, channel, data, (INTENT_GUILD_MESSAGE_REACTIONS, INTENT_DIRECT_MESSAGE_REACTIONS))

    def typing(self, user_id: str, channel_id: str) -> None:
        channel = self.channel(channel_id)
        data = {"user_id": user_id, "channel_id": channel_id, "timestamp": int(time.time())}
        data |= {"guild_id": channel["guild_id"]} if "guild_id" in channel else {}
        self.dispatch(
            "TYPING_START", channel, data, (INTENT_GUILD_MESSAGE_TYPING, INTENT_DIRECT_MESSAGE_TYPING)
        )

    def create_thread(self, parent_id: str, name: str, owner_id: str) -> dict[str, Any]:
        parent = self.channel(parent_id)
        thread = self.add_channel(parent["guild_id"], name, kind=PUBLIC_THREAD)
        thread |= {
            "parent_id": parent_id,
            "owner_id": owner_id,
            "thread_metadata": {"archived": False, "locked": False, "auto_archive_duration": 1440},
        }
        self.dispatch(
            "THREAD_CREATE", thread, {**thread, "newly_created": True}, (INTENT_GUILDS, INTENT_GUILDS)
        )
        return thread

    def add_member(self, guild_id: str, user_id: str) -> None:
        guild = self.guilds[guild_id]
        member: dict[str, Any] = {
            "user": self.users[user_id],
            "nick": None,
            "roles": [],
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
        }
        guild["members"][user_id] = member
        self.gateway.dispatch(
            "GUILD_MEMBER_ADD",
            {**member, "guild_id": guild_id},
            to=set(guild["members"]),
            intent=INTENT_GUILD_MEMBERS,
        )
        self._touch()

    def remove_member(self, guild_id: str, user_id: str) -> None:
        guild = self.guilds[guild_id]
        member = guild["members"].pop(user_id)
        self.gateway.dispatch(
            "GUILD_MEMBER_REMOVE",
            {"guild_id": guild_id, "user": member["user"]},
            to={*guild["members"], user_id},
            intent=INTENT_GUILD_MEMBERS,
        )
        # The one removed loses the whole server (a bot kicked from it gets GUILD_DELETE).
        self.gateway.dispatch("GUILD_DELETE", {"id": guild_id}, to={user_id}, intent=INTENT_GUILDS)
        self._touch()

    # --- REST handlers -----------------------------------------------------------------------------------

    def serve(
        self, template: str, method: str, p: dict[str, str], rec: Recorded, who: str
    ) -> tuple[int, Any]:
        from .discord_routes import ROUTES

        return ROUTES[(method, template)](self, p, rec, who)


if __name__ == "__main__":  # pragma: no cover - an operator's tool
    from .discord_main import run

    run()
