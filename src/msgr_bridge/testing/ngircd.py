"""A real ngIRCd on loopback for tests: random ports, a temp dir, stopped by pid.

Used by the IRC connector's tests and by the contract suite::

    from msgr_bridge.testing.ngircd import running_ngircd

    with running_ngircd(password="s3cret", tls=True) as server:
        server.host, server.port, server.tls_port   # plain and TLS listeners on 127.0.0.1
        server.restart()                            # same ports, same config: for reconnect tests

Details that matter (see ``research/peers.md`` section 2.5):

- ngircd runs in the foreground (``-n``) under ``setpriv --pdeathsig=TERM``, so a killed test run leaves no
  server behind. As root it is started directly as ``nobody``: ngircd would drop privileges itself, which
  clears the death signal.
- PAM, ident and DNS lookups are off, and there is no per-IP connection limit (tests open many clients).
- ``password`` sets the server-wide connection password (``PASS``): the only credential ngircd itself checks,
  so it is how a test sees a real server refuse a login.
- ``tls=True`` adds a TLS listener with a throwaway self-signed certificate (made with ``openssl``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NgircdServer", "NgircdUnavailable", "free_port", "running_ngircd", "start_ngircd"]

_handed_out: set[int] = set()


class NgircdUnavailable(RuntimeError):
    """ngircd (or openssl, for TLS) is not installed, or the server did not come up."""


def free_port() -> int:
    """A loopback TCP port that is free now and was not handed out before in this process."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class NgircdServer:
    """One ngircd process and its temp dir. ``start``/``stop``/``restart`` keep ports and config."""

    directory: Path
    port: int
    tls_port: int | None = None
    password: str | None = None
    host: str = "127.0.0.1"
    server_name: str = "irc.test"
    ping_timeout: int = 300
    """Seconds of client silence before ngircd sends PING; a short one tests that clients answer."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.directory / "ngircd.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "ngircd.log"

    def write_config(self) -> None:
        lines = [
            "[Global]",
            f" Name = {self.server_name}",
            " Info = msgr-bridge test ircd",
            " AdminInfo1 = test",
            " AdminInfo2 = test",
            " AdminEMail = test@example.invalid",
            f" Listen = {self.host}",
            f" Ports = {self.port}",
            " MotdPhrase = msgr-bridge test server",
        ]
        if self.password:
            lines.append(f" Password = {self.password}")
        lines += [
            "[Limits]",
            " MaxConnections = 0",
            " MaxConnectionsIP = 0",
            " MaxJoins = 0",
            " MaxNickLength = 30",
            f" PingTimeout = {self.ping_timeout}",
            f" PongTimeout = {max(2, min(60, self.ping_timeout))}",
            "[Options]",
            " PAM = no",
            " Ident = no",
            " DNS = no",
            "[Operator]",
            " Name = admin",
            " Password = adminpw",
        ]
        if self.tls_port is not None:
            lines += [
                "[SSL]",
                f" CertFile = {self.directory / 'cert.pem'}",
                f" KeyFile = {self.directory / 'key.pem'}",
                f" Ports = {self.tls_port}",
            ]
        self.config_path.write_text("\n".join(lines) + "\n")
        self.config_path.chmod(0o644)

    def start(self, timeout: float = 10.0) -> None:
        """Start the process and wait until every listener accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        binary = shutil.which("ngircd") or "/usr/sbin/ngircd"
        if not Path(binary).exists():
            raise NgircdUnavailable("ngircd is not installed (apt-get install ngircd)")
        cmd = ["setpriv", "--pdeathsig=TERM", "--", binary, "-n", "-f", str(self.config_path)]
        as_nobody = os.geteuid() == 0
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user="nobody" if as_nobody else None,
                group="nogroup" if as_nobody else None,
                extra_groups=[] if as_nobody else None,
            )
        finally:
            log.close()
        ports = [self.port] + ([self.tls_port] if self.tls_port is not None else [])
        deadline = time.monotonic() + timeout
        while not all(_accepts(self.host, p) for p in ports):
            if self.process.poll() is not None:
                raise NgircdUnavailable(f"ngircd exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise NgircdUnavailable(f"ngircd did not listen within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s); the temp dir stays for ``start``."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _make_certificate(directory: Path) -> None:
    if shutil.which("openssl") is None:
        raise NgircdUnavailable("openssl is needed for a TLS test server (apt-get install openssl)")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    for name in ("key.pem", "cert.pem"):
        (directory / name).chmod(0o644)


def start_ngircd(*, password: str | None = None, tls: bool = False, ping_timeout: int = 300) -> NgircdServer:
    """Create a temp dir and config, start ngircd, and return it running. Call ``cleanup()`` when done."""
    directory = Path(tempfile.mkdtemp(prefix="msgr-ngircd-"))
    directory.chmod(0o755)  # ngircd runs as nobody and must read its config
    server = NgircdServer(
        directory=directory,
        port=free_port(),
        tls_port=free_port() if tls else None,
        password=password,
        ping_timeout=ping_timeout,
    )
    try:
        if tls:
            _make_certificate(directory)
        server.write_config()
        server.start()
    except BaseException:
        server.cleanup()
        raise
    return server


@contextlib.contextmanager
def running_ngircd(
    *, password: str | None = None, tls: bool = False, ping_timeout: int = 300
) -> Iterator[NgircdServer]:
    """``start_ngircd`` as a context manager that stops the server and removes its dir on exit."""
    server = start_ngircd(password=password, tls=tls, ping_timeout=ping_timeout)
    try:
        yield server
    finally:
        server.cleanup()
