"""A private PostgreSQL cluster a test can stop and start again (database outage tests).

``servers.postgres_admin_url()`` shares one server between tests; a test that takes the database away needs
its own::

    from msgr_bridge.testing.postgres import running_postgres

    with running_postgres() as pg:
        pg.url                      # postgresql://postgres@127.0.0.1:<port>/postgres
        pg.stop(); pg.start()       # an outage: same port, same data

The cluster is made with ``initdb`` (trust auth, no fsync) in a ``/tmp/msgr-peer-pg-*`` directory on the
first start and stopped with SIGINT (PostgreSQL's "fast" shutdown: clients are disconnected at once).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .processes import ManagedProcess, RestartableServer, free_port, peer_dir, port_open
from .servers import PG_GLOBS, ensure_binary

__all__ = ["PostgresServer", "running_postgres"]


def _binary(name: str) -> str:
    return ensure_binary(name, "postgresql", extra_globs=[g.format(name=name) for g in PG_GLOBS])


@dataclass
class PostgresServer(RestartableServer):
    directory: Path
    port: int
    process: ManagedProcess | None = field(default=None, repr=False)

    process_name: ClassVar[str] = "postgres"
    log_names: ClassVar[tuple[str, ...]] = ("initdb.log", "server.log")
    run_as: ClassVar[tuple[str, str] | None] = ("postgres", "postgres")
    start_timeout: ClassVar[float] = 120.0
    stop_timeout: ClassVar[float] = 20.0
    stop_signal: ClassVar[signal.Signals] = signal.SIGINT

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def _argv(self) -> list[str]:
        initdb, postgres = _binary("initdb"), _binary("postgres")
        settings = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        script = (
            f"[ -f {self.data}/PG_VERSION ] || {initdb} -D {self.data} -U postgres -A trust --no-sync "
            f"-E UTF8 --locale=C.UTF-8 >{self.directory}/initdb.log 2>&1; exec {postgres} -D {self.data} "
            f"{settings}"
        )
        return ["sh", "-c", script]

    def _ready(self) -> bool:
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready" and port_open("127.0.0.1", self.port)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started private cluster, removed when the block ends."""
    server = PostgresServer(peer_dir("pg", owner="postgres"), free_port())
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
