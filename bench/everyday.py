"""Everyday cost: a real ``msgr-bridge run`` process and a real ngIRCd, at the rates people chat at.

What it measures, each against the bridge process alone (its CPU time from /proc, so other load on the
machine does not count):

* idle: RSS and CPU share over ``--idle`` seconds with one linked IRC account and nothing happening;
* inbound at 1, 10 and 100 msg/s: another IRC client says lines in the channel, paced; a client of the
  bridge's event stream (WebSocket) receives them. CPU per message, latency p50/p99 (line sent -> event
  received by the stream client);
* outbound at the same rates: ``POST .../messages`` on one keep-alive connection, paced; latency from the
  request's start to the line reaching the other IRC client, CPU per message;
* a burst of ``--burst`` lines, then RSS right after and ``--settle`` seconds later, against idle.

The account's IRC flood control is raised for the run (``flood_rate``/``flood_burst``: the operator decides
the pace) so that 100 msg/s out is possible; ngIRCd's own penalties are off in the test server.

Run: ``.venv/bin/python bench/everyday.py [--rates 1,10,100] [--seconds 10] [--burst 5000]``. A table, then
as the last line one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.tokens import TokenStore
from msgr_bridge.testing.ngircd import running_ngircd
from msgr_bridge.testing.processes import free_port

CHANNEL, BRIDGE_NICK, PEER_NICK = "#everyday", "bridgeuser", "peer"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def main_thread_seconds(pid: int) -> float:
    """CPU time of the bridge's event-loop thread alone (the rest: SQLite's threads, the executor)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


class Peer:
    """The other person on IRC: says lines, and notes when the bridge's lines arrive."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.send(f"NICK {PEER_NICK}", f"USER {PEER_NICK} 0 * :peer")
        await self._until(" 001 ")
        self.send(f"JOIN {CHANNEL}")
        await self._until(" 366 ")
        self.task = asyncio.create_task(self._read())

    def send(self, *lines: str) -> None:
        self.writer.write(b"".join(line.encode() + b"\r\n" for line in lines))

    async def _until(self, marker: str) -> None:
        while marker not in (await self.reader.readline()).decode(errors="replace"):
            pass

    async def _read(self) -> None:
        prefix = f":{BRIDGE_NICK}!"
        while line := (await self.reader.readline()).decode(errors="replace").rstrip("\r\n"):
            if line.startswith("PING"):
                self.send("PONG" + line[4:])
            elif line.startswith(prefix) and f" PRIVMSG {CHANNEL} :" in line:
                self.arrived.setdefault(line.split(" :", 1)[1], time.perf_counter())
                self.changed.set()


class Stream:
    """A client of the bridge's event stream, noting when each message text arrives."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def run(self, http: aiohttp.ClientSession, url: str, token: str, ready: asyncio.Event) -> None:
        async with http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
            async for frame in ws:
                data = json.loads(frame.data)
                if data.get("type") == "live":
                    ready.set()
                for event in data.get("events", ()):
                    body = event.get("event") or {}
                    text = (body.get("message") or body).get("text")
                    if isinstance(text, str):
                        self.arrived.setdefault(text, time.perf_counter())
                        self.changed.set()


