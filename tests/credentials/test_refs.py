"""Secret references: parsing, pydantic fields, and resolution from env, files and a real OpenBao."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from pydantic import BaseModel, ValidationError
from structlog.testing import capture_logs

from msgr_bridge.credentials import VaultCredentialStore
from msgr_bridge.credentials.refs import SecretRef, parse_ref, resolve
from msgr_bridge.errors import SecretReferenceError
from msgr_bridge.observability.logging import _forget_registered_secrets, configure_logging

# --- parsing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("env://IRC_PASSWORD", SecretRef("env", "IRC_PASSWORD")),
        ("file:///run/secrets/key", SecretRef("file", "/run/secrets/key")),
        ("file://secrets/key.txt", SecretRef("file", "secrets/key.txt")),
        ("vault://secret/msgr-bridge/irc#password", SecretRef("vault", "secret/msgr-bridge/irc", "password")),
        ("  env://X  ", SecretRef("env", "X")),
    ],
)
def test_parse(text: str, expected: SecretRef) -> None:
    ref = parse_ref(text)
    assert ref == expected
    assert parse_ref(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("env://", "not a valid environment variable name"),
        ("env://MY-VAR", "not a valid environment variable name"),
        ("file://", "names no file"),
        ("file:///etc/", "names no file"),
        ("vault://secret/irc", "not which field"),
        ("vault://secret/irc#", "not which field"),
        ("vault://#pw", "not a valid Vault path"),
        ("vault://secret/../other#pw", "not a valid Vault path"),
    ],
)
def test_malformed_references_say_why(text: str, says: str) -> None:
    with pytest.raises(SecretReferenceError) as info:
        parse_ref(text)
    assert says in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("plain", ["hunter2-plain", "https://user:pw@host", "ftp://x"])
def test_a_plain_value_is_refused_without_repeating_it(plain: str) -> None:
    with pytest.raises(SecretReferenceError) as info:
        parse_ref(plain)
    assert plain not in str(info.value)
    assert "env://NAME" in str(info.value)


class Model(BaseModel):
    token: SecretRef
    other: SecretRef | None = None


def test_secret_ref_as_a_pydantic_field() -> None:
    m = Model.model_validate({"token": "vault://secret/bridge#token"})
    assert m.token == SecretRef("vault", "secret/bridge", "token")
    assert m.model_dump(mode="json") == {"token": "vault://secret/bridge#token", "other": None}
    assert Model.model_json_schema()["properties"]["token"]["type"] == "string"


def test_pydantic_refuses_plain_values_and_hides_them() -> None:
    with pytest.raises(ValidationError) as info:
        Model.model_validate({"token": "s3cr3t-plain-token"})
    [error] = info.value.errors(include_input=False)
    assert error["loc"] == ("token",)
    assert "use env://NAME" in error["msg"]
    assert "s3cr3t-plain-token" not in error["msg"]
    with pytest.raises(ValidationError):
        Model.model_validate({"token": 12345})


# --- resolution -------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    _forget_registered_secrets()


async def test_env_reference() -> None:
    assert await resolve("env://BRIDGE_PW", environ={"BRIDGE_PW": "from-env"}) == "from-env"


async def test_env_reference_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSGR_TEST_REF_PW", "process-env-value")
    assert await resolve(SecretRef("env", "MSGR_TEST_REF_PW")) == "process-env-value"


async def test_missing_and_empty_env_variables() -> None:
    with pytest.raises(SecretReferenceError) as info:
        await resolve("env://NOT_SET_ANYWHERE", environ={})
    assert "env://NOT_SET_ANYWHERE" in info.value.message and "not set" in info.value.message
    with pytest.raises(SecretReferenceError, match="empty"):
        await resolve("env://EMPTY", environ={"EMPTY": ""})


async def test_file_reference_strips_one_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("line-one\n\n")
    secret.chmod(0o600)
    assert await resolve(f"file://{secret}") == "line-one\n"
    secret.write_bytes(b"crlf-secret\r\n")
    assert await resolve(f"file://{secret}") == "crlf-secret"


async def test_relative_file_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "key").write_text("relative-secret")
    (tmp_path / "secrets" / "key").chmod(0o600)
    assert await resolve("file://secrets/key") == "relative-secret"


async def test_world_readable_file_is_a_warning(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("readable-secret")
    secret.chmod(0o644)
    with capture_logs() as logs:
        assert await resolve(f"file://{secret}") == "readable-secret"
    [warning] = [e for e in logs if e["event"] == "credentials.secret_file_world_readable"]
    assert warning["log_level"] == "warning"
    assert "chmod 600" in warning["hint"]
    assert "readable-secret" not in repr(logs)


async def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(SecretReferenceError, match="does not exist"):
        await resolve(f"file://{tmp_path}/missing")
    with pytest.raises(SecretReferenceError, match="not a regular file"):
        await resolve(f"file://{tmp_path}")
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SecretReferenceError, match="not UTF-8"):
        await resolve(f"file://{binary}")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 70_000)
    with pytest.raises(SecretReferenceError, match="too large"):
        await resolve(f"file://{big}")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SecretReferenceError, match="empty"):
        await resolve(f"file://{empty}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
async def test_unreadable_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x" * 10)
    secret.chmod(0)
    with pytest.raises(SecretReferenceError, match="not readable"):
        await resolve(f"file://{secret}")


async def test_vault_reference_without_vault_configured() -> None:
    with pytest.raises(SecretReferenceError) as info:
        await resolve("vault://secret/x#pw")
    assert 'backend = "vault"' in (info.value.hint or "")


async def test_a_resolved_secret_is_masked_in_logs(tmp_path: Path) -> None:
    out = io.StringIO()
    saved = structlog.get_config()
    try:
        configure_logging("info", "json", stream=out)
        value = await resolve("env://PW", environ={"PW": "never-log-this-0"})
        structlog.get_logger().info(f"oops {value}", again=value)
    finally:
        structlog.configure(**saved)
    assert "never-log-this-0" not in out.getvalue()
    assert "oops ***" in out.getvalue()


@pytest.mark.vault
async def test_vault_reference_through_a_real_openbao(vault_store: VaultCredentialStore) -> None:
    await vault_store.put("refs-acct", "password", "from-openbao")
    path = f"{vault_store.settings.kv_mount}/{vault_store.settings.prefix}/refs-acct"
    resolver = vault_store.resolver()
    assert await resolve(f"vault://{path}#password", vault=resolver) == "from-openbao"
    with pytest.raises(SecretReferenceError) as info:
        await resolve(f"vault://{path}#nope", vault=resolver)
    assert f"vault://{path}#nope" in info.value.message
    with pytest.raises(SecretReferenceError):
        await resolve(f"vault://{vault_store.settings.kv_mount}/no/such/secret#pw", vault=resolver)
