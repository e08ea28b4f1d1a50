"""Share-link binaries in an S3 bucket: AWS S3 or any S3-compatible server (MinIO, Garage, Ceph RGW, ...).

Why it is built this way:

- Uploads stream. Chunks are gathered into parts of ``PART_SIZE`` (8 MiB, plus less than one chunk; S3
  wants at least 5 MiB for every part but the last) in a ``BytesIO`` handed to the client without a
  copy (aiohttp sends it in slices, yielding to the event loop), so one part is in memory at a time,
  whatever the file's size. A part is only sent once more data is known to follow, so an upload that
  fits in one part is a single PutObject (one request, nothing to clean up if the process dies). A
  larger one is a multipart upload, aborted on any error, on cancellation and on ``TooLarge``: parts of
  an unfinished upload are invisible but still stored (and billed) until aborted. A bridge killed
  mid-upload cannot abort; the example config suggests a bucket lifecycle rule for that.
- The bucket is checked at start (HeadBucket), so a typo, a missing bucket, a refused key or an
  unreachable endpoint stop the bridge with an explanation instead of failing the first user's upload.
- Path-style requests when an endpoint is configured (self-hosted servers rarely have wildcard DNS for
  virtual-host buckets), and checksums only where S3 requires them: botocore >= 1.36 adds CRC32 trailers
  to every upload by default, which several S3-compatible servers reject.
- Keys are secret references resolved at start (``vault://`` through the bridge's Vault connection);
  without them botocore's default chain applies (``AWS_*`` variables, ``~/.aws``, an instance role).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp
import anyio
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from ..credentials.refs import VaultResolver, resolve
from ..errors import ConfigError
from .storage import CHUNK, StorageUnavailable, StoredFileMissing, TooLarge, check_key

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

__all__ = ["PART_SIZE", "S3Storage"]

PART_SIZE = 8 * 1024 * 1024
"""Bytes per multipart part: above S3's 5 MiB minimum, small enough to keep memory flat."""