async def wait_all(
    arrived: dict[str, float], changed: asyncio.Event, texts: list[str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while any(t not in arrived for t in texts) and time.monotonic() < deadline:
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break


async def paced(rate: float, count: int, act: Any) -> dict[str, float]:
    """Call ``act(i)`` ``count`` times at ``rate`` per second; returns each text's start time."""
    started: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(count):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        text, at = await act(i)
        started[text] = at
    return started


def figures(label: str, started: dict[str, float], arrived: dict[str, float], cpu: float) -> dict[str, Any]:
    lat = [(arrived[t] - s) * 1000 for t, s in started.items() if t in arrived]
    return {
        "messages": len(started),
        "lost": len(started) - len(lat),
        "cpu_ms_per_msg": round(cpu * 1000 / max(1, len(started)), 2),
        "p50_ms": round(pct(lat, 50), 2),
        "p99_ms": round(pct(lat, 99), 2),
        "label": label,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with running_ngircd() as irc, tempfile.TemporaryDirectory(prefix="msgr-everyday-") as tmp:
        data = Path(tmp) / "data"
        url = f"sqlite:///{data}/bridge.db"
        port = free_port()
        env = {
            **os.environ,
            "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(data),
            "MSGR_BRIDGE__DATABASE__URL": url,
            "MSGR_BRIDGE__API__PORT": str(port),
            "MSGR_BRIDGE__PLUGINS__ALLOW": "irc",
            "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
        }
        migrate = [sys.executable, "-m", "msgr_bridge.cli", "migrate"]
        await asyncio.to_thread(subprocess.run, migrate, env=env, check=True, cwd=tmp, capture_output=True)
        async with Database(url) as db:
            account = Account(id="acc-everyday", network="irc", remote_user_id=f"{irc.host}/{BRIDGE_NICK}")
            await AccountRepo(db).create(account, settings={
                "host": irc.host, "port": irc.port, "tls": False, "nick": BRIDGE_NICK, "channels": [CHANNEL],
                "flood_rate": 1000, "flood_burst": 1000,
            })  # fmt: skip
            token = (await TokenStore(db).create(tenant="default", name="bench", scopes=["admin:*"])).token
        log = (Path(tmp) / "bridge.log").open("wb")
        bridge = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
            [sys.executable, "-m", "msgr_bridge.cli", "run"],
            env=env,
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        spy = None
        if args.profile:  # py-spy samples the bridge for the whole run (collapsed stacks, for flame graphs)
            spy = subprocess.Popen(  # noqa: ASYNC220 - a sampler beside the bridge
                ["py-spy", "record", "--pid", str(bridge.pid), "--rate", str(args.profile_rate),
                 "--format", "raw",
                 "--output", args.profile, "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            results = await measure(args, bridge.pid, f"http://127.0.0.1:{port}", token, irc)
        finally:
            if spy is not None:
                spy.send_signal(2)
                spy.wait(30)
            bridge.terminate()
            bridge.wait(30)
            log.close()
    return results


async def measure(args: argparse.Namespace, pid: int, base: str, token: str, irc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {token}"}
    conn = aiohttp.TCPConnector(limit=1)  # one keep-alive connection for the sends
    # The stream has a session of its own: on the sends' one connection it would hold it for good.
    async with aiohttp.ClientSession(connector=conn) as http, aiohttp.ClientSession() as ws_http:
        for _ in range(600):  # the API, then the account connected and in the channel
            try:
                async with http.get(f"{base}/v1/accounts/acc-everyday", headers=headers) as r:
                    if r.status == 200 and (await r.json())["state"] == "connected":
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        peer = Peer(irc.host, irc.port)
        await peer.connect()
        stream, ready = Stream(), asyncio.Event()
        ws_url = base.replace("http", "ws") + "/v1/events"
        stream_task = asyncio.create_task(stream.run(ws_http, ws_url, token, ready))
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(2)  # let the joins and the first sync settle

        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(args.idle)
        out["idle_cpu_pct"] = round((cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100, 3)
        out["idle_rss_mb"] = round(rss_mb(pid), 1)

        conv = f"{base}/v1/accounts/acc-everyday/conversations/{irc.host}%2F%23everyday/messages"
        for rate in args.rates:
            n = max(5, int(rate * args.seconds))

            async def say(i: int, rate: float = rate) -> tuple[str, float]:
                text = f"in {rate:g} {i} {time.time_ns()}"
                at = time.perf_counter()
                peer.send(f"PRIVMSG {CHANNEL} :{text}")
                await peer.writer.drain()
                return text, at

            if "in" in args.directions:
                cpu0, loop0 = cpu_seconds(pid), main_thread_seconds(pid)
                started = await paced(rate, n, say)
                await wait_all(stream.arrived, stream.changed, list(started), 30)
                out[f"in_{rate:g}"] = figures("inbound", started, stream.arrived, cpu_seconds(pid) - cpu0)
                loop_ms = (main_thread_seconds(pid) - loop0) * 1000 / n
                out[f"in_{rate:g}"]["loop_cpu_ms_per_msg"] = round(loop_ms, 2)

            async def send(i: int, rate: float = rate) -> tuple[str, float]:
                text = f"out {rate:g} {i} {time.time_ns()}"
                at = time.perf_counter()
                async with http.post(conv, json={"text": text}, headers=headers) as r:
                    assert r.status == 202, await r.text()
                return text, at

            if "out" in args.directions:
                cpu0, loop0 = cpu_seconds(pid), main_thread_seconds(pid)
                started = await paced(rate, n, send)
                await wait_all(peer.arrived, peer.changed, list(started), 60)
                out[f"out_{rate:g}"] = figures("outbound", started, peer.arrived, cpu_seconds(pid) - cpu0)
                loop_ms = (main_thread_seconds(pid) - loop0) * 1000 / n
                out[f"out_{rate:g}"]["loop_cpu_ms_per_msg"] = round(loop_ms, 2)

        texts = [f"burst {i} {time.time_ns()}" for i in range(args.burst)]
        cpu0, loop0 = cpu_seconds(pid), main_thread_seconds(pid)
        t0 = time.perf_counter()
        for i in range(0, len(texts), 50):
            peer.send(*(f"PRIVMSG {CHANNEL} :{t}" for t in texts[i : i + 50]))
            await peer.writer.drain()
        await wait_all(stream.arrived, stream.changed, texts, 120)
        got = sum(t in stream.arrived for t in texts)
        elapsed = max(stream.arrived.get(t, t0) for t in texts) - t0
        out["burst"] = {
            "messages": len(texts),
            "stored": got,
            "msg_per_s": round(got / elapsed) if elapsed else 0,
            "cpu_us_per_msg": round((cpu_seconds(pid) - cpu0) * 1e6 / max(1, got)),
            "loop_cpu_us_per_msg": round((main_thread_seconds(pid) - loop0) * 1e6 / max(1, got)),
        }
        out["rss_after_burst_mb"] = round(rss_mb(pid), 1)
        await asyncio.sleep(args.settle)
        out["rss_settled_mb"] = round(rss_mb(pid), 1)
        stream_task.cancel()
    return out


def report(out: dict[str, Any]) -> None:
    print(f"idle: {out['idle_rss_mb']} MB RSS, {out['idle_cpu_pct']} % of a core")
    print(f"{'run':<10}{'msgs':>6}{'lost':>6}{'cpu ms/msg':>12}{'of it loop':>12}{'p50 ms':>9}{'p99 ms':>9}")
    for key, row in out.items():
        if isinstance(row, dict) and "cpu_ms_per_msg" in row:
            print(f"{key:<10}{row['messages']:>6}{row['lost']:>6}{row['cpu_ms_per_msg']:>12}"
                  f"{row['loop_cpu_ms_per_msg']:>12}"
                  f"{row['p50_ms']:>9}{row['p99_ms']:>9}")  # fmt: skip
    print(
        f"burst: {out['burst']}; RSS after {out['rss_after_burst_mb']} MB, settled {out['rss_settled_mb']} MB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", type=lambda s: [float(x) for x in s.split(",")], default=[1.0, 10.0, 100.0]
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of each paced run")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle measurement")
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--directions", default="in,out", help="paced runs to make: in, out or both")
    parser.add_argument("--profile", help="write py-spy's collapsed stacks of the bridge here (needs py-spy)")
    result = asyncio.run(main(parser.parse_args()))
    report(result)
    print(json.dumps(result))
