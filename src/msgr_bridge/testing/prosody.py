"""A throwaway, real Prosody server for tests: random loopback port, its own temp dir, no system files.

Used by the XMPP connector's tests and by the connector contract suite::

    server = start_prosody()            # ready to accept clients (about half a second)
    server.register("alice", "alicepw")
    ...
    server.restart()                    # same port, same data dir (accounts and archives survive)
    server.stop()

The server has one virtual host (``localhost``), a MUC service (``conference.localhost``) that archives
every room (XEP-0313 via ``muc_mam``), MAM for 1:1 messages, stream management (XEP-0198), carbons and
in-band registration. It speaks plaintext by default (fast, loopback only); ``tls=True`` makes a
self-signed certificate and requires STARTTLS, with ``server.ca_file`` for clients to trust.

There is no HTTP listener, so no XEP-0363 upload service. The process runs under
``setpriv --pdeathsig=TERM`` so a killed test run leaves no server behind; its directory
(``/tmp/msgr-peer-prosody-*``) is removed by a later run then. Start, stop, restart and log tails are
``processes.RestartableServer``'s.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..errors import ConfigError
from .processes import ManagedProcess, RestartableServer, free_port, peer_dir, port_open

_CONFIG = """\
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{d}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
component_ports = {{ }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
s2s_ports = {{ }}
modules_enabled = {{
  {tls_module}"roster"; "saslauth"; "disco"; "ping"; "register"; "carbons"; "mam"; "smacks";
  "private"; "vcard_legacy"; "version"; "uptime"; "time";
}}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
storage = "internal"
{ssl}
c2s_require_encryption = {require_tls}
allow_unencrypted_plain_auth = {allow_plain}
allow_registration = true
min_seconds_between_registrations = 0
archive_expires_after = "1d"
default_archive_policy = true
smacks_hibernation_time = 600
VirtualHost "{host}"

Component "{muc_host}" "muc"
  modules_enabled = {{ "muc_mam" }}
  muc_log_by_default = true
  muc_log_all_rooms = true
  restrict_room_creation = false
"""


@dataclass
class ProsodyServer(RestartableServer):
    """A running (or stopped) Prosody process with its config and data in ``directory``."""

    directory: Path
    c2s_port: int
    tls: bool = False
    host: str = "localhost"
    muc_host: str = "conference.localhost"
    process: ManagedProcess | None = field(default=None, repr=False)

    process_name: ClassVar[str] = "prosody"
    log_names: ClassVar[tuple[str, ...]] = ("prosody.log", "stdout.log")

    @property
    def config_path(self) -> Path:
        return self.directory / "prosody.cfg.lua"

    @property
    def ca_file(self) -> str | None:
        """The self-signed certificate clients must trust when ``tls`` is on."""
        return str(self.directory / "certs" / "cert.pem") if self.tls else None

    def jid(self, user: str) -> str:
        return f"{user}@{self.host}"

    def connection_settings(self) -> dict[str, object]:
        """Settings for the XMPP connector (and any slixmpp client) to reach this server."""
        settings: dict[str, object] = {
            "server": "127.0.0.1",
            "port": self.c2s_port,
            "security": "starttls" if self.tls else "plaintext",
        }
        if self.ca_file:
            settings["ca_file"] = self.ca_file
        return settings

    def register(self, user: str, password: str) -> str:
        """Create an account (works whether or not the server runs); returns its JID."""
        subprocess.run(
            ["prosodyctl", "--config", str(self.config_path), "register", user, self.host, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return self.jid(user)

    def _argv(self) -> list[str]:
        return ["prosody", "--config", str(self.config_path), "-F"]

    def _ready(self) -> bool:
        return port_open("127.0.0.1", self.c2s_port, timeout=0.2)


def _make_cert(directory: Path, host: str, muc_host: str) -> None:
    certs = directory / "certs"
    certs.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={host}",
         "-addext", f"subjectAltName=DNS:{host},DNS:{muc_host}",
         "-keyout", str(certs / "key.pem"), "-out", str(certs / "cert.pem")],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip


def start_prosody(*, tls: bool = False, host: str = "localhost") -> ProsodyServer:
    """Write a config into a fresh temp dir, start Prosody, and return it once it accepts clients.

    Raises ``ConfigError`` when the ``prosody`` binary is missing (install the Debian package
    ``prosody``, plus ``lua-unbound`` to silence its DNS warning).
    """
    if shutil.which("prosody") is None or shutil.which("prosodyctl") is None:
        raise ConfigError(
            "prosody is not installed",
            hint="apt-get install prosody lua-unbound (the tests need a real server)",
        )
    directory = peer_dir("prosody")
    (directory / "data").mkdir()
    muc_host = f"conference.{host}"
    ssl = ""
    if tls:
        _make_cert(directory, host, muc_host)
        ssl = f'ssl = {{ certificate = "{directory}/certs/cert.pem"; key = "{directory}/certs/key.pem" }}'
    server = ProsodyServer(directory=directory, c2s_port=free_port(), tls=tls, host=host, muc_host=muc_host)
    server.config_path.write_text(
        _CONFIG.format(
            d=directory,
            port=server.c2s_port,
            host=host,
            muc_host=muc_host,
            tls_module='"tls"; ' if tls else "",
            ssl=ssl,
            require_tls="true" if tls else "false",
            allow_plain="false" if tls else "true",
        )
    )
    try:
        server.start()
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return server


@contextlib.contextmanager
def running_prosody(*, tls: bool = False) -> Iterator[ProsodyServer]:
    """``start_prosody`` as a context manager: the server and its temp dir are gone afterwards."""
    server = start_prosody(tls=tls)
    try:
        yield server
    finally:
        server.cleanup()