_log = structlog.get_logger("msgr_bridge.media.storage_s3")
_TRANSPORT_ERRORS = (BotoCoreError, aiohttp.ClientError, TimeoutError)
_S3_ERRORS = (ClientError, *_TRANSPORT_ERRORS)
_MISSING_BUCKET = {"NoSuchBucket", "404", "NotFound"}
_REFUSED = {
    "403",
    "AccessDenied",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Storage:
    """The ``Storage`` interface over one S3 client; build it with ``connect`` (which checks the bucket)."""

    def __init__(
        self, client: S3Client, bucket: str, *, prefix: str = "", close: Callable[[], Awaitable[None]]
    ) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self._close = close

    @classmethod
    async def connect(cls, api: Any, *, vault: VaultResolver | None = None) -> S3Storage:
        """A client for ``[api] s3_*`` settings whose bucket answered HeadBucket; ``ConfigError`` (bucket,
        credentials) or ``StorageUnavailable`` (endpoint) otherwise, each with what to do."""
        key_id = secret = None
        if api.s3_access_key_id is not None and api.s3_secret_access_key is not None:
            key_id = await resolve(api.s3_access_key_id, vault=vault)
            secret = await resolve(api.s3_secret_access_key, vault=vault)
        config = AioConfig(
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if api.s3_endpoint_url else "auto"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        stack = AsyncExitStack()
        client: S3Client = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=api.s3_endpoint_url or None,
                region_name=api.s3_region,
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                config=config,
            )
        )
        storage = cls(client, api.s3_bucket, prefix=api.s3_prefix, close=stack.aclose)
        try:
            await storage.check_bucket(api.s3_endpoint_url or f"AWS S3 ({api.s3_region})")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        return storage

    async def check_bucket(self, where: str) -> None:
        """HeadBucket, with every failure turned into an operator's explanation."""
        name = f"S3 bucket {self.bucket!r} at {where}"
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except NoCredentialsError:
            raise ConfigError(
                f"no credentials for the {name}",
                hint="set [api] s3_access_key_id and s3_secret_access_key (references such as env://NAME), "
                "or provide AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or an instance role",
            ) from None
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING_BUCKET:
                raise ConfigError(
                    f"the {name} does not exist",
                    hint="create it (aws s3 mb s3://NAME, mc mb ALIAS/NAME) or fix [api] s3_bucket",
                ) from None
            if code in _REFUSED:
                raise ConfigError(
                    f"the {name} refused the bridge's credentials ({code})",
                    hint="check that [api] s3_access_key_id / s3_secret_access_key name the right key and "
                    "that it may list, read, write and delete objects in this bucket",
                ) from None
            if code in {"301", "PermanentRedirect", "AuthorizationHeaderMalformed"}:
                raise ConfigError(
                    f"the {name} is in another region than {self.client.meta.region_name!r} ({code})",
                    hint="set [api] s3_region to the bucket's region",
                ) from None
            raise StorageUnavailable(
                f"the {name} answered HeadBucket with {code or 'an error'}",
                hint="check [api] s3_endpoint_url and the server's logs",
            ) from None
        except EndpointConnectionError:
            raise StorageUnavailable(
                f"cannot connect to the {name}",
                hint="check [api] s3_endpoint_url (scheme, host, port) and that the server is running",
            ) from None
        except _TRANSPORT_ERRORS as exc:
            raise StorageUnavailable(
                f"the {name} did not answer HeadBucket ({type(exc).__name__})",
                hint="check [api] s3_endpoint_url and that the server is running",
            ) from None

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _unavailable(self, action: str, exc: BaseException) -> NoReturn:
        what = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        raise StorageUnavailable(
            f"S3 {action} failed in bucket {self.bucket!r} ({what})",
            hint="check that the S3 server is up and the bridge's key may use the bucket; then retry",
        ) from None

    # --- Storage -------------------------------------------------------------------------------------

    async def write(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> int:
        name = self.object_key(key)
        buf = io.BytesIO()
        size = 0
        upload_id: str | None = None
        parts: list[CompletedPartTypeDef] = []

        async def send_part(data: io.BytesIO) -> None:
            assert upload_id is not None
            number = len(parts) + 1
            data.seek(0)
            r = await self.client.upload_part(
                Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=data
            )
            parts.append({"ETag": r["ETag"], "PartNumber": number})

        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(max_bytes)
                if buf.tell() >= PART_SIZE:  # a full part, and more follows: it cannot be the only one
                    if upload_id is None:
                        created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=name)
                        upload_id = created["UploadId"]
                    await send_part(buf)
                    buf = io.BytesIO()  # handed over, not copied: one part in memory at a time
                buf.write(chunk)
            if upload_id is None:
                buf.seek(0)
                await self.client.put_object(Bucket=self.bucket, Key=name, Body=buf)
            else:
                await send_part(buf)  # the last part: never empty, may be smaller than PART_SIZE
                await self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException as exc:
            if upload_id is not None:
                with anyio.CancelScope(shield=True):
                    await self._abort(name, upload_id)
            if isinstance(exc, _S3_ERRORS):
                self._unavailable("upload", exc)
            raise
        return size

    async def _abort(self, name: str, upload_id: str) -> None:
        try:
            await self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except _S3_ERRORS as exc:
            _log.warning(
                "storage.s3_abort_failed",
                bucket=self.bucket,
                key=name,
                error=type(exc).__name__,
                hint="its parts stay stored until a bucket lifecycle rule aborts the upload",
            )

    async def open(self, key: str) -> AsyncIterator[bytes]:
        name = self.object_key(key)
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404"}:
                raise StoredFileMissing(
                    f"stored file {key!r} is missing", hint=f"it was deleted from bucket {self.bucket!r}"
                ) from None
            self._unavailable("download", exc)
        except _TRANSPORT_ERRORS as exc:
            self._unavailable("download", exc)
        async with response["Body"] as body:
            try:
                while chunk := await body.read(CHUNK):
                    yield chunk
            except _S3_ERRORS as exc:
                self._unavailable("download", exc)

    async def delete(self, key: str) -> None:
        """DeleteObject; S3 answers success for a key that is already gone."""
        try:
            await self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except _S3_ERRORS as exc:
            self._unavailable("delete", exc)

    async def aclose(self) -> None:
        await self._close()
