"""Albums (Telegram messages sharing a ``grouped_id``) arrive as one message with every file, live and
caught up; a redelivery after a crash forms the same messages, so nothing is dropped as a duplicate."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from msgr_bridge_telegram import TelegramConnector
from msgr_bridge_telegram.album import WAIT_S

from msgr_bridge.connectors.protocol import Ack, RawPayload
from msgr_bridge.media.sharelinks import ShareLinkService
from msgr_bridge.schema import Attachment, Message, Reaction
from msgr_bridge.sdk.media import Media, MediaRules
from msgr_bridge.testing.fakes import CollectingSink, MemoryStateStore, make_context
from msgr_bridge.testing.harness import Live


class HeldSink(CollectingSink):
    """Collects payloads and never acknowledges them (the process dies before the core commits)."""

    async def push(self, payload: RawPayload, *, ack: Ack | None = None) -> None:
        await super().push(payload)


async def linked(telegram: Any) -> dict[str, Any]:
    flow = TelegramConnector.link_flow(telegram.settings)
    await flow.start()
    result = await flow.submit(telegram.answers())
    settings = {**telegram.settings, **result.settings, "history_import": 0}
    return {"remote_user_id": result.remote_user_id, "settings": settings, "secrets": result.secrets}


def build(account: dict[str, Any], shares: ShareLinkService, **kw: Any) -> TelegramConnector:
    media = Media(MediaRules(), shares=lambda: shares)
    kw.setdefault("sink", CollectingSink())
    return TelegramConnector(make_context("telegram", media=media, **account, **kw))


async def stored_bytes(shares: ShareLinkService, attachment: Attachment) -> bytes:
    async with Media(MediaRules(), shares=lambda: shares).open(attachment) as stream:
        return b"".join([chunk async for chunk in stream.chunks])


def files(telegram: Any, count: int) -> tuple[list[bytes], list[Any]]:
    data = [os.urandom(20_000 + i) for i in range(count)]
    return data, [telegram.fake.files.add(d, name=f"p{i}.bin", mime_type="x/y") for i, d in enumerate(data)]


def messages(live: Live, payloads: Any = None) -> list[Message]:
    return [e for e in live.events(payloads) if isinstance(e, Message)]


async def test_an_album_arrives_as_one_message_with_every_file(
    telegram: Any, shares: ShareLinkService
) -> None:
    world, bob, alice = telegram.fake.world, telegram.bob, telegram.alice
    data, stored = files(telegram, 3)
    async with Live(build(await linked(telegram), shares)) as live:
        posts = world.send_album(bob, alice, stored, "three photos")
        world.send(bob, alice, "after")
        album = await live.wait_text("three photos")
        await live.wait_text("after")
        ids = [str(p.ids[alice.id]) for p in posts]
        assert album.remote_id == ids[0]
        assert [await stored_bytes(shares, a) for a in album.attachments] == data
        assert [m.text for m in messages(live)] == ["three photos", "after"]
        world.react(bob, posts[1], "👍")  # on the second photo: the album's message
        reaction = await live.wait_event(lambda e: isinstance(e, Reaction))
        assert isinstance(reaction, Reaction) and reaction.target_id == ids[0]
        world.send(bob, alice, "about the third", reply_to=posts[2].ids[bob.id])
        assert (await live.wait_text("about the third")).reply_to == ids[0]


async def test_an_album_in_several_containers_is_still_one_message(
    telegram: Any, shares: ShareLinkService
) -> None:
    """An album from another data centre comes in one container per message, close together."""
    world, bob, alice = telegram.fake.world, telegram.bob, telegram.alice
    _, stored = files(telegram, 2)
    async with Live(build(await linked(telegram), shares)) as live:
        world.send_album(bob, alice, stored, "split", split=True)
        album = await live.wait_text("split")
        await asyncio.sleep(WAIT_S * 2)
    assert len(album.attachments) == 2 and len(messages(live)) == 1


async def test_an_album_missed_while_down_is_one_message_of_the_catch_up(
    telegram: Any, shares: ShareLinkService
) -> None:
    world, bob, alice = telegram.fake.world, telegram.bob, telegram.alice
    data, stored = files(telegram, 4)
    bridge = build(await linked(telegram), shares)
    async with Live(bridge) as live:
        world.send(bob, alice, "seen live")
        await live.wait_text("seen live")
    world.send_album(bob, alice, stored[:2], "first album")
    world.send_album(bob, alice, stored[2:], "second album")
    async with Live(bridge) as live:
        assert live.snapshot is not None
        found = messages(live, live.snapshot.history)
    assert [m.text for m in found] == ["first album", "second album"]
    assert [await stored_bytes(shares, a) for m in found for a in m.attachments] == data


async def test_an_album_pushed_but_not_committed_comes_back_the_same_after_a_crash(
    telegram: Any, shares: ShareLinkService
) -> None:
    """Items that came apart live (the second pair after the inbox stopped waiting) stay a message of
    their own when the catch-up redelivers them all together: merged into the first, they would be
    dropped as a duplicate of it."""
    world, bob, alice = telegram.fake.world, telegram.bob, telegram.alice
    data, stored = files(telegram, 4)
    account, state = await linked(telegram), MemoryStateStore()
    grouped = 77
    first = await Live(build(account, shares, sink=HeldSink(), state=state)).start()
    try:
        world.send(bob, alice, "", media=stored[0], grouped_id=grouped)
        world.send(bob, alice, "", media=stored[1], grouped_id=grouped)
        await first.sink.wait_for(lambda p: True)
        world.send(bob, alice, "", media=stored[2], grouped_id=grouped)
        world.send(bob, alice, "", media=stored[3], grouped_id=grouped)
        await telegram.until(lambda: len(first.sink.payloads) == 2)
        live_parts = [(m.remote_id, len(m.attachments)) for m in messages(first)]
    finally:
        await first.stop()  # killed: nothing was acknowledged
    assert len(live_parts) == 2 and [n for _, n in live_parts] == [2, 2]
    again = await Live(build(account, shares, state=state)).start()
    try:
        assert again.snapshot is not None
        redelivered = [(m.remote_id, len(m.attachments)) for m in messages(again, again.snapshot.history)]
    finally:
        await again.stop()
    assert redelivered == live_parts
    assert telegram.fake.files.served_bytes == sum(map(len, data)), "a file was downloaded twice"


async def test_a_caption_on_a_later_photo_is_kept(telegram: Any, shares: ShareLinkService) -> None:
    world, bob, alice = telegram.fake.world, telegram.bob, telegram.alice
    _, stored = files(telegram, 2)
    async with Live(build(await linked(telegram), shares)) as live:
        with world.together():
            world.send(bob, alice, "one", media=stored[0], grouped_id=5)
            world.send(bob, alice, "two", media=stored[1], grouped_id=5)
        album = await live.wait_event(lambda e: isinstance(e, Message))
    assert isinstance(album, Message) and album.text == "one\n\ntwo" and len(album.attachments) == 2
