"""The S3 storage backend against a real S3-compatible server over HTTP (``s3_server``: moto, with key
checks on, or the server ``MSGR_TEST_S3_URL`` names), and share links through the API with it."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.config import load_settings
from msgr_bridge.credentials import VaultCredentialStore, VaultSettings
from msgr_bridge.errors import ConfigError, NotSupported
from msgr_bridge.media.storage import (
    S3_SUPPORTED,
    Storage,
    StorageUnavailable,
    StoredFileMissing,
    TooLarge,
    open_storage,
)
from msgr_bridge.media.storage_s3 import PART_SIZE, S3Storage
from msgr_bridge.testing.openbao import OpenBaoServer
from msgr_bridge.testing.s3 import S3Server
from msgr_bridge.testing.servers import free_port

from .conftest import Start

MiB = 1024 * 1024
HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "expect"}
SLOW_DOWN = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"


def settings(tmp_path: Path, **api: Any) -> Any:
    return load_settings(overrides={"bridge": {"data_dir": str(tmp_path / "data")}, "api": api})


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
async def storage(s3_server: S3Server, bucket: str, tmp_path: Path) -> AsyncIterator[Storage]:
    store = await open_storage(settings(tmp_path, **s3_server.api_settings(bucket, tmp_path)))
    try:
        yield store
    finally:
        await store.aclose()


def blocks(total: int, chunk: int = 64 * 1024, seed: bytes = b"s") -> Iterator[bytes]:
    """``total`` bytes of deterministic data, made chunk by chunk (each chunk numbered)."""
    block = hashlib.sha256(seed).digest() * (chunk // 32 + 1)
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        yield bytes([start // chunk % 256]) + block[: n - 1]


async def stream(total: int, chunk: int = 64 * 1024, seed: bytes = b"s") -> AsyncIterator[bytes]:
    for b in blocks(total, chunk, seed):
        yield b


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


def digest_of(total: int) -> str:
    h = hashlib.sha256()
    for b in blocks(total):
        h.update(b)
    return h.hexdigest()


def uploads_in_progress(server: S3Server, bucket: str) -> list[Any]:
    return list(server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def object_names(server: S3Server, bucket: str) -> list[str]:
    return [o["Key"] for o in server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


# --- the Storage interface ------------------------------------------------------------------------------


async def test_small_file_round_trip_is_one_object(
    storage: Storage, s3_server: S3Server, bucket: str
) -> None:
    assert S3_SUPPORTED and isinstance(storage, S3Storage)
    data = b"\x89PNG" + os.urandom(3000)

    async def one() -> AsyncIterator[bytes]:
        yield data

    assert await storage.write("blob_small", one(), max_bytes=10 * MiB) == len(data)
    assert await collect(storage.open("blob_small")) == data
    head = s3_server.client().head_object(Bucket=bucket, Key="blob_small")
    assert head["ContentLength"] == len(data)
    assert "-" not in head["ETag"]  # a plain PutObject: a multipart object's ETag ends in -<parts>
    assert uploads_in_progress(s3_server, bucket) == []


async def test_empty_file_round_trip(storage: Storage) -> None:
    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""

    assert await storage.write("blob_empty", nothing(), max_bytes=1024) == 0
    assert await collect(storage.open("blob_empty")) == b""


async def test_multipart_round_trip_streams(storage: Storage, s3_server: S3Server, bucket: str) -> None:
    total = 2 * PART_SIZE + 3 * MiB + 17  # three parts, the last one short
    tracemalloc.start()
    try:
        assert await storage.write("blob_big", stream(total), max_bytes=64 * MiB) == total
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one part in memory at a time (plus the client's own buffers), never the whole file
    assert peak < PART_SIZE + 4 * MiB < total, peak
    head = s3_server.client().head_object(Bucket=bucket, Key="blob_big")
    assert head["ContentLength"] == total and head["ETag"].strip('"').endswith("-3")
    h, sizes = hashlib.sha256(), []
    async for chunk in storage.open("blob_big"):
        h.update(chunk)
        sizes.append(len(chunk))
    assert h.hexdigest() == digest_of(total)
    assert max(sizes) <= 64 * 1024 and len(sizes) > 1  # streamed back in chunks
    assert uploads_in_progress(s3_server, bucket) == []


async def test_exactly_one_part_is_a_single_put(storage: Storage, s3_server: S3Server, bucket: str) -> None:
    assert await storage.write("blob_edge", stream(PART_SIZE), max_bytes=PART_SIZE) == PART_SIZE
    head = s3_server.client().head_object(Bucket=bucket, Key="blob_edge")
    assert head["ContentLength"] == PART_SIZE and "-" not in head["ETag"]


async def test_too_large_aborts_the_multipart_upload(
    storage: Storage, s3_server: S3Server, bucket: str
) -> None:
    limit = PART_SIZE + 2 * MiB  # one part is sent before the limit is crossed
    with pytest.raises(TooLarge) as info:
        await storage.write("blob_huge", stream(3 * PART_SIZE), max_bytes=limit)
    assert info.value.limit == limit and info.value.code == "body_too_large"
    assert object_names(s3_server, bucket) == []
    assert uploads_in_progress(s3_server, bucket) == []


async def test_too_large_within_one_part_stores_nothing(
    storage: Storage, s3_server: S3Server, bucket: str
) -> None:
    with pytest.raises(TooLarge):
        await storage.write("blob_over", stream(2 * MiB), max_bytes=MiB)
    assert object_names(s3_server, bucket) == []


async def test_a_failing_source_aborts_the_upload(storage: Storage, s3_server: S3Server, bucket: str) -> None:
    async def broken() -> AsyncIterator[bytes]:
        async for chunk in stream(PART_SIZE + 2 * MiB):
            yield chunk
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await storage.write("blob_broken", broken(), max_bytes=64 * MiB)
    assert object_names(s3_server, bucket) == []
    assert uploads_in_progress(s3_server, bucket) == []


async def test_a_part_refused_once_by_the_server_is_sent_again(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """A transient server error on one part (503 SlowDown, as S3 answers under load) costs a retry of that
    part, not the upload: the client's standard retry mode sends it again from the part kept in memory."""
    seen: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        part = request.query.get("partNumber")
        if part is not None:
            seen.append(part)
            if part == "2" and seen.count("2") == 1:
                return web.Response(status=503, content_type="application/xml", text=SLOW_DOWN)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(
                request.method,
                s3_server.endpoint_url + request.path_qs,
                headers=headers,
                data=io.BytesIO(body),
            ) as upstream,
        ):
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=upstream.status, body=payload, headers=out)

    app = web.Application(client_max_size=2 * PART_SIZE)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        api = s3_server.api_settings(bucket, tmp_path, s3_endpoint_url=f"http://127.0.0.1:{port}")
        store = await open_storage(settings(tmp_path, **api))
        try:
            total = 2 * PART_SIZE + 17
            assert await store.write("blob_retried", stream(total), max_bytes=64 * MiB) == total
        finally:
            await store.aclose()
    finally:
        await runner.cleanup()
    assert seen == ["1", "2", "2", "3"]
    stored = s3_server.client().get_object(Bucket=bucket, Key="blob_retried")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == digest_of(total)
    assert uploads_in_progress(s3_server, bucket) == []


