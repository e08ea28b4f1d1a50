"""Catching up after downtime: ``updates.getDifference`` from the committed state, then
``updates.getChannelDifference`` for each channel the state tracks, as history payloads for ``sync_state``.

A fresh account (nothing committed yet) starts from the state read when it was linked (so what was written
while the bridge started, or during a first run killed before it committed anything, is not skipped), and
imports recent history (``history.py``); an account linked before that state was kept starts from
``updates.getState``. Every loop is bounded (``ROUNDS_MAX`` pages per box); a state
Telegram no longer has (``differenceTooLong``) jumps to the present and the snapshot says it is incomplete.
Each channel's catch-up is reported on ``ctx.progress`` (phase ``catchup``, finished with its last page);
the common box (private chats, basic groups) mixes conversations in one difference and is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telethon import TelegramClient
from telethon.tl import functions, types

from msgr_bridge.errors import PermanentError
from msgr_bridge.schema import Contact, Conversation, ConversationKind
from msgr_bridge.sdk.progress import ProgressReporter, RecordingProgress

from .client import wire_errors
from .history import import_history
from .state import UpdateState
from .updates import UpdateRouter

ROUNDS_MAX = 50
PAGE = 100
NETWORK = "telegram"


@dataclass
class CatchUp:
    state: UpdateState
    history: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True
    fetched: bool = True
    """False for a fresh account: the state is the present, no difference was fetched."""
    files: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    """Missed or imported messages with a file, and their payload (the connector stores the file before
    it returns)."""

    def add(self, router: UpdateRouter, update: Any, entities: dict[int, Any]) -> None:
        payloads = router.payloads(update, entities)
        message = getattr(update, "message", None)
        if payloads and getattr(message, "media", None) is not None:
            self.files.append((message, payloads[0]))
        self.history += payloads


async def dialogs(client: TelegramClient) -> Any:
    async with wire_errors("list the conversations"):
        return await client(
            functions.messages.GetDialogsRequest(
                offset_date=None, offset_id=0, offset_peer=types.InputPeerEmpty(), limit=PAGE, hash=0
            )
        )


def conversations(found: Any, account_id: str) -> tuple[Conversation, ...]:
    users = {u.id: u for u in found.users}
    chats = {c.id: c for c in found.chats}
    out = []
    for dialog in found.dialogs:
        peer = dialog.peer
        if isinstance(peer, types.PeerUser):
            user = users.get(peer.user_id)
            name = " ".join(
                p for p in (getattr(user, "first_name", None), getattr(user, "last_name", None)) if p
            )
            remote = f"user:{peer.user_id}"
            direct = ConversationKind.DIRECT
            out.append(
                Conversation(
                    network=NETWORK, account_id=account_id, remote_id=remote, name=name or None, type=direct
                )
            )
            continue
        chat_id = peer.chat_id if isinstance(peer, types.PeerChat) else peer.channel_id
        chat = chats.get(chat_id)
        broadcast = bool(getattr(chat, "broadcast", False))
        prefix = "chat" if isinstance(peer, types.PeerChat) else "channel"
        kind = ConversationKind.CHANNEL if broadcast else ConversationKind.GROUP
        title = getattr(chat, "title", None)
        remote = f"{prefix}:{chat_id}"
        out.append(
            Conversation(network=NETWORK, account_id=account_id, remote_id=remote, name=title, type=kind)
        )
    return tuple(out)


async def contacts(client: TelegramClient, account_id: str, self_id: int) -> tuple[Contact, ...]:
    """The account's Telegram contacts (``Contact.remote_id`` is the user id)."""
    async with wire_errors("list the contacts"):
        found = await client(functions.contacts.GetContactsRequest(hash=0))
    users = list(getattr(found, "users", []))  # contactsNotModified has none
    return tuple(
        Contact(
            network=NETWORK,
            account_id=account_id,
            remote_id=str(user.id),
            display_name=" ".join(p for p in (user.first_name, user.last_name) if p) or user.username,
            is_self=user.id == self_id,
        )
        for user in users
        if isinstance(user, types.User)
    )


def channel_pts(found: Any) -> dict[int, int]:
    """Each channel's ``pts`` in a dialog list."""
    return {
        d.peer.channel_id: d.pts for d in found.dialogs if isinstance(d.peer, types.PeerChannel) and d.pts
    }


