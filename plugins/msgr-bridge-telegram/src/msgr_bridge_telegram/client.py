"""Telethon, set up the way the connector needs it, and what travels between Telethon and the bridge:
conversation ids, raw payloads, and Telegram's errors as the bridge's errors.

- ``build_client``: a ``TelegramClient`` over a ``StringSession`` (kept in the credential layer, never a
  file), with Telethon's own flood sleeping and reconnecting turned off: back-off travels as
  ``RateLimited`` and reconnects belong to the supervisor (so relogins are throttled by its back-off).
- ``wire_errors``: ``FLOOD_WAIT_X`` becomes ``RateLimited(X)``; a terminated session
  (``AUTH_KEY_UNREGISTERED``, ``SESSION_REVOKED``, ...) ``AuthenticationFailed``; 5xx and lost
  connections ``TransientError``; other refusals ``PermanentError`` with Telegram's reason.
- ``payload``: one update as a JSON-compatible dict (Telethon's ``to_json``) plus what ``convert`` needs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from telethon import TelegramClient, errors
from telethon.extensions import html, markdown
from telethon.sessions import StringSession
from telethon.tl import functions, types

from msgr_bridge.errors import AuthenticationFailed, PermanentError, RateLimited, TransientError
from msgr_bridge.schema import OutboundMessage, SendResult, TextFormat

from .config import MAX_TEXT, TelegramSettings

PAYLOAD_VERSION = 1


TERMINATED = (
    errors.AuthKeyUnregisteredError,
    errors.SessionRevokedError,
    errors.SessionExpiredError,
    errors.UserDeactivatedError,
    errors.UserDeactivatedBanError,
    errors.AuthKeyDuplicatedError,
    errors.UnauthorizedError,
)
"""401s: the session is gone and only a new link brings the account back."""


def build_client(
    session: str | StringSession, api_id: int, api_hash: str, settings: TelegramSettings
) -> TelegramClient:
    """``session``: the stored ``StringSession`` text, or a fresh session pointed at a data centre."""
    return TelegramClient(
        session if isinstance(session, StringSession) else StringSession(session),
        api_id,
        api_hash,
        connection_retries=1,
        retry_delay=1,
        auto_reconnect=False,
        request_retries=1,
        raise_last_call_error=True,  # Telegram's own error (RANDOM_ID_DUPLICATE...), not a ValueError
        timeout=int(settings.request_timeout),
        flood_sleep_threshold=0,
        sequential_updates=True,
        receive_updates=True,
        device_model="msgr-bridge",
        app_version="msgr-bridge-telegram 0.1",
    )


@asynccontextmanager
async def wire_errors(action: str) -> AsyncIterator[None]:
    """Translate what Telethon raises during ``action`` into the bridge's error hierarchy."""
    try:
        yield
    except errors.FloodWaitError as exc:
        raise RateLimited(
            float(exc.seconds), f"Telegram FLOOD_WAIT: {action} must wait {exc.seconds}s"
        ) from exc
    except (errors.SlowModeWaitError, errors.FloodPremiumWaitError) as exc:
        raise RateLimited(
            float(exc.seconds), f"Telegram slow mode: {action} must wait {exc.seconds}s"
        ) from exc
    except TERMINATED as exc:
        raise AuthenticationFailed(
            f"Telegram ended this session ({type(exc).__name__.removesuffix('Error')})",
            hint="the session was terminated (logged out elsewhere, or revoked): link the account again",
        ) from exc
    except errors.ServerError as exc:
        raise TransientError(f"Telegram failed while trying to {action}: {exc.message}") from exc
    except errors.RPCError as exc:
        raise PermanentError(f"Telegram refused to {action}: {exc.message}") from exc
    except (ConnectionError, OSError, TimeoutError) as exc:
        raise TransientError(f"lost the connection to Telegram while trying to {action}: {exc}") from exc
    except ValueError as exc:  # Telethon's "Request was unsuccessful N time(s)": the connection failed
        if not str(exc).startswith("Request was unsuccessful"):
            raise
        raise TransientError(f"Telegram did not answer while trying to {action}: {exc}") from exc


# --- conversation ids -------------------------------------------------------------------------------------