async def test_missing_key_is_the_same_error_as_local(storage: Storage, tmp_path: Path) -> None:
    local = await open_storage(settings(tmp_path))
    for store in (storage, local):
        with pytest.raises(StoredFileMissing) as info:
            await collect(store.open("blob_never_written"))
        assert info.value.message == "stored file 'blob_never_written' is missing"
        assert info.value.code == "stored_file_missing"


async def test_delete_twice(storage: Storage, s3_server: S3Server, bucket: str) -> None:
    async def one() -> AsyncIterator[bytes]:
        yield b"bye"

    await storage.write("blob_gone", one(), max_bytes=10)
    await storage.delete("blob_gone")
    await storage.delete("blob_gone")
    assert object_names(s3_server, bucket) == []
    with pytest.raises(StoredFileMissing):
        await collect(storage.open("blob_gone"))


async def test_prefix_and_key_checks(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    store = await open_storage(
        settings(tmp_path, **s3_server.api_settings(bucket, tmp_path, s3_prefix="bridge/media/"))
    )
    try:

        async def one() -> AsyncIterator[bytes]:
            yield b"x"

        await store.write("blob_p", one(), max_bytes=10)
        assert object_names(s3_server, bucket) == ["bridge/media/blob_p"]
        with pytest.raises(Exception, match="invalid storage key"):
            await store.write("../escape", one(), max_bytes=10)
    finally:
        await store.aclose()


@pytest.mark.vault
async def test_keys_from_vault_references(
    s3_server: S3Server, bucket: str, tmp_path: Path, openbao_server: OpenBaoServer
) -> None:
    sub = f"s3-{uuid.uuid4().hex[:8]}/bridge"
    openbao_server.client().secrets.kv.v2.create_or_update_secret(
        path=sub, secret={"id": s3_server.access_key_id, "secret": s3_server.secret_access_key}
    )
    api = {
        **s3_server.api_settings(bucket, tmp_path),
        "s3_access_key_id": f"vault://secret/{sub}#id",
        "s3_secret_access_key": f"vault://secret/{sub}#secret",
    }
    vault = await VaultCredentialStore.connect(
        VaultSettings(url=openbao_server.url, token=openbao_server.root_token, timeout=5.0)
    )
    try:
        store = await open_storage(settings(tmp_path, **api), credentials=vault)
        await store.write("blob_vault", stream(10), max_bytes=10)
        await store.aclose()
        assert object_names(s3_server, bucket) == ["blob_vault"]
    finally:
        await vault.aclose()
    with pytest.raises(ConfigError, match="vault:// references need Vault"):
        await open_storage(settings(tmp_path, **api))


# --- start-up checks --------------------------------------------------------------------------------------


async def test_missing_bucket_is_a_clear_error(s3_server: S3Server, tmp_path: Path) -> None:
    s = settings(tmp_path, **s3_server.api_settings("msgr-no-such-bucket", tmp_path))
    with pytest.raises(ConfigError) as info:
        await open_storage(s)
    assert "'msgr-no-such-bucket'" in info.value.message and "does not exist" in info.value.message
    assert "s3_bucket" in (info.value.hint or "")


async def test_wrong_secret_is_a_clear_error(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    (tmp_path / "wrong").write_text("not-the-secret")
    (tmp_path / "wrong").chmod(0o600)
    api = {**s3_server.api_settings(bucket, tmp_path), "s3_secret_access_key": f"file://{tmp_path}/wrong"}
    with pytest.raises(ConfigError) as info:
        await open_storage(settings(tmp_path, **api))
    assert "refused the bridge's credentials" in info.value.message
    assert "s3_secret_access_key" in (info.value.hint or "")
    assert "not-the-secret" not in info.value.explain()


def test_run_with_a_missing_bucket_exits_2_with_the_hint(s3_server: S3Server, tmp_path: Path) -> None:
    api = {"port": 0, **s3_server.api_settings("msgr-no-such-bucket", tmp_path)}
    lines = ["[bridge]", f'data_dir = "{tmp_path / "data"}"', "[api]"]
    lines += [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in api.items()]
    (tmp_path / "c.toml").write_text("\n".join(lines) + "\n")

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "msgr_bridge.cli", "--config", str(tmp_path / "c.toml"), *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    assert cli("migrate").returncode == 0
    run = cli("run")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "msgr-bridge: error: the S3 bucket 'msgr-no-such-bucket'" in run.stderr
    assert "hint: create it" in run.stderr and "Traceback" not in run.stderr


async def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("key")
    api = {
        "storage_backend": "s3",
        "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
        "s3_bucket": "msgr-bucket",
        "s3_access_key_id": f"file://{tmp_path}/k",
        "s3_secret_access_key": f"file://{tmp_path}/k",
    }
    with pytest.raises(StorageUnavailable) as info:
        await open_storage(settings(tmp_path, **api))
    assert "cannot connect" in info.value.message and "s3_endpoint_url" in (info.value.hint or "")


async def test_unset_secret_reference_is_a_config_error(tmp_path: Path) -> None:
    api = {
        "storage_backend": "s3",
        "s3_bucket": "msgr-bucket",
        "s3_access_key_id": "env://MSGR_TEST_UNSET_S3_KEY",
        "s3_secret_access_key": "env://MSGR_TEST_UNSET_S3_KEY",
    }
    with pytest.raises(ConfigError, match="MSGR_TEST_UNSET_S3_KEY is not set"):
        await open_storage(settings(tmp_path, **api))


def test_config_refuses_an_incomplete_s3_setup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="s3_bucket is required"):
        settings(tmp_path, storage_backend="s3")
    with pytest.raises(ConfigError, match="go together"):
        settings(tmp_path, storage_backend="s3", s3_bucket="b", s3_access_key_id="env://K")
    with pytest.raises(ConfigError, match="a plain value is not allowed"):
        settings(tmp_path, storage_backend="s3", s3_bucket="b", s3_secret_access_key="hunter2")


async def test_without_aiobotocore_s3_is_not_supported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aiobotocore", None)  # what an install without the s3 extra sees
    with pytest.raises(NotSupported) as info:
        await open_storage(settings(tmp_path, storage_backend="s3", s3_bucket="msgr-bucket"))
    assert info.value.capability == "storage.s3" and "msgr-bridge[s3]" in (info.value.hint or "")


# --- through the HTTP API ---------------------------------------------------------------------------------


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_share_link_upload_and_download_through_s3(
    start: Start, net: LoopbackNetwork, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    size = 3 * MiB + 5
    body = b"".join(blocks(size, seed=b"api"))
    async with start(max_body_bytes=9 * MiB, **s3_server.api_settings(bucket, tmp_path)) as api:
        form = aiohttp.FormData()
        form.add_field("options", '{"kind": "file", "max_views": 3}')
        form.add_field("file", io.BytesIO(body), filename="r.bin", content_type="application/octet-stream")
        status, link = await api.call("POST", "/v1/share-links", data=form)
        assert status == 201, link
        assert link["target"]["size"] == size
        [name] = object_names(s3_server, bucket)
        assert s3_server.client().head_object(Bucket=bucket, Key=name)["ContentLength"] == size
        async with api.http.get(api.base + f"/s/{link['token']}/content") as r:
            assert r.status == 200 and await r.read() == body
            assert r.headers["Content-Disposition"] == 'attachment; filename="r.bin"'

        # no Content-Length: the limit is only found while streaming, after one part went to S3
        too_big = aiohttp.FormData()
        too_big.add_field("file", io.BytesIO(b"x" * (9 * MiB + 1)), filename="big.bin")
        status, problem = await api.call("POST", "/v1/share-links", data=too_big, chunked=True)
        assert status == 413 and problem["code"] == "body_too_large"
        assert object_names(s3_server, bucket) == [name]
        assert uploads_in_progress(s3_server, bucket) == []

        status, _ = await api.call("DELETE", f"/v1/share-links/{link['id']}")
        assert status == 200 and object_names(s3_server, bucket) == []
        async with api.http.get(api.base + f"/s/{link['token']}/content") as r:
            assert r.status == 410
