"""Every operation of the HTTP API, fuzzed from the API's own OpenAPI document (schemathesis): whatever a
client sends (valid, invalid, malformed, odd encodings), the bridge answers without a 5xx.

The bridge runs as ``msgr-bridge run`` in a subprocess, on SQLite in a temporary directory, with an admin
token; schemathesis's runner (``schemathesis.cli run``) drives it with a fixed seed, so a run is repeatable
and a failure prints the exact request to replay (``curl``). It found three 500s the hand-written tests had
missed: a multipart body without its boundary, a multipart part with broken headers, a share-link token
with non-ASCII characters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from msgr_bridge.testing.processes import ManagedProcess, free_port

EXAMPLES = 20


@pytest.fixture(scope="module")
def bridge_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, admin token) of a bridge running in a subprocess."""
    tmp = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")},
        "MSGR_BRIDGE__BRIDGE__DATA_DIR": str(tmp / "data"),
        "MSGR_BRIDGE__API__PORT": str(port),
        "MSGR_BRIDGE__LOGGING__LEVEL": "warning",
        "MSGR_BRIDGE__LOGGING__FORMAT": "json",
        # only the in-process test network: a link flow the fuzzer starts must not dial real services
        # (WhatsApp's waits 30 s for its first QR code)
        "MSGR_BRIDGE__PLUGINS__ALLOW": "loopback",
    }
    cli = [sys.executable, "-m", "msgr_bridge.cli"]
    subprocess.run([*cli, "migrate"], env=env, cwd=tmp, check=True, capture_output=True)
    made = subprocess.run(
        [*cli, "tokens", "create", "--name", "fuzz", "--scope", "admin", "--json"],
        env=env,
        cwd=tmp,
        check=True,
        capture_output=True,
        text=True,
    )
    token = json.loads(made.stdout)["token"]
    bridge = ManagedProcess([*cli, "run"], log_path=tmp / "bridge.log", cwd=tmp, env=env, stop_timeout=30)
    base = f"http://127.0.0.1:{port}"
    try:
        bridge.wait_ready(lambda: _ready(base))
        yield base, token
    finally:
        bridge.stop()
        unhandled = [line for line in bridge.log_path.read_text().splitlines() if "api.unhandled" in line]
        assert unhandled == [], "\n".join(unhandled[:5])


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_no_request_makes_the_api_fail(bridge_api: tuple[str, str], tmp_path: Path) -> None:
    """schemathesis's own runner (its coverage phase sends the edge cases: odd content types, missing and
    malformed parts; its fuzzing phase random valid and invalid data), with a fixed seed."""
    base, token = bridge_api
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            base + "/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "not_a_server_error",
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "1",
            # The event stream never ends (each call would wait for a timeout); it has tests of its own.
            "--exclude-path",
            "/v1/events",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Tested: " in run.stdout  # it did run the operations
