"""A throwaway, real Synapse homeserver for tests: random loopback port, its own temp dir, SQLite.

Used by the Matrix connector's tests and by the connector contract suite::

    server = start_synapse()                    # ready to serve /health (3-7 s: mostly Python imports)
    me = server.register_user("alice", "alicepw")      # {"user_id", "access_token", "device_id"}
    ...
    server.restart()                            # same port, same data dir (accounts and rooms survive)
    server.cleanup()

Synapse runs from its **own** virtual environment (Twisted and friends stay out of the project venv):
``$MSGR_SYNAPSE_VENV``, by default ``<repo>/.venv-synapse``. When that venv is missing,
``ensure_synapse_venv()`` creates it and installs ``matrix-synapse`` from PyPI (about a minute, 240 MB),
saying so on stderr, so the project's test command installs what it needs.

The server's config is hand-written (no ``--generate-config``): client API only on 127.0.0.1, no
federation, ``trusted_key_servers: []`` (never contacts matrix.org), ``bcrypt_rounds: 4`` and lifted
``rc_*`` rate limits so tests are fast, registration only through the shared-secret admin API, and a
10 MiB upload limit (``m.upload.size``). The process runs under ``setpriv --pdeathsig=TERM`` so a killed
test run leaves no server behind. Start, stop, restart and log tails are ``processes.RestartableServer``'s.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .processes import ManagedProcess, RestartableServer, ServerError, free_port, peer_dir

SHARED_SECRET = "msgr-test-shared-secret"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
_LIFTED = "{per_second: 10000, burst_count: 10000}"

_LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file: {{class: logging.FileHandler, formatter: precise, filename: {d}/homeserver.log}}
loggers:
  synapse.storage.SQL: {{level: WARNING}}
root: {{level: INFO, handlers: [file]}}
disable_existing_loggers: false
"""

_CONFIG = """\
server_name: "{server_name}"
public_baseurl: "http://127.0.0.1:{port}/"
pid_file: {d}/homeserver.pid
listeners:
  - {{port: {port}, bind_addresses: ["127.0.0.1"], type: http, tls: false, x_forwarded: false,
     resources: [{{names: [client], compress: false}}]}}
database: {{name: sqlite3, args: {{database: {d}/homeserver.db}}}}
log_config: {d}/log.config
media_store_path: {d}/media_store
max_upload_size: {max_upload}
signing_key_path: {d}/signing.key
report_stats: false
registration_shared_secret: "{secret}"
macaroon_secret_key: "msgr-test-macaroon-secret"
form_secret: "msgr-test-form-secret"
trusted_key_servers: []
suppress_key_server_warning: true
enable_registration: false
bcrypt_rounds: 4
presence: {{enabled: false}}
url_preview_enabled: false
enable_metrics: false
rc_message: {lifted}
rc_registration: {lifted}
rc_login:
  address: {lifted}
  account: {lifted}
  failed_attempts: {lifted}
rc_joins:
  local: {lifted}
  remote: {lifted}
rc_invites:
  per_room: {lifted}
  per_user: {lifted}
  per_issuer: {lifted}
"""


def default_venv() -> Path:
    """``$MSGR_SYNAPSE_VENV``, else ``.venv-synapse`` at the repository root (the CWD outside a checkout)."""
    if env := os.environ.get("MSGR_SYNAPSE_VENV"):
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    return (repo if (repo / "pyproject.toml").exists() else Path.cwd()) / ".venv-synapse"


def ensure_synapse_venv(venv: Path | None = None) -> Path:
    """Return the Python of a venv that can ``import synapse``, creating and filling it when missing."""
    venv = venv or default_venv()
    python = venv / "bin" / "python"
    if _imports_synapse(python):
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f".{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test processes must not build the same venv at once
        if _imports_synapse(python):
            return python
        print(
            f"msgr-bridge: Synapse is not installed in {venv}; creating that venv and installing "
            "matrix-synapse from PyPI (about a minute, 240 MB). Set MSGR_SYNAPSE_VENV to use another.",
            file=sys.stderr,
            flush=True,
        )
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "matrix-synapse"], check=True, timeout=1800
            )
        except (subprocess.SubprocessError, OSError) as exc:
            raise ServerError(
                f"could not install Synapse into {venv}: {exc}",
                hint="check PyPI access, or build the venv by hand: python3 -m venv DIR && "
                "DIR/bin/pip install matrix-synapse, then set MSGR_SYNAPSE_VENV=DIR",
            ) from exc
    if not _imports_synapse(python):
        raise ServerError(
            f"{python} still cannot import synapse", hint="delete the venv and run the tests again"
        )
    return python