async def catch_up(
    client: TelegramClient,
    committed: UpdateState,
    router: UpdateRouter,
    found: Any,
    *,
    linked: UpdateState | None = None,
    history_import: int = 0,
    log: Any = None,
    progress: ProgressReporter | None = None,
) -> CatchUp:
    """Everything after ``committed``; with nothing committed yet (a fresh account), everything after
    ``linked`` (the state when the account was linked) and the history import."""
    start = committed if not committed.empty else linked
    if start is None or start.empty:  # linked before the link state was kept: from the present
        async with wire_errors("read the update state"):
            now = await client(functions.updates.GetStateRequest())
        result = CatchUp(UpdateState(now.pts, now.qts, int(now.date.timestamp()), now.seq), fetched=False)
    else:
        result = CatchUp(UpdateState.from_json(start.as_json()))
    if committed.empty and history_import:  # oldest first: the import, then what the difference adds
        await import_history(client, found, router, result, history_import, log, progress)
    if result.fetched:
        await _common(client, result, router)
        for channel_id, pts in list(result.state.channels.items()):
            await _channel(client, result, router, channel_id, pts, progress or RecordingProgress())
    for channel_id, pts in channel_pts(found).items():  # channels joined meanwhile: followed from now on
        result.state.channels.setdefault(channel_id, pts)
    return result


async def _common(client: TelegramClient, result: CatchUp, router: UpdateRouter) -> None:
    state = result.state
    for _ in range(ROUNDS_MAX):
        async with wire_errors("catch up on missed updates"):
            diff = await client(
                functions.updates.GetDifferenceRequest(pts=state.pts, date=state.date, qts=state.qts)
            )
        if isinstance(diff, types.updates.DifferenceEmpty):
            return
        if isinstance(diff, types.updates.DifferenceTooLong):
            state.pts, result.complete = diff.pts, False
            return
        entities = {e.id: e for e in [*diff.users, *diff.chats]}
        for message in diff.new_messages:
            result.add(router, types.UpdateNewMessage(message, 0, 0), entities)
        for update in diff.other_updates:
            result.add(router, update, entities)
        final = diff.state if isinstance(diff, types.updates.Difference) else diff.intermediate_state
        state.pts, state.qts, state.seq = final.pts, final.qts, final.seq
        state.date = int(final.date.timestamp())
        if isinstance(diff, types.updates.Difference):
            return
    result.complete = False


async def _channel(
    client: TelegramClient,
    result: CatchUp,
    router: UpdateRouter,
    channel_id: int,
    pts: int,
    progress: ProgressReporter,
) -> None:
    """A channel's missed updates, reported on ``ctx.progress`` (phase ``catchup``) when there were any."""
    conversation, fetched = f"channel:{channel_id}", 0
    try:
        channel = await client.get_input_entity(types.PeerChannel(channel_id))
    except ValueError:
        result.complete = False  # no longer in our dialogs (left or banned): nothing to fetch from
        return
    for _ in range(ROUNDS_MAX):
        try:
            async with wire_errors("catch up in a channel"):
                diff = await client(
                    functions.updates.GetChannelDifferenceRequest(
                        channel=channel,
                        filter=types.ChannelMessagesFilterEmpty(),
                        pts=pts,
                        limit=PAGE,
                        force=True,
                    )
                )
        except PermanentError:  # CHANNEL_PRIVATE and the like: we are no longer in it
            result.complete = False
            return
        if isinstance(diff, types.updates.ChannelDifferenceTooLong):
            result.state.channels[channel_id], result.complete = diff.dialog.pts or pts, False
            return
        if isinstance(diff, types.updates.ChannelDifference):
            entities = {e.id: e for e in [*diff.users, *diff.chats]}
            for message in diff.new_messages:
                result.add(router, types.UpdateNewChannelMessage(message, 0, 0), entities)
            for update in diff.other_updates:
                result.add(router, update, entities)
            fetched += len(diff.new_messages)
            progress.report(conversation, done=fetched, phase="catchup", finished=bool(diff.final))
        pts = diff.pts
        result.state.channels[channel_id] = pts
        if diff.final:
            return
    result.complete = False
