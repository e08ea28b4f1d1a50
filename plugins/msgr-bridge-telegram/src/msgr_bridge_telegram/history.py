"""History import when an account is linked: the last ``history_import`` messages of each conversation in
its dialog list (the 100 most recent), oldest first, through the same payloads as live messages; their
files are stored like live ones.

It runs in the account's first sync, after the update state was read, so what arrives meanwhile comes
live as well and the store keeps it once. A kill before the core commits the import leaves no stored
state, so the next start imports again (deduplicated); once committed it never runs again. Each page is
reported on ``ctx.progress`` (phase ``history``), and each conversation as finished once fetched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telethon import TelegramClient
from telethon.tl import functions, types

from msgr_bridge.sdk.progress import ProgressReporter, RecordingProgress

from .client import conversation_id, wire_errors
from .updates import UpdateRouter

if TYPE_CHECKING:
    from .catchup import CatchUp

PAGE = 100


async def import_history(
    client: TelegramClient,
    found: Any,
    router: UpdateRouter,
    into: CatchUp,
    per_chat: int,
    log: Any,
    progress: ProgressReporter | None = None,
) -> None:
    """Adds the payloads to ``into.history`` (and messages with a file to ``into.files``)."""
    progress = progress or RecordingProgress()
    for index, dialog in enumerate(found.dialogs, 1):
        try:
            peer = await client.get_input_entity(dialog.peer)
        except ValueError:
            continue
        conversation = conversation_id(dialog.peer)
        messages: list[Any] = []
        entities: dict[int, Any] = {}
        offset = 0
        while len(messages) < per_chat:
            async with wire_errors("import history"):
                page = await client(
                    functions.messages.GetHistoryRequest(
                        peer=peer, offset_id=offset, offset_date=None, add_offset=0,
                        limit=min(PAGE, per_chat - len(messages)), max_id=0, min_id=0, hash=0,
                    )
                )  # fmt: skip
            entities.update({e.id: e for e in [*page.users, *page.chats]})
            messages += page.messages
            progress.report(conversation, done=len(messages), phase="history")
            if len(page.messages) < PAGE or not page.messages:
                break
            offset = page.messages[-1].id
        wrap = (
            types.UpdateNewChannelMessage
            if isinstance(dialog.peer, types.PeerChannel)
            else types.UpdateNewMessage
        )
        for message in reversed(messages):
            into.add(router, wrap(message, 0, 0), entities)
        progress.report(conversation, done=len(messages), phase="history", finished=True)
        log.info(
            "telegram.history_import",
            dialogs_done=index,
            dialogs=len(found.dialogs),
            payloads=len(into.history),
        )
