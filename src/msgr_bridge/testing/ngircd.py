"""A real ngIRCd on loopback for tests: random ports, a temp dir (``/tmp/msgr-peer-ngircd-*``).

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
- Penalties are off (``MaxPenaltyTime = 0``). ngIRCd suspends every client for a second right after
  registration (``Login_User_PostAuth``) and for each burst over three commands; its loop then notices the
  end of the suspension only on its next one-second tick, so the first command after login (a JOIN) waited
  1-2 s. That was the whole of the IRC connector's slow ``connect()`` in tests. Real servers do throttle
  like this: clients must tolerate it (the connector does: it just waits for the reply), tests need not.
- ``password`` sets the server-wide connection password (``PASS``): the only credential ngircd itself checks,
  so it is how a test sees a real server refuse a login.
- ``tls=True`` adds a TLS listener with a throwaway self-signed certificate (made with ``openssl``).
- Start, stop, restart and log tails are ``processes.RestartableServer``'s.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .processes import ManagedProcess, RestartableServer, ServerStartError, free_port, peer_dir, port_open

__all__ = ["NgircdServer", "NgircdUnavailable", "free_port", "running_ngircd", "start_ngircd"]


class NgircdUnavailable(ServerStartError):
    """ngircd (or openssl, for TLS) is not installed, or the server did not come up.

    A ``ServerStartError``, hence a ``RuntimeError`` as it always was."""


@dataclass
class NgircdServer(RestartableServer):
    """One ngircd process and its temp dir. ``start``/``stop``/``restart`` keep ports and config."""

    directory: Path
    port: int
    tls_port: int | None = None
    password: str | None = None
    host: str = "127.0.0.1"
    server_name: str = "irc.test"
    ping_timeout: int = 300
    """Seconds of client silence before ngircd sends PING; a short one tests that clients answer."""
    penalties: bool = False
    """True keeps ngIRCd's flood penalties (off by default, see above): a client is suspended for a second
    after registration, as on real servers, so a QUIT sent then waits in the server's buffer."""
    process: ManagedProcess | None = field(default=None, repr=False)

    process_name: ClassVar[str] = "ngircd"
    log_names: ClassVar[tuple[str, ...]] = ("ngircd.log",)
    run_as: ClassVar[tuple[str, str] | None] = ("nobody", "nogroup")
    """ngircd would drop root privileges itself, which clears the death signal: start it as nobody."""
    start_timeout: ClassVar[float] = 10.0
    stop_timeout: ClassVar[float] = 5.0
    tail_lines: ClassVar[int] = 20
    start_error: ClassVar[type[ServerStartError]] = NgircdUnavailable

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
            *([] if self.penalties else [" MaxPenaltyTime = 0"]),
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

    def _argv(self) -> list[str]:
        binary = shutil.which("ngircd") or "/usr/sbin/ngircd"
        if not Path(binary).exists():
            raise NgircdUnavailable("ngircd is not installed (apt-get install ngircd)")
        return [binary, "-n", "-f", str(self.config_path)]

    def _ready(self) -> bool:
        ports = [self.port] + ([self.tls_port] if self.tls_port is not None else [])
        return all(port_open(self.host, p, timeout=0.2) for p in ports)


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


def start_ngircd(
    *, password: str | None = None, tls: bool = False, ping_timeout: int = 300, penalties: bool = False
) -> NgircdServer:
    """Create a temp dir and config, start ngircd, and return it running. Call ``cleanup()`` when done."""
    directory = peer_dir("ngircd")
    directory.chmod(0o755)  # ngircd runs as nobody and must read its config
    server = NgircdServer(
        directory=directory,
        port=free_port(),
        tls_port=free_port() if tls else None,
        password=password,
        ping_timeout=ping_timeout,
        penalties=penalties,
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
    *, password: str | None = None, tls: bool = False, ping_timeout: int = 300, penalties: bool = False
) -> Iterator[NgircdServer]:
    """``start_ngircd`` as a context manager that stops the server and removes its dir on exit."""
    server = start_ngircd(password=password, tls=tls, ping_timeout=ping_timeout, penalties=penalties)
    try:
        yield server
    finally:
        server.cleanup()
