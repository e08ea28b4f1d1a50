"""The container image: built for real with podman, its entrypoint run, and /health reached from outside.

No Docker engine runs on these machines; Debian's podman and buildah build the image from docker/Dockerfile
and run a command in it (``buildah run``: the image's filesystem, the host's network). The base is a local
Debian trixie image made with debootstrap once and kept in podman's store, passed as ``BASE`` as a user
would pass ``python:3.13-slim``. The compose file is checked, not run: nothing here can pull its images.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from msgr_bridge.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "localhost/msgr-bridge-base:trixie"
IMAGE = "localhost/msgr-bridge:test"
TOOLS = ("podman", "buildah", "debootstrap")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def _with_defaults(value: str) -> str:
    """Compose's ``${NAME:-default}`` with the default (what an unset variable gives)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_the_compose_file_describes_a_bridge_with_its_production_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compose = _compose()
    services = compose["services"]
    assert {"bridge", "postgres", "redis", "openbao", "openbao-init"} <= set(services)
    bridge = services["bridge"]
    build = bridge["build"]
    assert (
        ROOT / "docker" / build["context"] / build["dockerfile"]
    ).resolve() == ROOT / "docker" / "Dockerfile"
    for needed in bridge["depends_on"]:
        assert needed in services
    assert any(v.endswith(":/data") for v in bridge["volumes"])
    for volume in (v.split(":")[0] for s in services.values() for v in s.get("volumes", [])):
        assert volume in compose["volumes"]
    # the bridge's environment is a valid configuration that really selects PostgreSQL, Redis and Vault
    for key in list(os.environ):
        if key.startswith("MSGR_BRIDGE__"):
            monkeypatch.delenv(key)
    for key, value in bridge["environment"].items():
        monkeypatch.setenv(key, _with_defaults(str(value)))
    settings = load_settings()
    assert settings.database.url.startswith("postgresql://") and "@postgres:5432/" in settings.database.url
    assert settings.redis.url == "redis://redis:6379/0"
    assert settings.credentials.backend == "vault" and settings.credentials.vault.url == "http://openbao:8200"
    token_ref = settings.credentials.vault.token
    assert token_ref is not None and token_ref.path in bridge["environment"]
    pg = services["postgres"]["environment"]
    assert (
        f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
        in settings.database.url
    )
    bao_token = services["openbao"]["environment"]["BAO_DEV_ROOT_TOKEN_ID"]
    assert _with_defaults(bao_token) == _with_defaults(bridge["environment"]["VAULT_TOKEN"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*cmd: str, timeout: float = 900) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _ensure_base_image(tmp_path: Path) -> None:
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE]).returncode == 0:
        return
    rootfs = tmp_path / "rootfs"
    _run("debootstrap", "--variant=minbase", "--include=python3,python3-venv", "trixie", str(rootfs))
    # The with block closes tar's pipe: left open, its ResourceWarning failed the test on a fresh machine.
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        import_cmd = ["podman", "import", "-", BASE_IMAGE]
        _run_stdin = subprocess.run(import_cmd, stdin=tar.stdout, capture_output=True)
    assert _run_stdin.returncode == 0, _run_stdin.stderr.decode()[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS) or os.geteuid() != 0,
    reason="building the image needs podman, buildah and debootstrap (apt-get install podman buildah "
    "debootstrap) and root",
)
@pytest.mark.timeout(1500)
def test_the_image_builds_migrates_and_answers_health_from_outside(tmp_path: Path) -> None:
    _ensure_base_image(tmp_path)
    # this machine reaches PyPI through a TLS-inspecting proxy whose CA only the host's bundle trusts
    bundle = (
        os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    )
    secret = ["--secret", f"id=ca_bundle,src={bundle}"] if Path(bundle).is_file() else []
    _run(
        "podman", "build", "--isolation", "chroot", "--format", "docker", "--build-arg", f"BASE={BASE_IMAGE}",
        *secret, "-t", IMAGE, "-f", str(ROOT / "docker" / "Dockerfile"), str(ROOT),
    )  # fmt: skip
    [info] = json.loads(_run("podman", "image", "inspect", IMAGE))
    config = info["Config"]
    assert config["User"] == "msgr"  # not root
    assert "/data" in config["Volumes"]
    healthcheck = info.get("Healthcheck") or config.get("Healthcheck")  # podman puts it beside Config
    assert any("/health" in part for part in healthcheck["Test"])
    assert config["Entrypoint"] == ["msgr-bridge-entrypoint"] and config["Cmd"] == ["run"]

    container = _run("buildah", "from", IMAGE).strip()
    port = _free_port()
    log = tmp_path / "bridge.log"
    with log.open("w") as out:
        bridge = subprocess.Popen(
            ["buildah", "run", "--isolation", "chroot", "--env", f"MSGR_BRIDGE__API__PORT={port}",
             container, "--", "/usr/local/bin/msgr-bridge-entrypoint"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        health = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and bridge.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    health = (resp.status, json.loads(resp.read()))
                    break
            except OSError:
                time.sleep(0.5)
        assert health is not None, f"no /health from the container; its output:\n{log.read_text()[-4000:]}"
        status, body = health
        # degraded would mean a plugin failed to load in the image (a missing system library, say)
        assert status == 200 and body["status"] == "ok", (body, log.read_text()[-4000:])
    finally:
        if bridge.poll() is None:
            os.killpg(bridge.pid, signal.SIGTERM)
            try:
                bridge.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(bridge.pid, signal.SIGKILL)
                bridge.wait()
        subprocess.run(["buildah", "rm", container], capture_output=True)
    output = log.read_text()
    # the entrypoint migrated the embedded default in the /data volume before serving
    assert re.search(r"database .*: empty -> \w+", output), output[-3000:]
    assert '"event": "plugin.failed"' not in output, output[-3000:]
