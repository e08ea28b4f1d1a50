"""The process side of throwaway test servers: ports, private directories, and a process that dies with us.

Every real server the tests start (PostgreSQL, Redis, Prosody, ngIRCd, Synapse, OpenBao, ...) runs as a
``ManagedProcess``: in the foreground under ``setpriv --pdeathsig``, so a SIGKILLed test run takes it down
too, with its output in a file whose tail explains a failed start. Servers whose port and data must
survive a restart (reconnect and catch-up tests) are ``RestartableServer`` dataclasses: start, stop,
restart, cleanup and log tails live here once. Each server lives in a ``/tmp/msgr-peer-*`` directory
(``peer_dir``), which records the pid of the test process that made it, so the next run removes the
directories a killed run left behind.

``msgr_bridge.testing.servers`` re-exports all of this; both import paths stay valid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError

PEER_PREFIX = "msgr-peer-"
_handed_out: set[int] = set()


class ServerError(ConfigError):
    """A test server could not be found, installed or started."""

    code = "test_server_error"


# --- ports ------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1, never the same one twice in this process."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise ServerError("no free TCP port found on 127.0.0.1")


def free_port_pair() -> int:
    """A free port P on 127.0.0.1 with P+1 free too (for servers that also bind the next port), never
    handed out before in this process."""
    for _ in range(200):
        port = free_port()
        if port + 1 >= 65536 or port + 1 in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        _handed_out.add(port + 1)
        return port
    raise ServerError("no two adjacent free TCP ports found on 127.0.0.1")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- processes --------------------------------------------------------------------------------------------


def peer_dir(kind: str, *, owner: str | None = None) -> Path:
    """A fresh ``/tmp/msgr-peer-<kind>-*`` directory; stale ones from dead runs are removed first."""
    remove_stale_peer_dirs()
    path = Path(tempfile.mkdtemp(prefix=f"{PEER_PREFIX}{kind}-", dir="/tmp"))
    (path / "owner.pid").write_text(str(os.getpid()))
    if owner is not None and os.geteuid() == 0:
        shutil.chown(path, owner, owner)
    return path


def remove_stale_peer_dirs() -> None:
    for candidate in Path("/tmp").glob(f"{PEER_PREFIX}*"):
        try:
            pid = int((candidate / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not _alive(pid):
            shutil.rmtree(candidate, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ServerStartError(ServerError, RuntimeError):
    """A test server exited, or did not answer in time, while starting; the hint holds its log tail.

    Also a ``RuntimeError``: that is what the Prosody, ngIRCd and OpenBao helpers raised before they shared
    ``ManagedProcess``, so code catching it keeps working.
    """


def tail_files(paths: Iterable[Path], lines: int = 20) -> str:
    """The last ``lines`` lines of each readable file in ``paths``, in order (missing ones are skipped)."""
    out: list[str] = []
    for path in paths:
        with contextlib.suppress(OSError):
            out += path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(out)


class ManagedProcess:
    """A foreground server process that dies with us (``setpriv --pdeathsig``), with its output in a file.

    ``wait_ready(check)`` polls until ``check()`` is true, failing fast (with the log tail) when the process
    exits; ``stop()`` sends ``stop_signal``, waits ``stop_timeout``, then kills. ``server_logs`` are log files
    the server writes itself: ``tail()`` shows them before its captured output, because that is where most
    servers say why they would not start.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        server_logs: Sequence[Path] = (),
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        group: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout: float = 10.0,
        name: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.server_logs = list(server_logs)
        self.name = name or Path(argv[0]).name
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        wrapped = self.argv
        setpriv = shutil.which("setpriv")
        if setpriv:
            wrapped = [setpriv, f"--pdeathsig={stop_signal.name.removeprefix('SIG')}", "--", *self.argv]
        kwargs: dict[str, Any] = {}
        if user is not None and os.geteuid() == 0:
            kwargs.update(user=user, group=group or user, extra_groups=[])
        with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                wrapped,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                start_new_session=True,
                **kwargs,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def poll(self) -> int | None:
        return self.process.poll()

    def send_signal(self, sig: int) -> None:
        """Signal the server, e.g. ``SIGSTOP`` so it hangs with its sockets open (a no-op once it exited)."""
        self.process.send_signal(sig)

    def tail(self, lines: int = 20) -> str:
        return tail_files([*self.server_logs, self.log_path], lines)

    def wait_ready(
        self,
        check: Callable[[], bool],
        timeout: float = 60.0,
        *,
        error: type[ServerStartError] = ServerStartError,
    ) -> None:
        """Poll ``check`` until it is true; raise ``error`` (with the log tail) if the process exits first or
        ``timeout`` passes (the process is stopped then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise error(
                    f"{self.name} exited with code {self.process.returncode} before it was ready",
                    hint=f"its log ({self.log_path}) ends with:\n{self.tail()}",
                )
            if check():
                return
            time.sleep(0.02)
        self.stop()
        raise error(f"{self.name} was not ready after {timeout:.0f}s", hint=self.tail())

    def stop(self, timeout: float | None = None) -> None:
        """Send ``stop_signal`` and wait (``stop_timeout`` by default), then kill. Idempotent."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RestartableServer:
    """The process side of a test server whose port, config and data outlive its process.

    ``start`` runs it and waits until it answers; ``stop`` ends the process and keeps ``directory``;
    ``restart`` brings it back on the same port with the same data (reconnect and catch-up tests);
    ``cleanup`` stops it and deletes ``directory``. A subclass (a dataclass with ``directory`` and
    ``process`` fields) gives the command (``_argv``), the readiness check (``_ready``) and the class
    settings below; its process runs in ``directory``, with its output in the last of ``log_names``.
    """

    directory: Path
    process: ManagedProcess | None

    process_name: ClassVar[str] = "server"
    log_names: ClassVar[tuple[str, ...]] = ("stdout.log",)
    """Files in ``directory`` shown by ``log_tail``: the server's own logs, then its captured output."""
    run_as: ClassVar[tuple[str, str] | None] = None
    """(user, group) to run as when we are root, for servers that refuse root or drop privileges."""
    start_timeout: ClassVar[float] = 20.0
    stop_timeout: ClassVar[float] = 10.0
    tail_lines: ClassVar[int] = 30
    start_error: ClassVar[type[ServerStartError]] = ServerStartError
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self, timeout: float | None = None) -> None:
        """Start the process (unless it runs) and wait until it answers (``start_timeout`` by default).

        Call it from the main thread (not ``asyncio.to_thread``): the server gets SIGTERM when the thread
        that spawned it ends (``setpriv --pdeathsig``). On failure the process is stopped and
        ``start_error`` is raised with the log tail.
        """
        if self.running:
            return
        user, group = self.run_as or (None, None)
        logs = [self.directory / name for name in self.log_names]
        self.process = ManagedProcess(
            self._argv(),
            log_path=logs[-1],
            server_logs=logs[:-1],
            cwd=self.directory,
            user=user,
            group=group,
            stop_timeout=self.stop_timeout,
            stop_signal=self.stop_signal,
            name=self.process_name,
        )
        try:
            wait = self.start_timeout if timeout is None else timeout
            self.process.wait_ready(self._ready, wait, error=self.start_error)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float | None = None) -> None:
        """Stop the process (its stop signal, then SIGKILL); keep the directory for a restart."""
        proc, self.process = self.process, None
        if proc is not None:
            proc.stop(timeout)

    def restart(self) -> None:
        """Stop and start again on the same port and data dir."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the process and delete the directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int | None = None) -> str:
        """The end of each of ``log_names`` (``tail_lines`` lines each by default), running or not."""
        paths = [self.directory / name for name in self.log_names]
        return tail_files(paths, self.tail_lines if lines is None else lines)
