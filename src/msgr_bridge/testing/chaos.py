"""Chaos tests for connectors: ``msgr-bridge run`` as a subprocess, SIGKILLed and restarted while a fake
(or real) network and the HTTP API keep traffic flowing, then checked for lost and doubled messages.

The pieces every chaos test needs, so a plugin author writes only what is particular to the network::

    url = ...  # a migrated PostgreSQL database of its own (the bridge's outbox is what survives a kill)
    token = await prepare_account(
        url, Account(id="acc", network="mynet", remote_user_id="me"),
        settings={...}, secrets={"token": "..."}, data_dir=tmp_path / "data",
    )
    port = str(servers.free_port())
    bridge = BridgeProcess(tmp_path, bridge_env(url, tmp_path / "data", port, sync_interval_s=2))

    async def start_live() -> None:  # every kill then hits a live account, not one still starting
        bridge.start()
        await bridge.wait_for(fake_saw_a_login)

    await start_live()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(send_through_api, port, token, accepted, rng, 20,
                              account="acc", conversation="c1", record="text"))
        await kill_and_restart(bridge, rng, kills=3, before_kill=lambda i: anyio.sleep(1.0),
                               restart=start_live)
    try:
        await bridge.wait_for(everything_arrived)
    finally:
        await bridge.stop()
    counts = await stored_counts(url, "mynet", not_from="me")

- ``BridgeProcess``: the subprocess (``start``, ``kill`` (SIGKILL), ``stop`` (SIGTERM), ``alive``,
  ``assert_alive``, ``tail`` of this run's log, ``wait_for(check)`` that fails as soon as the bridge
  exited on its own). ``runs`` counts the starts; each run logs to ``bridge-<run>.log`` in its directory.
- ``bridge_env``: the environment for it, configured through ``MSGR_BRIDGE__*`` variables only (any
  inherited ones dropped), with warning-level JSON logs and a 5 s shutdown.
- ``prepare_account``: the account's secrets in the keystore, the account row, and an admin API token.
- ``send_through_api``: sends through ``POST /v1/accounts/{id}/conversations/{conv}/messages`` while the
  bridge comes and goes, each retried under its idempotency key until the API accepted it.
- ``kill_and_restart``: the kill loop (wait, SIGKILL, pause, start again, and wait until the new run is
  live when asked).
- ``stored_counts`` / ``stored_texts`` / ``misfiled_links``: what the database holds afterwards.

Everything here runs in the test's event loop (anyio); none of it starts a server of its own.
"""

from __future__ import annotations

import inspect
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import anyio
from sqlalchemy import text

from ..config import load_settings
from ..credentials.factory import build_credential_store
from ..schema import Account
from ..store.db import Database
from ..store.repos.accounts import AccountRepo
from ..store.tokens import TokenStore
from .waiting import Check

__all__ = [
    "BridgeProcess",
    "bridge_env",
    "kill_and_restart",
    "misfiled_links",
    "prepare_account",
    "send_through_api",
    "stored_counts",
    "stored_texts",
]


class BridgeProcess:
    """``msgr-bridge run`` in a subprocess, configured through MSGR_BRIDGE__* variables only."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = (self.tmp / f"bridge-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "msgr_bridge.cli", "run"],
            cwd=self.tmp,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    async def kill(self) -> None:
        """SIGKILL this run (unless it already ended) and wait until it is gone."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        await self._wait()

    async def stop(self) -> None:
        """SIGTERM this run (a clean shutdown) and wait up to 20 s for it to end."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        await self._wait(20)

    async def _wait(self, timeout: float = 10) -> None:
        assert self.proc is not None
        with anyio.fail_after(timeout):
            for _ in range(1_000_000):
                if self.proc.poll() is not None:
                    return
                await anyio.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        """Fail with the end of this run's log when the bridge exited on its own."""
        assert self.alive(), f"the bridge exited on its own:\n{self.tail()}"

    def tail(self, lines: int = 30) -> str:
        path = self.tmp / f"bridge-{self.runs}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def wait_for(self, check: Check, interval: float = 0.1, *, tries: int | None = None) -> bool:
        """Poll ``check()`` (sync or async) every ``interval`` seconds until it is true, failing as soon as
        the bridge exited on its own. With ``tries``, give up after that many false answers and return
        False (the caller's assertions then say what is missing); True once ``check()`` held."""
        attempts = 0
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return True
            attempts += 1
            if tries is not None and attempts >= tries:
                return False
            self.assert_alive()
            await anyio.sleep(interval)


