"""Chaos with Signal: the bridge as a subprocess, SIGKILLed and restarted while sends go in through the API
and another person writes, against the signal-cli-rest-api fake (in this test process).

What it can show, and what it cannot (docs/networks/signal.md, "After a crash"): signal-cli-rest-api keeps
no history and takes no acknowledgement. A message it pushed over the websocket is the bridge's to keep;
one that arrives while no websocket listens is gone (json-rpc mode). So inbound, each run waits until its
burst is stored before the kill: every message received while the bridge was up, and stored before the
kill, is stored exactly once across every later restart. Outbound, the kills land while sends are in
flight (one of them, on purpose, inside a send: the fake took it and the bridge never heard back): every
accepted send reaches Signal, and the only sends that reach it twice are those a kill caught on the wire
(their attempt recorded ``interrupted``): Signal neither drops a repeated send nor echoes our sends back to
a linked device, so the bridge cannot tell "written" from "never written" and sends again rather than lose
the message. The test checks each of those reached Signal exactly twice and every other send once.
"""

from __future__ import annotations

import os
import random
import signal
from functools import partial
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing import servers
from msgr_bridge.testing.fakes.signal import SignalFake

from .test_chaos import BridgeProcess, _send_through_api, chaos_db

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
__all__ = ["chaos_db"]

SEED = 20261208
KILLS = 3
BURST = 30
"""Messages another person writes in each run, stored before that run is killed."""
SENDS = 15
"""Sends go out at Signal's declared pace (one a second per conversation, bursts of five)."""
ACCOUNT = "acc-signal-chaos"
NUMBER = "+15550100090"
BOB = "+15550100091"


async def prepare(url: str) -> str:
    async with Database(url) as db:
        await AccountRepo(db).create(
            Account(id=ACCOUNT, network="signal", remote_user_id=NUMBER), settings={"number": NUMBER}
        )
        token = await TokenStore(db).create(tenant="default", name="chaos", scopes=["admin:*"])
    return token.token


async def query(url: str, sql: str) -> list[tuple[str, int]]:
    async with Database(url) as db, db.engine.connect() as conn:
        return [(str(r[0]), int(r[1])) for r in (await conn.execute(text(sql))).all()]


async def stored_counts(url: str) -> dict[str, int]:
    rows = await query(
        url,
        f"SELECT remote_id, count(*) FROM messages WHERE network = 'signal' AND sender_id = '{BOB}' "
        "GROUP BY remote_id",
    )
    return dict(rows)


async def interrupted_texts(url: str) -> dict[str, int]:
    """Texts of the sends a kill caught on the wire (recovered as ``interrupted``), and how often."""
    rows = await query(
        url,
        "SELECT o.payload->>'text', count(*) FROM delivery_attempts a JOIN outbox o ON o.id = a.outbox_id "
        "WHERE a.outcome = 'interrupted' GROUP BY 1",
    )
    return dict(rows)


def kill_inside_send(bridge: BridgeProcess, killed: anyio.Event, entry: dict[str, object]) -> None:
    """Called by the fake as it records a send, before it answers: SIGKILL the bridge there."""
    if entry["kind"] == "message" and bridge.proc is not None and not killed.is_set():
        bridge.proc.send_signal(signal.SIGKILL)
        killed.set()


async def test_sigkill_chaos_with_signal(chaos_db: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    async with SignalFake() as fake:
        fake.link(NUMBER, "Me")
        bob = fake.person(BOB, "Bob")
        api_token = await prepare(chaos_db)
        port = str(servers.free_port())
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")},
            "MSGR_BRIDGE__DATABASE__URL": chaos_db,
            "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp_path / "data"),
            "MSGR_BRIDGE__API__PORT": port,
            "MSGR_BRIDGE__SYNC__INTERVAL_S": "3600",
            "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
            "MSGR_BRIDGE__LOGGING__FORMAT": "json",
            "MSGR_BRIDGE__BRIDGE__SHUTDOWN_TIMEOUT_S": "5",
            "MSGR_BRIDGE__NETWORKS__SIGNAL__BASE_URL": fake.base_url,
        }
        bridge = BridgeProcess(tmp_path, env)
        posted: list[str] = []
        accepted: list[str] = []

        def delivered() -> dict[str, int]:
            counts: dict[str, int] = {}
            for s in fake.sent:
                if s["kind"] == "message" and s["account"] == NUMBER:
                    counts[s["message"]] = counts.get(s["message"], 0) + 1
            return counts

        async def listening() -> None:
            while fake.listening(NUMBER) == 0:
                assert bridge.alive(), f"the bridge exited on its own:\n{bridge.tail()}"
                await anyio.sleep(0.05)

        async def burst(run: int) -> None:
            """Bob writes while the bridge listens; the run ends only once all of it is stored."""
            for i in range(BURST):
                posted.append(f"{fake.peer_message(bob, NUMBER, f'run {run} message {i}')}:{BOB}")
            while not set(posted) <= (await stored_counts(chaos_db)).keys():
                assert bridge.alive(), f"the bridge exited on its own:\n{bridge.tail()}"
                await anyio.sleep(0.05)

        with anyio.fail_after(55):
            bridge.start()
            await listening()
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    partial(
                        _send_through_api,
                        port,
                        api_token,
                        accepted,
                        rng,
                        SENDS,
                        account=ACCOUNT,
                        conversation=BOB,
                        record="text",
                    )
                )
                for run in range(KILLS):
                    await burst(run)
                    if run == 1:  # this kill lands inside a send: Signal took it, the bridge never heard
                        killed = anyio.Event()
                        fake.on_sent = partial(kill_inside_send, bridge, killed)
                        await killed.wait()
                        fake.on_sent = None
                    else:  # sends keep going out: a kill lands between them, or in one
                        await anyio.sleep(rng.uniform(0.2, 1.5))
                    await bridge.kill()
                    await anyio.sleep(rng.uniform(0.0, 0.3))
                    bridge.start()
                    await listening()
            try:
                await burst(KILLS)
                while not all(delivered().get(t) for t in accepted):
                    assert bridge.alive(), f"the bridge exited on its own:\n{bridge.tail()}"
                    await anyio.sleep(0.2)
            finally:
                await bridge.stop()

    counts = await stored_counts(chaos_db)
    assert len(posted) == BURST * (KILLS + 1) and not set(posted) - counts.keys()
    assert {rid: n for rid, n in counts.items() if n != 1} == {}
    sent = delivered()
    assert len(accepted) == SENDS and not [t for t in accepted if not sent.get(t)]
    twice = {t: n for t, n in sent.items() if n > 1}
    caught = await interrupted_texts(chaos_db)
    # each time a kill catches a send on the wire, Signal may have it once more (a retried send can be
    # caught again by a later kill): never more copies than interruptions plus one
    assert all(n <= 1 + caught.get(t, 0) for t, n in twice.items()), (twice, caught)
    assert len(twice) >= 1  # the kill inside a send: Signal has it twice, as docs/networks/signal.md says
    print(
        f"signal chaos: {bridge.runs} runs, {len(posted)} received and stored once, {SENDS} sends, "
        f"{len(caught)} caught on the wire by a kill, {len(twice)} of them reached Signal twice"
    )
