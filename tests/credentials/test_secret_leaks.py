"""A known secret goes through put, get, encrypt and the failure paths; it must appear in no log line,
no error message, no keystore file byte and no ciphertext."""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
import structlog.testing

from msgr_bridge.credentials import (
    CredentialStore,
    LocalKeystore,
    ScopedSecrets,
    VaultCredentialStore,
    generate_key,
)
from msgr_bridge.errors import BridgeError
from msgr_bridge.observability import logging as bridge_logging
from msgr_bridge.testing.leaks import assert_absent, captured_bridge_logs
from msgr_bridge.testing.openbao import OpenBaoServer, free_port_pair

from .conftest import vault_settings_for


@pytest.fixture
def canary() -> str:
    return f"canary-{uuid.uuid4().hex}"


@pytest.fixture
def configured_output() -> Iterator[io.StringIO]:
    """The bridge's real log configuration, writing JSON to a buffer; restored afterwards."""
    with captured_bridge_logs() as out:
        yield out


async def _exercise(store: CredentialStore, secret: str) -> list[str]:
    """Link-time put, connector get, blob encryption and the failure paths; returns every error text."""
    errors: list[str] = []
    scoped = ScopedSecrets(store, "acct-leak")
    await scoped.put("password", secret, expires_at=datetime.now(UTC) + timedelta(days=1))
    assert await scoped.get("password") == secret
    await store.rotate("acct-leak", "password", secret)
    token = await store.encrypt("acct-leak", secret.encode())
    assert_absent(secret, token, "a blob ciphertext")
    assert await store.decrypt("acct-leak", token) == secret.encode()
    for attempt in (
        scoped.get("missing"),
        scoped.get("../other/password"),
        store.rotate("acct-leak", "missing", secret),
        store.decrypt("other-account", token),
        store.put("acct-leak", "password", secret, expires_at=datetime(2030, 1, 1)),
    ):
        with pytest.raises(BridgeError) as info:
            await attempt
        errors.append(str(info.value))
    return errors


async def test_keystore_never_leaks(
    tmp_path: Path, canary: str, configured_output: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = generate_key()
    with structlog.testing.capture_logs() as events:
        store = LocalKeystore.open(tmp_path / "ks.json", key_b64=key)
        errors = await _exercise(store, canary)
        with pytest.raises(BridgeError) as info:
            LocalKeystore.open(tmp_path / "ks.json", key_b64=generate_key())
        errors.append(str(info.value))

    assert events, "the credential layer logs what it does (without values)"
    assert_absent(canary, repr(events), "structlog events")
    assert_absent(canary, caplog.text, "stdlib log records")
    assert_absent(canary, "\n".join(errors), "error messages")
    for name in os.listdir(tmp_path):
        assert_absent(canary, (tmp_path / name).read_bytes(), f"file {name}")
    assert_absent(key, "\n".join(errors) + repr(events), "logs (the keystore key)")


@pytest.mark.vault
async def test_vault_never_leaks(
    openbao_server: OpenBaoServer,
    canary: str,
    configured_output: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        store = await VaultCredentialStore.connect(vault_settings_for(openbao_server))
        errors = await _exercise(store, canary)
        with pytest.raises(BridgeError) as info:
            await store.resolver().read("secret/no/such", "password")
        errors.append(str(info.value))
        await store.aclose()
        dead = VaultCredentialStore(
            vault_settings_for(openbao_server, url=f"http://127.0.0.1:{free_port_pair()}")
        )
        with pytest.raises(BridgeError) as info:
            await dead.put("acct-leak", "password", canary)
        errors.append(str(info.value))

    assert_absent(canary, repr(events), "structlog events")
    assert_absent(canary, caplog.text, "stdlib log records (hvac, requests, urllib3)")
    assert_absent(canary, "\n".join(errors), "error messages")
    assert_absent(canary, openbao_server.log_tail(10_000), "the OpenBao server log")


async def test_a_secret_read_is_registered_with_the_log_redactor(
    tmp_path: Path, canary: str, configured_output: io.StringIO
) -> None:
    store = LocalKeystore.open(tmp_path / "ks.json", key_b64=generate_key())
    await store.put("acct-1", "password", canary)
    bridge_logging._forget_registered_secrets()  # as after a restart: only reading registers it again
    value = await ScopedSecrets(store, "acct-1").get("password")
    structlog.get_logger("a.careless.connector").warning(f"login failed with {value}", detail=[value])
    logging.getLogger("a.careless.library").error("sent PASS %s", value)
    output = configured_output.getvalue()
    assert "login failed with ***" in output
    assert "sent PASS ***" in output
    assert_absent(canary, output, "the configured log output")