def conversation_id(peer: Any) -> str:
    """``user:<id>``, ``chat:<id>`` (basic group) or ``channel:<id>`` (supergroup, forum, channel)."""
    if isinstance(peer, types.PeerUser):
        return f"user:{peer.user_id}"
    if isinstance(peer, types.PeerChat):
        return f"chat:{peer.chat_id}"
    if isinstance(peer, types.PeerChannel):
        return f"channel:{peer.channel_id}"
    raise PermanentError(f"not a Telegram peer: {peer!r}")


def peer_of(conversation: str) -> Any:
    kind, _, number = conversation.partition(":")
    if number.isdigit():
        if kind == "user":
            return types.PeerUser(int(number))
        if kind == "chat":
            return types.PeerChat(int(number))
        if kind == "channel":
            return types.PeerChannel(int(number))
    raise PermanentError(
        f"{conversation!r} is not a Telegram conversation id",
        hint="Telegram conversation ids look like user:<id>, chat:<id> or channel:<id>",
    )


def message_id(remote_id: str) -> int:
    if not remote_id.isdigit():
        raise PermanentError(f"{remote_id!r} is not a Telegram message id")
    return int(remote_id)


def random_id(txn_id: str) -> int:
    """Telegram's ``random_id`` from our transaction id: a retried send is the same send to Telegram."""
    return int.from_bytes(hashlib.sha256(txn_id.encode()).digest()[:8], "little", signed=True)


# --- payloads ---------------------------------------------------------------------------------------------


def as_json(obj: Any) -> Any:
    """A TL object as plain JSON values (bytes base64, dates ISO 8601), through Telethon's ``to_json``."""
    return json.loads(obj.to_json())


def names_of(entities: Mapping[int, Any]) -> dict[str, str]:
    names = {}
    for entity_id, entity in entities.items():
        if isinstance(entity, types.User):
            names[str(entity_id)] = " ".join(p for p in (entity.first_name, entity.last_name) if p) or str(
                entity_id
            )
        elif isinstance(entity, types.Chat | types.Channel):
            names[str(entity_id)] = entity.title
    return names


def payload(update: Any, self_id: int, **extra: Any) -> dict[str, Any]:
    return {"v": PAYLOAD_VERSION, "self_id": self_id, "update": as_json(update), **extra}


# --- outbound ---------------------------------------------------------------------------------------------


def outgoing_text(message: OutboundMessage) -> tuple[str, list[Any]]:
    """Text and formatting entities to send (Telethon's HTML or Markdown parser); refuses empty or long."""
    if message.formatted and message.format == TextFormat.HTML:
        text, entities = html.parse(message.formatted)
    elif message.formatted and message.format == TextFormat.MARKDOWN:
        text, entities = markdown.parse(message.formatted)
    else:
        text, entities = message.text, []
    if not text.strip():
        raise PermanentError("a Telegram message needs some text")
    if len(text) > MAX_TEXT:
        raise PermanentError(f"Telegram messages hold at most {MAX_TEXT} characters, this has {len(text)}")
    return text, list(entities)


def sent_id(result: Any, rid: int) -> int:
    if isinstance(result, types.UpdateShortSentMessage):
        return int(result.id)
    for update in getattr(result, "updates", []):
        if isinstance(update, types.UpdateMessageID) and update.random_id == rid:
            return int(update.id)
    raise TransientError("Telegram accepted the message without saying its id")


async def already_sent(client: TelegramClient, peer: Any, text: str, txn_id: str) -> SendResult:
    """Telegram already has a message with this send's ``random_id`` (the answer to an earlier attempt was
    lost): find it among our latest messages there instead of sending it twice."""
    request = functions.messages.GetHistoryRequest(
        peer, offset_id=0, offset_date=None, add_offset=0, limit=50, max_id=0, min_id=0, hash=0
    )
    async with wire_errors("look up a message already sent"):
        recent = await client(request)
    for found in recent.messages:
        if isinstance(found, types.Message) and found.out and found.message == text:
            return SendResult(remote_id=str(found.id))
    raise PermanentError(
        f"Telegram already has message {txn_id} but it is not among the latest 50 here",
        hint="it was sent once; look for it in the conversation",
    )


def reply_header(message: OutboundMessage) -> types.InputReplyToMessage | None:
    """The message replied to and the forum topic of an outbound message (None: neither)."""
    if not (message.reply_to or message.thread_id):
        return None
    top = message_id(message.thread_id) if message.thread_id else None
    target = message_id(message.reply_to) if message.reply_to else top
    return types.InputReplyToMessage(reply_to_msg_id=target, top_msg_id=top)
