"""Chaos with Telegram: the bridge as a subprocess, SIGKILLed at random points and restarted, while people
write to the linked account on the fake Telegram (in this test process) and sends go in through the API.
At the end every message written is stored exactly once (``updates.getDifference`` fills what a killed
bridge missed, the store deduplicates what it saw twice), and every accepted send reached Telegram exactly
once: a resend carries the same ``random_id`` (from the transaction id), which Telegram refuses.

Messages are written from before the first run starts, and the first run is killed as soon as it connected,
before its first sync was committed: the first catch-up must start from the update state read when the
account was linked. This test found that loss: a first sync started from ``getState`` skipped everything
written before it, and the first runs had been killed before they committed anything."""

from __future__ import annotations

import os
import random
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import text

from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.testing import chaos, servers

from .test_chaos import chaos_db

telethon = pytest.importorskip("telethon")  # the Telegram plugin brings Telethon

from msgr_bridge_telegram import TelegramConnector  # noqa: E402
from msgr_bridge_telegram.config import TEST_SERVER_ENV  # noqa: E402

from msgr_bridge.testing.fakes.telegram import FakeTelegram  # noqa: E402
from msgr_bridge.testing.fakes.telegram.world import User  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
__all__ = ["chaos_db"]  # the fixture, shared with test_chaos

SEED = 20261207
KILLS = 3
POSTED = 300
BURST = 10
"""Messages are posted in bursts of ``BURST`` for as long as the kills go on (and all ``POSTED`` at least)."""
SENDS = 8
"""Sends go out at Telegram's pace (about one a second per chat, declared by the connector), so they are
still in flight during the kills."""
ACCOUNT = "acc-telegram-chaos"
SETTINGS = {"api_id": 611335, "api_hash": "0123456789abcdef0123456789abcdef", "history_import": 0}


async def prepare(url: str, tmp: Path, fake: FakeTelegram, alice: User, monkeypatch: Any) -> str:
    monkeypatch.setenv(TEST_SERVER_ENV, fake.address)
    flow = TelegramConnector.link_flow(SETTINGS)
    await flow.start()
    linked = await flow.submit({"phone": "+" + alice.phone, "code": alice.login_code})
    return await chaos.prepare_account(
        url,
        Account(id=ACCOUNT, network="telegram", remote_user_id=linked.remote_user_id),
        settings={**SETTINGS, **linked.settings},
        secrets=linked.secrets,
        data_dir=tmp / "data",
    )


async def stored_files(url: str, remote_ids: list[str]) -> dict[str, int]:
    """Attachments of each stored message among ``remote_ids``."""
    async with Database(url) as db, db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT remote_id, attachments FROM messages WHERE network = 'telegram'"),
        )
        return {r[0]: len(r[1] or []) for r in rows.all() if r[0] in remote_ids}


