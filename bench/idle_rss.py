"""Idle memory: ``msgr-bridge run`` with every installed plugin allowed and no account (issue 19's "idle
RSS, all shipped connectors, no accounts"), on a migrated SQLite database.

It starts the bridge, waits for ``/health``, lets it settle, and reads the process's VmRSS (and its
anonymous and file-backed parts) from /proc, then stops it. Linux only.

Run: ``.venv/bin/python bench/idle_rss.py [--settle 5]``. Prints one JSON object:
``{"rss_mb", "rss_anon_mb", "rss_file_mb", "settle_s"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from msgr_bridge.testing.processes import free_port


def status_mb(pid: int) -> dict[str, float]:
    wanted = {"VmRSS": "rss_mb", "RssAnon": "rss_anon_mb", "RssFile": "rss_file_mb"}
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            out[wanted[key]] = round(int(value.split()[0]) / 1024, 1)
    return out


def main(settle_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="msgr-idle-rss-") as tmp:
        port = free_port()
        env = {
            **os.environ,
            "MSGR_BRIDGE__BRIDGE__DATA_DIR": f"{tmp}/data",
            "MSGR_BRIDGE__API__PORT": str(port),
            "MSGR_BRIDGE__PLUGINS__ALLOW": '["*"]',
            "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
        }
        cli = [sys.executable, "-m", "msgr_bridge.cli"]
        subprocess.run([*cli, "migrate"], env=env, cwd=tmp, check=True, capture_output=True)
        with open(f"{tmp}/bridge.log", "wb") as log:
            bridge = subprocess.Popen([*cli, "run"], env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline or bridge.poll() is not None:
                            raise RuntimeError(Path(f"{tmp}/bridge.log").read_text()[-2000:]) from None
                        time.sleep(0.1)
                time.sleep(settle_s)
                return {**status_mb(bridge.pid), "settle_s": settle_s}
            finally:
                bridge.terminate()
                bridge.wait(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after /health answers")
    print(json.dumps(main(parser.parse_args().settle)))
