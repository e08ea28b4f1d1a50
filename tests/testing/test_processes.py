"""RestartableServer: start, restart on the same port, stop, cleanup and failure reports, with a real process.

The server is Python's own ``http.server`` (no extra binary), so these run wherever the tests do.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from msgr_bridge.testing.processes import (
    ManagedProcess,
    RestartableServer,
    ServerError,
    ServerStartError,
    free_port,
    free_port_pair,
    peer_dir,
    port_open,
)


@dataclass
class HttpServer(RestartableServer):
    directory: Path
    port: int
    fail_with: str | None = None
    process: ManagedProcess | None = field(default=None, repr=False)

    process_name: ClassVar[str] = "http.server"
    log_names: ClassVar[tuple[str, ...]] = ("own.log", "stdout.log")
    start_timeout: ClassVar[float] = 30.0

    def _argv(self) -> list[str]:
        if self.fail_with is not None:
            (self.directory / "own.log").write_text(f"{self.fail_with}\n")
            return [sys.executable, "-c", "raise SystemExit(3)"]
        return [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1"]

    def _ready(self) -> bool:
        return port_open("127.0.0.1", self.port, timeout=0.2)


def running(server: HttpServer) -> bool:
    """``server.running``, read fresh (a plain ``assert server.running`` narrows it for mypy for good)."""
    return server.running


def pid_of(server: HttpServer) -> int:
    assert server.process is not None
    return server.process.pid


def test_restart_keeps_port_and_directory_and_cleanup_removes_them() -> None:
    server = HttpServer(directory=peer_dir("test-http"), port=free_port())
    try:
        server.start()
        assert server.running and port_open("127.0.0.1", server.port)
        first_pid = pid_of(server)
        (server.directory / "kept.txt").write_text("data")
        server.restart()
        assert server.running and port_open("127.0.0.1", server.port)
        assert pid_of(server) != first_pid
        server.stop()
        assert not running(server) and server.process is None
        assert not port_open("127.0.0.1", server.port)
        assert (server.directory / "kept.txt").read_text() == "data"
        server.start()  # stopped servers start again on the same port
        assert port_open("127.0.0.1", server.port)
    finally:
        server.cleanup()
    assert not running(server) and not server.directory.exists()


def test_a_server_that_exits_reports_its_own_log_and_is_a_runtime_error() -> None:
    server = HttpServer(directory=peer_dir("test-http"), port=free_port(), fail_with="bad listen address")
    try:
        with pytest.raises(ServerStartError) as info:
            server.start()
        assert isinstance(info.value, RuntimeError) and isinstance(info.value, ServerError)
        assert "code 3" in info.value.message
        assert "bad listen address" in (info.value.hint or "")
        assert server.process is None and not server.running
        assert "bad listen address" in server.log_tail()
    finally:
        server.cleanup()


def test_free_port_pair_gives_two_bindable_ports_never_handed_out_again() -> None:
    port = free_port_pair()
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", port))
        b.bind(("127.0.0.1", port + 1))
    later = {free_port() for _ in range(50)}
    assert port not in later and port + 1 not in later