def bridge_env(
    database_url: str,
    data_dir: Path,
    api_port: str,
    *,
    sync_interval_s: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a ``BridgeProcess``: ours without any ``MSGR_BRIDGE*`` variable, plus the
    database, data directory and API port, warning-level JSON logs, a 5 s shutdown, the sync interval
    when given, and ``extra`` (network settings, test-server switches) last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")}
    env |= {
        "MSGR_BRIDGE__DATABASE__URL": database_url,
        "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(data_dir),
        "MSGR_BRIDGE__API__PORT": api_port,
    }
    if sync_interval_s is not None:
        env["MSGR_BRIDGE__SYNC__INTERVAL_S"] = str(sync_interval_s)
    env |= {
        "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
        "MSGR_BRIDGE__LOGGING__FORMAT": "json",
        "MSGR_BRIDGE__BRIDGE__SHUTDOWN_TIMEOUT_S": "5",
    }
    return env | dict(extra or {})


async def prepare_account(
    url: str,
    account: Account,
    *,
    settings: Mapping[str, Any],
    secrets: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
    token_name: str = "chaos",
) -> str:
    """Store ``account`` with its ``settings`` in the database at ``url``, its ``secrets`` (if any) in the
    keystore under ``data_dir`` (the bridge process's data directory, where it will look for them), and
    return a new API token with every scope (``admin:*``) for the ``default`` tenant."""
    if secrets:
        if data_dir is None:
            raise ValueError("prepare_account: secrets need the bridge's data_dir (its keystore lives there)")
        config = load_settings(overrides={"bridge": {"data_dir": str(data_dir)}, "database": {"url": url}})
        creds = await build_credential_store(config)
        try:
            for key, value in secrets.items():
                await creds.put(account.id, key, value)
        finally:
            await creds.aclose()
    async with Database(url) as db:
        await AccountRepo(db).create(account, settings=dict(settings))
        token = await TokenStore(db).create(tenant="default", name=token_name, scopes=["admin:*"])
    return str(token.token)


async def send_through_api(
    port: str,
    token: str,
    accepted: list[str],
    rng: random.Random,
    count: int,
    *,
    account: str,
    conversation: str,
    record: Literal["txn_id", "text"] = "txn_id",
) -> None:
    """POST ``count`` sends (texts ``outbound 0``, ``outbound 1``, ...) while the bridge comes and goes; a
    request is accepted once the API answered 2xx.

    Each request carries an idempotency key and is retried until accepted (a kill mid-request leaves the
    client unsure, as a real client would be); the key makes the retry safe. ``accepted`` gets each
    accepted send's transaction id, or its text (``record="text"``) for networks matched by what arrived.
    """
    url = (
        f"http://127.0.0.1:{port}/v1/accounts/{account}/conversations/{quote(conversation, safe='')}/messages"
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        for i in range(count):
            body: dict[str, Any] = {"text": f"outbound {i}", "idempotency_key": f"chaos-{i}"}
            while True:
                try:
                    async with http.post(url, json=body, headers=headers) as resp:
                        if resp.status < 300:
                            data = await resp.json()
                            txn = data.get("txn_id") or data.get("entry", {}).get("txn_id")
                            accepted.append(body["text"] if record == "text" else str(txn))
                            break
                        assert resp.status >= 500 or resp.status == 503, await resp.text()
                except (aiohttp.ClientError, OSError):
                    pass
                await anyio.sleep(0.05)
            if rng.random() < 0.1:
                await anyio.sleep(0.01)


async def kill_and_restart(
    bridge: BridgeProcess,
    rng: random.Random,
    *,
    kills: int,
    before_kill: Callable[[int], Awaitable[object]],
    pause: tuple[float, float] = (0.0, 0.5),
    restart: Callable[[], Awaitable[object]] | None = None,
    check_alive: bool = True,
) -> None:
    """The kill loop, on a bridge already started: ``kills`` times, await ``before_kill(i)`` (the moment
    to kill), check the bridge is still up (unless ``check_alive`` is false: a kill already done, or one
    whose timing matters more), SIGKILL it, pause a random time within ``pause`` and start it again:
    ``bridge.start()``, or ``restart()`` when given (one that starts it and waits until the new run is
    live, e.g. until the fake saw it log in, so the next kill hits a live account)."""
    for i in range(kills):
        await before_kill(i)
        if check_alive:
            bridge.assert_alive()
        await bridge.kill()
        await anyio.sleep(rng.uniform(*pause))
        if restart is None:
            bridge.start()
        else:
            await restart()


async def stored_counts(
    url: str, network: str, *, not_from: str | None = None, only_from: str | None = None
) -> dict[str, int]:
    """Rows per remote id of the messages stored for ``network``: those not sent by ``not_from`` (the
    account's own user, whose sends echo back), or only those sent by ``only_from``."""
    sql = "SELECT remote_id, count(*) FROM messages WHERE network = :net"
    params = {"net": network}
    if not_from is not None:
        sql += " AND sender_id <> :not_from"
        params["not_from"] = not_from
    if only_from is not None:
        sql += " AND sender_id = :only_from"
        params["only_from"] = only_from
    async with Database(url) as db, db.engine.connect() as conn:
        rows = await conn.execute(text(sql + " GROUP BY remote_id"), params)
        return {str(r[0]): int(r[1]) for r in rows.all()}


async def stored_texts(url: str, network: str, like: str) -> Counter[str]:
    """Rows per text of the messages stored for ``network`` whose text matches the SQL pattern ``like``
    (for networks without stable remote ids to count by, IRC among them)."""
    async with Database(url) as db, db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT text, count(*) FROM messages WHERE network = :net AND text LIKE :like GROUP BY text"
            ),
            {"net": network, "like": like},
        )
        return Counter({str(r[0]): int(r[1]) for r in rows.all()})


async def misfiled_links(url: str) -> int:
    """Messages not linked to exactly one account (``message_accounts``): 0 in a healthy store."""
    async with Database(url) as db, db.engine.connect() as conn:
        bad = await conn.scalar(
            text(
                "SELECT count(*) FROM (SELECT message_id FROM message_accounts GROUP BY message_id "
                "HAVING count(*) <> 1) x"
            )
        )
    return int(bad or 0)
