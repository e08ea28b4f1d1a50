"""The Signal connector against the signal-cli-rest-api fake: what a person sees both ways, echoes, limits,
challenges and an unlinked device."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import aiohttp
import pytest
import structlog
from msgr_bridge_signal import SignalConnector
from msgr_bridge_signal.client import ChallengeRequired
from msgr_bridge_signal.convert import message_id
from signal_fixtures import BOB, ME, MemoryMedia, connector_for, media_connector

from msgr_bridge.errors import AuthenticationFailed, PermanentError, RateLimited, TransientError
from msgr_bridge.schema import (
    Attachment,
    Mention,
    Message,
    MessageReceipt,
    OutboundMessage,
    ReceiptState,
    TextFormat,
)
from msgr_bridge.testing.fakes import CollectingSink
from msgr_bridge.testing.fakes.signal import SignalFake
from msgr_bridge.testing.harness import Live
from msgr_bridge.testing.waiting import wait_until

MakeConnector = Callable[..., SignalConnector]


def out(text: str, **kw: object) -> OutboundMessage:
    return OutboundMessage(txn_id=f"txn-{text}", text=text, **kw)  # type: ignore[arg-type]


def sends(fake: SignalFake) -> list[dict[str, object]]:
    return [r for r in fake.requests if r["path"] == "/v2/send"]


async def test_echo_of_our_send_carries_our_txn_id(fake: SignalFake, make_connector: MakeConnector) -> None:
    fake.sync_echo = True  # a second device of the account sees our sends as sync messages
    async with Live(make_connector()) as live:
        await wait_until(lambda: fake.listening(ME) > 0)
        result = await live.connector.send_message(BOB, out("hello bob"))
        echo = await live.wait_text("hello bob")
    assert echo.txn_id == "txn-hello bob" and echo.sender.is_self
    assert echo.remote_id == result.remote_id and echo.conversation_id == BOB


async def test_sent_from_the_phone_is_the_person_own(fake: SignalFake, make_connector: MakeConnector) -> None:
    async with Live(make_connector()) as live:
        await wait_until(lambda: fake.listening(ME) > 0)
        ts = fake.own_device_sent(ME, "typed on my phone", destination=fake.person(BOB))
        m = await live.wait_text("typed on my phone")
    assert (
        m.sender.is_self
        and m.txn_id is None
        and m.remote_id == message_id(ts, ME)
        and m.conversation_id == BOB
    )


async def test_rate_limit_waits_then_goes_out(fake: SignalFake, make_connector: MakeConnector) -> None:
    connector = make_connector(rate_limit_retry_s=7)
    await connector.connect()
    try:
        fake.rate_limit(ME)
        with pytest.raises(RateLimited) as raised:
            await connector.send_message(BOB, out("later"))
        assert raised.value.retry_after == 7
        await connector.send_message(BOB, out("later"))  # what the outbox does after the wait
    finally:
        await connector.disconnect()
    assert [s["message"] for s in fake.sent if s["kind"] == "message"] == ["later"]


@pytest.mark.parametrize("status", [429, 413])
async def test_challenge_is_surfaced_not_retried(
    fake: SignalFake, make_connector: MakeConnector, status: int
) -> None:
    connector = make_connector()
    await connector.connect()
    try:
        fake.rate_limit(ME, status=status, challenge_tokens=["tok-123"], times=3)
        with structlog.testing.capture_logs() as logs, pytest.raises(ChallengeRequired) as raised:
            await connector.send_message(BOB, out("blocked"))
    finally:
        await connector.disconnect()
    error = raised.value
    assert isinstance(error, PermanentError) and not isinstance(error, RateLimited)  # the outbox fails it
    assert "tok-123" in error.message and f"/v1/accounts/%2B{ME[1:]}/rate-limit-challenge" in (
        error.hint or ""
    )
    alerts = [e for e in logs if e["event"] == "signal.challenge_required"]
    assert alerts and alerts[0]["log_level"] == "error" and alerts[0]["tokens"] == ["tok-123"]
    assert len(sends(fake)) == 1 and fake.sent == []


async def test_unlinked_device_is_bad_credentials(fake: SignalFake, make_connector: MakeConnector) -> None:
    connector = make_connector()
    await connector.connect()
    fake.unlink(ME)
    with pytest.raises(AuthenticationFailed):
        await connector.send_message(BOB, out("anyone there?"))
    await connector.disconnect()
    with pytest.raises(AuthenticationFailed):
        await connector.connect()


async def test_unlinked_while_quiet_is_found_by_the_liveness_check(
    fake: SignalFake, make_connector: MakeConnector
) -> None:
    live = await Live(make_connector(liveness_interval_s=0.2)).start()
    try:
        await wait_until(lambda: fake.listening(ME) > 0)
        fake.unlink(ME)  # the websocket stays open and silent, as upstream's does
        assert live.task is not None
        with pytest.raises(AuthenticationFailed):
            await asyncio.wait_for(asyncio.shield(live.task), 10)  # without the check: forever
        live.task = None
    finally:
        await live.stop()


async def test_dropped_websocket_is_a_transient_error(
    fake: SignalFake, make_connector: MakeConnector
) -> None:
    live = await Live(make_connector()).start()
    try:
        await wait_until(lambda: fake.listening(ME) > 0)
        fake.drop_websockets()
        assert live.task is not None
        with pytest.raises(TransientError):
            await asyncio.wait_for(asyncio.shield(live.task), 10)
        live.task = None
    finally:
        await live.stop()


async def test_attachments_both_ways(fake: SignalFake) -> None:
    data = bytes(range(256)) * 41  # 10 496 bytes, not a multiple of the chunk or of 3
    media = MemoryMedia({"https://bridge.test/s/up/content": data})
    async with Live(media_connector(fake, media)) as live:
        await wait_until(lambda: fake.listening(ME) > 0)
        file = Attachment(name="report; final.bin", url="https://bridge.test/s/up/content")
        await live.connector.send_message(BOB, out("a file", attachments=(file,)))
        fake.peer_message(
            fake.person(BOB), ME, "a picture", files=[(b"\x89PNG fake", "image/png", "cat.png")]
        )
        got = await live.wait_text("a picture")
    (sent,) = fake.sent[0]["attachments"]  # type: ignore[index]
    assert sent == {"content_type": "application/octet-stream", "filename": "report__final.bin", "data": data}
    (attachment,) = got.attachments
    assert attachment.name == "cat.png" and attachment.mime_type == "image/png" and attachment.url is not None
    assert media.received[attachment.url] == ("cat.png", "image/png", b"\x89PNG fake")


async def test_groups_quotes_and_sync_state(fake: SignalFake, make_connector: MakeConnector) -> None:
    bob = fake.person(BOB)
    group = fake.group("Friends", [ME, BOB])
    async with Live(make_connector()) as live:
        await wait_until(lambda: fake.listening(ME) > 0)
        ts = fake.peer_message(bob, ME, "hi group", group=group)
        m = await live.wait_text("hi group")
        assert m.conversation_id == group.id
        await live.connector.send_message(group.id, out("hi back", reply_to=m.remote_id))
        snapshot = await live.connector.sync_state(None)
    sent = fake.sent[-1]
    assert sent["recipients"] == [group.id] and sent["quote"] == {"timestamp": ts, "author": BOB}
    assert [c.remote_id for c in snapshot.conversations] == [group.id]
    assert snapshot.conversations[0].members == (ME, BOB) and not snapshot.complete
    assert BOB in {c.remote_id for c in snapshot.contacts}


async def test_only_own_messages_are_edited_or_deleted(
    fake: SignalFake, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    await connector.connect()
    try:
        with pytest.raises(PermanentError):
            await connector.edit(BOB, message_id(1700000000000, BOB), out("not mine"))
        with pytest.raises(PermanentError):
            await connector.delete(BOB, message_id(1700000000000, BOB))
        with pytest.raises(PermanentError):
            await connector.send_message("bob", out("no such conversation"))
    finally:
        await connector.disconnect()
    assert sends(fake) == []


async def test_polling_in_normal_mode() -> None:
    async with SignalFake(mode="normal") as fake:
        fake.link(ME)
        bob = fake.person(BOB)
        fake.peer_message(bob, ME, "waited at Signal")  # normal mode keeps it until someone polls
        from signal_fixtures import connector_for

        async with Live(connector_for(fake)) as live:
            first = await live.wait_text("waited at Signal")
            fake.peer_message(bob, ME, "while polling")
            second = await live.wait_text("while polling")
        assert isinstance(first, Message) and second.sender.user_id == BOB
        assert any(r["path"] == f"/v1/receive/{ME}" and r["query"].get("timeout") for r in fake.requests)
        assert fake.violations == []


async def test_styles_and_mentions_reach_signal(fake: SignalFake, make_connector: MakeConnector) -> None:
    async with Live(make_connector()) as live:
        await wait_until(lambda: fake.listening(ME) > 0)
        message = out(
            "hi Bob, this is important",
            formatted="hi Bob, this is <b>important</b>",
            format=TextFormat.HTML,
            mentions=(Mention(user_id=BOB, offset=3, length=3),),
        )
        await live.connector.send_message(BOB, message)
    [request] = sends(fake)
    assert request["body"]["text_mode"] == "styled"  # type: ignore[index]
    [entry] = [s for s in fake.sent if s["kind"] == "message"]
    assert entry["message"] == "hi Bob, this is important"  # as Signal carries it: markers read
    assert entry["styles"] == ["16:9:BOLD"]
    assert entry["mentions"] == [{"author": BOB, "start": 3, "length": 3}]


async def test_a_mention_signal_would_refuse_is_refused_by_the_fake(fake: SignalFake) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"number": ME, "recipients": [BOB], "message": "hi",
                "mentions": [{"author": BOB, "start": 1, "length": 5}]}  # fmt: skip
        async with http.post(fake.base_url + "/v2/send", json=body) as r:
            assert r.status == 400 and "mention" in (await r.json())["error"]


async def test_a_receipt_of_our_group_message_is_placed_in_the_group_after_a_restart_too(
    fake: SignalFake,
) -> None:
    bob = fake.person(BOB)
    group = fake.group("Friends", [ME, BOB])
    first = connector_for(fake)
    async with Live(first) as live:
        await wait_until(lambda: fake.listening(ME) > 0)
        sent = await live.connector.send_message(group.id, out("to the group"))
        stamp = int(sent.remote_id.split(":")[0])
        fake.peer_receipt(bob, ME, [stamp], kind="delivery")
        receipt = await live.wait_event(lambda e: isinstance(e, MessageReceipt))
    assert isinstance(receipt, MessageReceipt) and receipt.conversation_id == group.id
    assert receipt.target_id == sent.remote_id and receipt.state is ReceiptState.DELIVERED
    # a new connector (a restart: nothing in memory) with the same account state
    again = SignalConnector(replace(first.ctx, sink=CollectingSink()))
    async with Live(again) as live:
        await wait_until(lambda: fake.listening(ME) > 0)
        fake.peer_receipt(bob, ME, [stamp], kind="read")
        read = await live.wait_event(lambda e: isinstance(e, MessageReceipt))
    assert isinstance(read, MessageReceipt) and read.conversation_id == group.id
    assert read.state is ReceiptState.READ
