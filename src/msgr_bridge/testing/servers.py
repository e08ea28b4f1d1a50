"""Real PostgreSQL and Redis servers for tests, and the helpers every test-server module shares.

``postgres_admin_url()`` and ``redis_url()`` are context managers that yield a URL: the server named by
``MSGR_TEST_PG_URL`` / ``MSGR_TEST_REDIS_URL`` when set, else the one on 127.0.0.1:5432 / :6379 when it
answers, else a throwaway server started here (installed with apt-get when its binaries are missing) and
stopped when the block ends. Setting either variable to ``start`` always starts a throwaway server.

Throwaway servers run in the foreground under ``setpriv --pdeathsig``, so a SIGKILLed test run takes them
down too; each lives in a ``/tmp/msgr-peer-*`` directory (not under pytest's tmp dir: PostgreSQL runs as the
``postgres`` user, which cannot enter pytest's 0700 base dir). Directories left behind by a killed run are
removed by the next one (each records the pid of the process that made it). The process helpers
(``ManagedProcess``, ``RestartableServer``, ``free_port``, ``peer_dir``, ...) are defined in
``testing/processes.py`` and re-exported here.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from urllib.parse import urlsplit

from .processes import (
    PEER_PREFIX,
    ManagedProcess,
    RestartableServer,
    ServerError,
    ServerStartError,
    free_port,
    free_port_pair,
    peer_dir,
    port_open,
    remove_stale_peer_dirs,
    tail_files,
)

__all__ = [
    "PEER_PREFIX",
    "PG_GLOBS",
    "ManagedProcess",
    "RestartableServer",
    "ServerError",
    "ServerStartError",
    "ensure_binary",
    "find_binary",
    "free_port",
    "free_port_pair",
    "peer_dir",
    "port_open",
    "postgres_admin_url",
    "postgres_answers",
    "redis_ping",
    "redis_url",
    "remove_stale_peer_dirs",
    "split_host_port",
    "start_postgres",
    "start_redis",
    "tail_files",
    "unique_name",
]

# --- probes -----------------------------------------------------------------------------------------------


def redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """A real protocol round trip: ``PING`` answered by ``+PONG``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def postgres_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """A PostgreSQL SSLRequest round trip: a PostgreSQL server answers with one byte, ``S`` or ``N``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
            return s.recv(1) in (b"S", b"N")
    except OSError:
        return False


# --- binaries ---------------------------------------------------------------------------------------------


def find_binary(name: str, *, extra_globs: Sequence[str] = ()) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_globs:
        matches = sorted(glob.glob(pattern), reverse=True)
        if matches:
            return matches[0]
    return None


def ensure_binary(name: str, apt_package: str, *, extra_globs: Sequence[str] = ()) -> str:
    """The path of ``name``; installs ``apt_package`` with apt-get first when it is missing."""
    found = find_binary(name, extra_globs=extra_globs)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServerError(
            f"{name} is not installed",
            hint=f"install the Debian package {apt_package} (apt-get install {apt_package})",
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "install", "-y", "--no-install-recommends", apt_package],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", apt_package],
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode == 0 and argv[1] == "install":
            break
    found = find_binary(name, extra_globs=extra_globs)
    if not found:
        raise ServerError(f"apt-get could not install {apt_package} (for {name})", hint=done.stderr[-500:])
    return found


# --- PostgreSQL -------------------------------------------------------------------------------------------

PG_GLOBS = ("/usr/lib/postgresql/*/bin/{name}",)


def _pg_binary(name: str) -> str:
    return ensure_binary(name, "postgresql", extra_globs=[g.format(name=name) for g in PG_GLOBS])


@contextlib.contextmanager
def start_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (trust auth, no fsync); yields its admin URL."""
    initdb, postgres = _pg_binary("initdb"), _pg_binary("postgres")
    root = peer_dir("pg", owner="postgres")
    port = free_port()
    data = root / "data"
    settings = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    script = (
        f"{initdb} -D {data} -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >{root}/initdb.log 2>&1 "
        f"&& exec {postgres} -D {data} {settings}"
    )
    proc = ManagedProcess(
        ["sh", "-c", script],
        log_path=root / "server.log",
        user="postgres",
        stop_signal=signal.SIGINT,
        name="postgres",
    )

    def ready() -> bool:
        try:
            lines = (data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    try:
        proc.wait_ready(ready, timeout=120)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _found_or_started(
    env: str,
    local_answers: Callable[[], bool],
    local_url: str,
    start: Callable[[], contextlib.AbstractContextManager[str]],
) -> Iterator[str]:
    """The server named by ``env``; else the local one when it answers; else a throwaway one.
    ``env=start`` forces the throwaway server."""
    configured = os.environ.get(env)
    if configured and configured != "start":
        yield configured
    elif not configured and local_answers():
        yield local_url
    else:
        with start() as url:
            yield url


@contextlib.contextmanager
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL URL with the right to create databases (see the module docstring for the order)."""
    with _found_or_started(
        "MSGR_TEST_PG_URL",
        lambda: postgres_answers("127.0.0.1", 5432),
        "postgresql://postgres@127.0.0.1:5432/postgres",
        start_postgres,
    ) as url:
        yield url


# --- Redis ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def start_redis() -> Iterator[str]:
    """A throwaway Redis without persistence; yields its URL."""
    binary = ensure_binary("redis-server", "redis-server")
    root = peer_dir("redis")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(root), "--daemonize", "no"]
    proc = ManagedProcess(argv, log_path=root / "redis.log", name="redis-server")
    try:
        proc.wait_ready(lambda: redis_ping("127.0.0.1", port), timeout=30)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    with _found_or_started(
        "MSGR_TEST_REDIS_URL", lambda: redis_ping("127.0.0.1", 6379), "redis://127.0.0.1:6379/0", start_redis
    ) as url:
        yield url


def unique_name(prefix: str) -> str:
    """A database or key-prefix name unique to this process and call."""
    return f"{prefix}_{os.getpid()}_{next(_names)}_{os.urandom(3).hex()}"


_names = itertools.count()


def split_host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port
