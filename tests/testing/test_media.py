"""msgr_bridge.testing.media: the media helper over throwaway storage, and data in chunks."""

from __future__ import annotations

from pathlib import Path

import pytest

from msgr_bridge.errors import BridgeError
from msgr_bridge.schema import Attachment
from msgr_bridge.sdk.media import Media, MediaRules
from msgr_bridge.testing.media import chunks_of, temporary_media


async def test_chunks_of_splits_in_pieces_of_the_size_asked() -> None:
    assert [c async for c in chunks_of(b"abcdefg", 3)] == [b"abc", b"def", b"g"]
    assert [c async for c in chunks_of(b"", 3)] == []


async def test_the_plugins_media_fixture_keeps_a_file_and_reads_it_back(media: Media, tmp_path: Path) -> None:
    data = bytes(range(256)) * 300
    kept = await media.receive(chunks_of(data, 10_000), name="a.bin", mime_type="application/octet-stream")
    async with media.open(Attachment(name="a.bin", url=kept.url)) as back:
        assert b"".join([c async for c in back.chunks]) == data
    assert (tmp_path / "media.db").exists() and any(p.is_file() for p in (tmp_path / "media").rglob("*"))


async def test_temporary_media_applies_the_rules_given(tmp_path: Path) -> None:
    async with temporary_media(tmp_path, MediaRules(max_bytes=10), database="small.db") as small:
        with pytest.raises(BridgeError):
            await small.receive(chunks_of(b"x" * 100, 8), name="big", mime_type="x/y")
    assert (tmp_path / "small.db").exists()
