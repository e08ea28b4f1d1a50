"""The local keystore: key handling, file format, atomic writes, wrong keys."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import anyio
import pytest

from msgr_bridge.credentials import LocalKeystore, generate_key, load_key
from msgr_bridge.errors import CredentialError


async def test_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    key_file = tmp_path / "keystore.key"
    store = LocalKeystore.open(tmp_path / "ks.json", key_file=key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_text())) == 32
    await store.put("acct-1", "password", "hunter2")
    assert stat.S_IMODE((tmp_path / "ks.json").stat().st_mode) == 0o600

    again = LocalKeystore.open(tmp_path / "ks.json", key_file=key_file)
    assert await again.get("acct-1", "password") == "hunter2"


async def test_base64_key_from_the_environment(tmp_path: Path) -> None:
    key = generate_key()
    store = LocalKeystore.open(tmp_path / "ks.json", key_b64=key)
    await store.put("acct-1", "password", "hunter2")
    assert await LocalKeystore.open(tmp_path / "ks.json", key_b64=key).get("acct-1", "password") == "hunter2"


async def test_wrong_key_is_a_clear_error_not_garbage(tmp_path: Path) -> None:
    store = LocalKeystore.open(tmp_path / "ks.json", key_b64=generate_key())
    await store.put("acct-1", "password", "hunter2")
    with pytest.raises(CredentialError, match="the keystore key does not match"):
        LocalKeystore.open(tmp_path / "ks.json", key_b64=generate_key())


async def test_altered_file_is_refused(tmp_path: Path) -> None:
    key = generate_key()
    store = LocalKeystore.open(tmp_path / "ks.json", key_b64=key)
    await store.put("acct-1", "password", "hunter2")
    envelope = json.loads((tmp_path / "ks.json").read_text())
    raw = bytearray(base64.b64decode(envelope["ciphertext"]))
    raw[5] ^= 1
    envelope["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    (tmp_path / "ks.json").write_text(json.dumps(envelope))
    with pytest.raises(CredentialError, match="does not match"):
        await store.get("acct-1", "password")


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"format": "other"}', b"\x00\xff" * 10])
async def test_a_file_that_is_not_a_keystore_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "ks.json").write_bytes(content)
    with pytest.raises(CredentialError, match="is not a msgr-bridge keystore"):
        LocalKeystore.open(tmp_path / "ks.json", key_b64=generate_key())


@pytest.mark.parametrize("bad", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_malformed_keys_are_refused(bad: str) -> None:
    with pytest.raises(CredentialError, match="32-byte key"):
        load_key(key_b64=bad)


def test_no_key_configured_is_refused() -> None:
    with pytest.raises(CredentialError, match="no keystore key"):
        load_key()


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "keystore.key"
    key_file.write_text(generate_key())
    key_file.chmod(0o644)
    with pytest.raises(CredentialError, match="readable by other users"):
        load_key(key_file=key_file)


async def test_every_write_uses_a_fresh_nonce_and_leaves_no_temp_file(tmp_path: Path) -> None:
    store = LocalKeystore.open(tmp_path / "ks.json", key_b64=generate_key())
    nonces = set()
    for _ in range(5):
        await store.put("acct-1", "password", "same value")
        nonces.add(json.loads((tmp_path / "ks.json").read_text())["nonce"])
    assert len(nonces) == 5
    assert sorted(os.listdir(tmp_path)) == [".ks.json.lock", "ks.json"]


async def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    key = generate_key()
    one = LocalKeystore.open(tmp_path / "ks.json", key_b64=key)
    two = LocalKeystore.open(tmp_path / "ks.json", key_b64=key)  # like the CLI next to the bridge
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(one.put, "acct-1", f"k{i}", f"v{i}")
            tg.start_soon(two.put, "acct-2", f"k{i}", f"v{i}")
    assert len(await one.keys("acct-1")) == 10
    assert len(await one.keys("acct-2")) == 10


async def test_keystore_blob_is_refused_by_name_when_it_is_a_vault_token(tmp_path: Path) -> None:
    store = LocalKeystore.open(tmp_path / "ks.json", key_b64=generate_key())
    with pytest.raises(CredentialError, match="not encrypted by a msgr-bridge local keystore"):
        await store.decrypt("acct-1", "vault:v1:abcdef")


def test_unwritable_key_directory_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = tmp_path / "missing-dir" / "keystore.key"  # root can write anywhere: use a missing dir
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = tmp_path / "ro" / "keystore.key"
    with pytest.raises(CredentialError, match="cannot create the keystore key file"):
        load_key(key_file=target)


KEYSTORE_IMPORTS = """
import asyncio, sys
from pathlib import Path
import msgr_bridge.app  # everything `msgr-bridge run` imports at start
from msgr_bridge.credentials import LocalKeystore

store = LocalKeystore.open(Path(sys.argv[1]) / "ks.json", key_file=Path(sys.argv[1]) / "ks.key")
print("loaded:", "cryptography" in sys.modules)
asyncio.run(store.put("acct-1", "password", "hunter2"))
print("loaded:", "cryptography" in sys.modules)
"""


def test_cryptography_is_loaded_with_the_first_secret_not_at_start(tmp_path: Path) -> None:
    """Issue 19 (idle memory): opening a keystore that has no file yet (no account linked) does not import
    cryptography (~7 MB resident); storing the first secret does."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", KEYSTORE_IMPORTS, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    assert [line for line in out if line.startswith("loaded:")] == ["loaded: False", "loaded: True"]