async def test_sigkill_chaos_with_telegram_loses_and_duplicates_nothing(
    chaos_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(SEED)
    fake = await FakeTelegram().start()
    try:
        alice = fake.world.add_user("Alice", "15550001", username="alice")
        friend = fake.world.add_user("Friend", "15550002")  # gets the sends; writes nothing
        people = [fake.world.add_user(f"Person{i}", f"1555001{i}") for i in range(2)]
        api_token = await prepare(chaos_db, tmp_path, fake, alice, monkeypatch)
        port = str(servers.free_port())
        extra = {TEST_SERVER_ENV: fake.address}
        env = chaos.bridge_env(chaos_db, tmp_path / "data", port, sync_interval_s=2, extra=extra)
        bridge = chaos.BridgeProcess(tmp_path, env)
        posted: list[str] = []
        accepted: list[str] = []
        albums: list[str] = []
        in_flight: list[bool] = []
        """Per kill: whether sends were still on their way to Telegram."""

        chaos_over = anyio.Event()

        async def post_all() -> None:
            """Bursts while the bridge comes and goes, so kills hit it while messages arrive."""
            i = 0
            while i < POSTED or not chaos_over.is_set():
                for _ in range(BURST):
                    post = fake.world.send(rng.choice(people), alice, f"posted {i}")
                    posted.append(str(post.ids[alice.id]))
                    i += 1
                if i % (BURST * 5) == 0:  # now and then an album: one message with every file
                    files = [
                        fake.files.add(os.urandom(1000), name=f"a{n}.bin", mime_type="x/y") for n in (1, 2)
                    ]
                    first = fake.world.send_album(rng.choice(people), alice, files, f"album {i}")[0]
                    posted.append(str(first.ids[alice.id]))
                    albums.append(posted[-1])
                await anyio.sleep(0.3)

        def delivered() -> dict[str, int]:
            counts: dict[str, int] = {}
            for post in alice.posts.values():
                if post.sender == alice.id and friend.id in post.place[1:]:
                    counts[post.text] = counts.get(post.text, 0) + 1
            return counts

        async def start_live() -> None:
            """Start a run and wait until it checked its session (Telethon asks getState when it connects;
            the link's own call is counted before): every kill hits a live account."""
            before = len(fake.calls("GetStateRequest"))
            bridge.start()
            await bridge.wait_for(lambda: len(fake.calls("GetStateRequest")) != before)

        async def wait_to_kill(kill: int) -> None:
            # The first kill comes as soon as the first run connected, before its first sync was
            # committed; the others while it runs.
            await anyio.sleep(rng.uniform(0.5, 2.5) if kill else 0)
            bridge.assert_alive()
            in_flight.append(sum(delivered().values()) < SENDS)

        counts: dict[str, int] = {}

        async def caught_up() -> bool:
            nonlocal counts
            counts = await chaos.stored_counts(chaos_db, "telegram", not_from=str(alice.id))
            return set(posted) <= counts.keys() and all(delivered().get(t) for t in accepted)

        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:
                tg.start_soon(post_all)  # from before the first run starts
                tg.start_soon(
                    partial(
                        chaos.send_through_api,
                        port,
                        api_token,
                        accepted,
                        rng,
                        SENDS,
                        account=ACCOUNT,
                        conversation=f"user:{friend.id}",
                        record="text",
                    )
                )
                await start_live()
                await chaos.kill_and_restart(
                    bridge, rng, kills=KILLS, before_kill=wait_to_kill, restart=start_live, check_alive=False
                )
                chaos_over.set()
            try:
                await bridge.wait_for(caught_up, 0.3, tries=400)
                missing = sorted(set(posted) - counts.keys(), key=int)
                unsent = [t for t in accepted if not delivered().get(t)]
                ranges: list[list[int]] = []
                for n in map(int, missing):
                    if ranges and ranges[-1][1] == n - 1:
                        ranges[-1][1] = n
                    else:
                        ranges.append([n, n])
                diffs = len(fake.calls("GetDifferenceRequest"))
                assert not missing and not unsent, (
                    len(missing),
                    ranges,
                    posted[:3],
                    posted[-3:],
                    diffs,
                    unsent,
                )
            finally:
                await bridge.stop()
    finally:
        await fake.stop()

    counts = await chaos.stored_counts(chaos_db, "telegram", not_from=str(alice.id))
    assert not set(posted) - counts.keys()
    assert {rid: n for rid, n in counts.items() if n != 1} == {}
    sent = delivered()
    assert {t: n for t, n in sent.items() if n != 1} == {}, "a send reached Telegram more than once"
    assert len(accepted) == SENDS and set(accepted) <= sent.keys()
    assert fake.protocol_errors == [], fake.protocol_errors
    assert any(in_flight), "no kill happened while sends were on their way: the test lost its point"
    assert await stored_files(chaos_db, albums) == dict.fromkeys(albums, 2), "an album lost a file"
    print(
        f"telegram chaos: {bridge.runs} runs, {len(posted)} posted ({len(albums)} albums), "
        f"{len(fake.calls('GetDifferenceRequest'))} getDifference, sends in flight at kills: {in_flight}"
    )