def _imports_synapse(python: Path) -> bool:
    if not python.exists():
        return False
    result = subprocess.run([str(python), "-c", "import synapse"], capture_output=True, timeout=120)
    return result.returncode == 0


@dataclass
class SynapseServer(RestartableServer):
    """A running (or stopped) Synapse process with its config, SQLite DB and media in ``directory``."""

    directory: Path
    port: int
    python: Path
    server_name: str = "localhost"
    shared_secret: str = SHARED_SECRET
    process: ManagedProcess | None = field(default=None, repr=False)
    _admin_token: str | None = field(default=None, repr=False)

    process_name: ClassVar[str] = "synapse"
    log_names: ClassVar[tuple[str, ...]] = ("homeserver.log", "stdout.log")
    start_timeout: ClassVar[float] = 90.0
    stop_timeout: ClassVar[float] = 15.0
    tail_lines: ClassVar[int] = 40

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "homeserver.yaml"

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    # --- process --------------------------------------------------------------------------------------

    def _argv(self) -> list[str]:
        return [str(self.python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=1) as resp:
                return bool(resp.read() == b"OK")
        except (OSError, urllib.error.URLError):
            return False

    # --- admin API ------------------------------------------------------------------------------------

    def _http(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}"
            ) from exc

    def register_user(self, localpart: str, password: str, *, admin: bool = False) -> dict[str, str]:
        """Create an account through the shared-secret admin API.

        Returns the server's answer: ``user_id``, ``access_token`` and ``device_id`` of a first login.
        """
        path = "/_synapse/admin/v1/register"
        nonce = self._http("GET", path)["nonce"]
        mac = hmac.new(
            self.shared_secret.encode(),
            b"\0".join(
                [nonce.encode(), localpart.encode(), password.encode(), b"admin" if admin else b"notadmin"]
            ),
            hashlib.sha1,
        ).hexdigest()
        body = {"nonce": nonce, "username": localpart, "password": password, "admin": admin, "mac": mac}
        answer: dict[str, str] = self._http("POST", path, body)
        return answer

    def admin_token(self) -> str:
        """An access token of an admin account (created on first use)."""
        if self._admin_token is None:
            self._admin_token = self.register_user(f"admin{os.getpid()}", "adminpw", admin=True)[
                "access_token"
            ]
        return self._admin_token

    def override_ratelimit(self, user_id: str, *, per_second: int, burst_count: int) -> None:
        """Give one user a strict message rate limit (the server-wide limits are lifted for tests)."""
        path = f"/_synapse/admin/v1/users/{urllib.parse.quote(user_id, safe='')}/override_ratelimit"
        body = {"messages_per_second": per_second, "burst_count": burst_count}
        self._http("POST", path, body, token=self.admin_token())


def start_synapse(*, venv: Path | None = None, server_name: str = "localhost") -> SynapseServer:
    """Write a config into a fresh temp dir, start Synapse, and return it once ``/health`` answers.

    Creates the Synapse venv first when it is missing (see ``ensure_synapse_venv``); raises ``ConfigError``
    when that fails, and ``RuntimeError`` with the log tail when the server does not come up.
    """
    python = ensure_synapse_venv(venv)
    directory = peer_dir("synapse")  # /tmp/msgr-peer-synapse-*, removed by a later run if we get killed
    server = SynapseServer(directory=directory, port=free_port(), python=python, server_name=server_name)
    key = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    (directory / "signing.key").write_text(f"ed25519 a_test {key}\n")
    (directory / "log.config").write_text(_LOG_CONFIG.format(d=directory))
    server.config_path.write_text(
        _CONFIG.format(
            d=directory,
            port=server.port,
            server_name=server_name,
            max_upload=MAX_UPLOAD_BYTES,
            secret=SHARED_SECRET,
            lifted=_LIFTED,
        )
    )
    try:
        server.start()
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return server


def synapse_fixture() -> Iterator[SynapseServer]:
    """A session fixture body: ``synapse = pytest.fixture(scope="session")(synapse_fixture)``."""
    server = start_synapse()
    try:
        yield server
    finally:
        server.cleanup()
