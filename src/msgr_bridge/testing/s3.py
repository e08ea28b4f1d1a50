"""A real S3-compatible server for tests: the server named by ``MSGR_TEST_S3_URL``, else a throwaway moto.

``running_s3()`` is a context manager yielding an ``S3Server`` (endpoint, a key that may use S3, region).
``MSGR_TEST_S3_URL=http://KEY:SECRET@HOST:PORT`` points the tests at a server of your own (MinIO, Garage,
...: each test creates and empties a bucket of its own there); unset or ``start``, a throwaway server is
started here and stopped when the block ends. There is no probe for a local server on a well-known port:
an S3 server is no use without its key.

The throwaway server is moto's standalone server (``moto[server]``, a dev dependency), run as its own
process: it speaks S3's real HTTP protocol (SigV4, multipart uploads), and no S3 server is packaged in
Debian. moto checks keys only when IAM authentication is on: it is started with
``INITIAL_NO_AUTH_ACTION_COUNT=3``, so the three setup requests (create an IAM user, allow it ``s3:*``,
create its access key) go through unsigned and every request after them is checked as AWS does: a wrong
secret is refused with 403, which the storage tests rely on.

This module imports only the standard library at import time (botocore is imported when a client is
made), so the pytest plugin can offer the fixture for free.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .servers import ManagedProcess, ServerError, free_port, peer_dir

__all__ = ["ENV_URL", "S3Server", "running_s3", "start_moto"]

ENV_URL = "MSGR_TEST_S3_URL"
REGION = "us-east-1"
_SETUP_ACTIONS = 3  # CreateUser, PutUserPolicy, CreateAccessKey: see ``_create_key``


@dataclass(frozen=True)
class S3Server:
    """Where the server is and a key that may use S3 there."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str = REGION

    def client(self, *, secret_access_key: str | None = None) -> Any:
        """A synchronous botocore S3 client (path-style), for setting up and inspecting from a test."""
        return _client(
            "s3",
            self.endpoint_url,
            self.access_key_id,
            secret_access_key or self.secret_access_key,
            self.region,
        )

    def new_bucket(self, prefix: str = "msgr-test") -> str:
        """Create a bucket with a unique name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def api_settings(self, bucket: str, secrets_dir: Path, **extra: Any) -> dict[str, Any]:
        """``[api]`` overrides for ``storage_backend = "s3"`` on this server. The key is given the way an
        operator gives it, as ``file://`` references: two files (mode 0600) are written in ``secrets_dir``."""
        refs = {}
        for name, value in (("key_id", self.access_key_id), ("secret", self.secret_access_key)):
            path = secrets_dir / f"s3-{name}"
            path.write_text(value + "\n")
            path.chmod(0o600)
            refs[name] = f"file://{path.resolve()}"
        return {
            "storage_backend": "s3",
            "s3_endpoint_url": self.endpoint_url,
            "s3_bucket": bucket,
            "s3_region": self.region,
            "s3_access_key_id": refs["key_id"],
            "s3_secret_access_key": refs["secret"],
            **extra,
        }


def _client(service: str, endpoint: str, key_id: str, secret: str, region: str) -> Any:
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=1) as r:
            return int(r.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def _create_key(endpoint: str) -> tuple[str, str]:
    """An IAM user allowed ``s3:*`` and its access key: exactly ``_SETUP_ACTIONS`` unsigned requests."""
    iam = _client("iam", endpoint, "setup", "setup", REGION)
    iam.create_user(UserName="msgr-bridge")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="msgr-bridge", PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="msgr-bridge")["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


@contextlib.contextmanager
def start_moto() -> Iterator[S3Server]:
    """A throwaway moto server on a free loopback port, with IAM authentication on."""
    if importlib.util.find_spec("moto") is None:
        raise ServerError(
            "moto is not installed (the throwaway S3 server)",
            hint=f"pip install 'moto[server]' (in msgr-bridge's dev extra), or set {ENV_URL}",
        )
    root = peer_dir("s3")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_ACTIONS)}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)
    proc = ManagedProcess(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log_path=root / "moto.log",
        cwd=root,
        env=env,
        name="moto_server",
    )
    try:
        proc.wait_ready(lambda: _answers(url), timeout=60)
        key_id, secret = _create_key(url)
        yield S3Server(url, key_id, secret)
    finally:
        proc.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_s3() -> Iterator[S3Server]:
    """The server ``MSGR_TEST_S3_URL`` names (``http://KEY:SECRET@HOST:PORT``), else a throwaway moto."""
    configured = os.environ.get(ENV_URL)
    if configured and configured != "start":
        parts = urlsplit(configured)
        if not parts.username or not parts.password or not parts.hostname:
            raise ServerError(
                f"{ENV_URL} must look like http://KEY:SECRET@HOST:PORT", hint="or unset it to start moto"
            )
        endpoint = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        yield S3Server(endpoint, parts.username, parts.password)
    else:
        with start_moto() as server:
            yield server
