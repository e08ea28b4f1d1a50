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

import random
import signal
from functools import partial
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.testing import chaos, servers
from msgr_bridge.testing.fakes.signal import SignalFake

from .test_chaos import chaos_db

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
    account = Account(id=ACCOUNT, network="signal", remote_user_id=NUMBER)
    return await chaos.prepare_account(url, account, settings={"number": NUMBER})


async def query(url: str, sql: str) -> list[tuple[str, int]]:
    async with Database(url) as db, db.engine.connect() as conn:
        return [(str(r[0]), int(r[1])) for r in (await conn.execute(text(sql))).all()]


async def interrupted_texts(url: str) -> dict[str, int]:
    """Texts of the sends a kill caught on the wire (recovered as ``interrupted``), and how often."""
    rows = await query(
        url,
        "SELECT o.payload->>'text', count(*) FROM delivery_attempts a JOIN outbox o ON o.id = a.outbox_id "
        "WHERE a.outcome = 'interrupted' GROUP BY 1",
    )
    return dict(rows)


def kill_inside_send(bridge: chaos.BridgeProcess, killed: anyio.Event, entry: dict[str, object]) -> None:
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
        extra = {"MSGR_BRIDGE__NETWORKS__SIGNAL__BASE_URL": fake.base_url}
        env = chaos.bridge_env(chaos_db, tmp_path / "data", port, sync_interval_s=3600, extra=extra)
        bridge = chaos.BridgeProcess(tmp_path, env)
        posted: list[str] = []
        accepted: list[str] = []

        def delivered() -> dict[str, int]:
            counts: dict[str, int] = {}
            for s in fake.sent:
                if s["kind"] == "message" and s["account"] == NUMBER:
                    counts[s["message"]] = counts.get(s["message"], 0) + 1
            return counts

        async def start_listening() -> None:
            bridge.start()
            await bridge.wait_for(lambda: fake.listening(NUMBER) != 0, 0.05)

        async def stored_all() -> bool:
            return set(posted) <= (await chaos.stored_counts(chaos_db, "signal", only_from=BOB)).keys()

        async def burst(run: int) -> None:
            """Bob writes while the bridge listens; the run ends only once all of it is stored."""
            for i in range(BURST):
                posted.append(f"{fake.peer_message(bob, NUMBER, f'run {run} message {i}')}:{BOB}")
            await bridge.wait_for(stored_all, 0.05)

        async def wait_to_kill(run: int) -> None:
            await burst(run)
            if run == 1:  # this kill lands inside a send: Signal took it, the bridge never heard
                killed = anyio.Event()
                fake.on_sent = partial(kill_inside_send, bridge, killed)
                await killed.wait()
                fake.on_sent = None
            else:  # sends keep going out: a kill lands between them, or in one
                await anyio.sleep(rng.uniform(0.2, 1.5))

        with anyio.fail_after(55):
            await start_listening()
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    partial(
                        chaos.send_through_api,
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
                await chaos.kill_and_restart(
                    bridge,
                    rng,
                    kills=KILLS,
                    before_kill=wait_to_kill,
                    pause=(0.0, 0.3),
                    restart=start_listening,
                    check_alive=False,
                )
            try:
                await burst(KILLS)
                await bridge.wait_for(lambda: all(delivered().get(t) for t in accepted), 0.2)
            finally:
                await bridge.stop()

    counts = await chaos.stored_counts(chaos_db, "signal", only_from=BOB)
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
