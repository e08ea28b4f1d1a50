"""The core media helper (``msgr_bridge.sdk.media``): every refusal of an outbound attachment URL, the
allowed remote fetch, stored attachments streamed from share-link storage, and a platform's file received
into storage (issue #10 item 12, issue #11 "Media")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from msgr_bridge.errors import AttachmentRefused, BridgeError, TransientError
from msgr_bridge.media.sharelinks import ShareLinkService
from msgr_bridge.media.storage import LocalStorage
from msgr_bridge.schema import Attachment
from msgr_bridge.sdk.media import Media, MediaRules
from msgr_bridge.sdk.urls import AddressRules
from msgr_bridge.store.db import Database
from msgr_bridge.testing.media import FileServer

LOOPBACK = AddressRules.allowing(["127.0.0.1/32"])


def fetching(*, addresses: AddressRules = LOOPBACK, max_bytes: int = 1 << 20, redirects: int = 3) -> Media:
    return Media(
        MediaRules(fetch_remote=True, addresses=addresses, max_bytes=max_bytes, max_redirects=redirects)
    )


async def read(media: Media, url: str, max_bytes: int | None = None) -> tuple[int, bytes]:
    async with media.open(Attachment(name="a.bin", url=url), max_bytes=max_bytes) as stream:
        data = b"".join([c async for c in stream.chunks])
    return stream.size, data


@pytest.fixture
async def files() -> AsyncIterator[FileServer]:
    async with FileServer() as server:
        yield server


async def test_remote_fetch_is_off_by_default(files: FileServer) -> None:
    url = files.serve("/a.bin", b"data")
    for media in (Media(), Media(MediaRules(addresses=LOOPBACK))):
        with pytest.raises(AttachmentRefused, match="does not fetch remote files"):
            await read(media, url)
        with pytest.raises(AttachmentRefused):
            media.check_reference(url)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "/etc/passwd", "data/share-link.key", "ftp://x/y"])
async def test_local_files_and_other_schemes_are_never_read(url: str) -> None:
    with pytest.raises(AttachmentRefused):
        await read(fetching(addresses=AddressRules.allowing(["0.0.0.0/0", "::/0"])), url)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::1]", "10.0.0.1", "169.254.169.254", "[::ffff:127.0.0.1]", "localhost"]
)
async def test_private_and_loopback_hosts_are_refused(files: FileServer, host: str) -> None:
    files.serve("/a.bin", b"secret")
    url = f"http://{host}:{files.port}/a.bin"
    with pytest.raises(AttachmentRefused, match="loopback, private"):
        await read(fetching(addresses=AddressRules()), url)  # "localhost" is refused once resolved
    assert "/a.bin" not in files.sent


async def test_allowed_fetch_from_a_loopback_server_the_operator_allows(files: FileServer) -> None:
    data = bytes(range(256)) * 1000
    size, got = await read(fetching(), files.serve("/a.bin", data))
    assert (size, got) == (len(data), data)
    # no Content-Length: spooled to learn the size first, then streamed
    size, got = await read(fetching(), files.stream("/s", total=5 * 64 * 1024))
    assert size == len(got) == 5 * 64 * 1024


async def test_a_redirect_is_checked_again(files: FileServer) -> None:
    files.serve("/ok.bin", b"fine")
    assert (await read(fetching(), files.redirect("/hop", files.url("/ok.bin"))))[1] == b"fine"
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x", "file:///etc/passwd"):
        with pytest.raises(AttachmentRefused):
            await read(fetching(), files.redirect("/bad", target))
    files.redirect("/loop", files.url("/loop"))
    with pytest.raises(AttachmentRefused, match="redirected more than 2 times"):
        await read(fetching(redirects=2), files.url("/loop"))


async def test_an_oversized_body_is_stopped_while_reading(files: FileServer) -> None:
    total = 256 << 20
    url = files.stream("/big", total=total)
    with pytest.raises(AttachmentRefused, match="larger than the limit of 1048576 bytes"):
        await read(fetching(max_bytes=1 << 20), url)
    await files.finished["/big"].wait()
    assert files.sent["/big"] < total // 4  # the server saw the client hang up long before the end
    # with Content-Length the file is refused before its body is read
    files.serve("/known.bin", b"x" * 3000)
    with pytest.raises(AttachmentRefused, match="larger than the limit of 1000"):
        await read(fetching(), files.url("/known.bin"), max_bytes=1000)


def test_the_api_check_refuses_what_open_would(files: FileServer) -> None:
    media = fetching()
    media.check_reference(files.url("/a.bin"))
    media.check_reference("mxc://server/abc")  # the network's own reference: left to the connector
    media.check_reference(None)
    for url in ("file:///etc/passwd", "/etc/passwd", "http://10.0.0.1/a", "http://[::1]/a"):
        with pytest.raises(AttachmentRefused):
            media.check_reference(url)


# --- share-link storage ---------------------------------------------------------------------------------


@pytest.fixture
def shares(db: Database, tmp_path: Path) -> ShareLinkService:
    return ShareLinkService(
        db, LocalStorage(tmp_path / "media"), b"k" * 32, tenant="default", public_base_url="https://b.example"
    )


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_platform_file_is_received_into_storage_and_handed_out_as_a_stream(
    shares: ShareLinkService, tmp_path: Path
) -> None:
    media = Media(shares=lambda: shares)  # remote fetches off: stored files need none
    stored = await media.receive(chunks_of(b"ab", b"cd" * 100), name="p.png", mime_type="image/png")
    assert stored.size == 202 and stored.url.startswith("https://b.example/s/")
    media.check_reference(stored.url)
    size, data = await read(media, stored.url)
    assert (size, data) == (202, b"ab" + b"cd" * 100)
    with pytest.raises(AttachmentRefused, match="larger than the limit of 100"):
        await read(media, stored.url, max_bytes=100)
    with pytest.raises(BridgeError, match="larger than the limit"):  # capped while reading
        await media.receive(chunks_of(b"x" * 600, b"x" * 600), name="b", mime_type="x/y", max_bytes=1000)
    assert len(list((tmp_path / "media").iterdir())) == 1  # nothing of the refused file stays
    with pytest.raises(AttachmentRefused, match="no such share link"):  # a forged link opens nothing
        await read(media, "https://b.example/s/sl_x.forged/content")
    token = shares.token_in(stored.url)
    assert token is not None
    info = await shares.view(token, count=False)
    assert info.storage_key is not None
    await shares.storage.delete(info.storage_key)  # gone behind the bridge's back: refused, not retried
    with pytest.raises(AttachmentRefused, match="missing"):
        await read(media, stored.url)
    await shares.revoke(info.id)
    with pytest.raises(AttachmentRefused, match="revoked"):
        await read(media, stored.url)


async def test_media_storage_not_open_yet_is_transient() -> None:
    media = Media(shares=lambda: None)
    with pytest.raises(TransientError):
        await read(media, "https://b.example/s/sl_x.y/content")


async def test_share_links_without_a_public_base_url_are_ours_not_paths(db: Database, tmp_path: Path) -> None:
    """With ``[api] public_base_url`` empty a multipart send's attachment URL is ``/s/<token>/content``:
    it is streamed from storage, while other paths stay refused."""
    relative = ShareLinkService(
        db, LocalStorage(tmp_path / "m"), b"k" * 32, tenant="default", public_base_url=""
    )
    media = Media(shares=lambda: relative)
    stored = await media.receive(chunks_of(b"hello"), name="h.txt", mime_type="text/plain")
    assert stored.url.startswith("/s/")
    media.check_reference(stored.url)
    assert await read(media, stored.url) == (5, b"hello")
    for path in ("/etc/passwd", "/s/../etc/passwd", "/s/a/b/content"):
        with pytest.raises(AttachmentRefused):
            media.check_reference(path)
        with pytest.raises(AttachmentRefused):
            await read(media, path)
