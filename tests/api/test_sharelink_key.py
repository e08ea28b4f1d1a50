"""The share-link key file is never readable by others, not even for a moment (issue #10, item 18)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from msgr_bridge.media.sharelinks import load_secret


def _settings(data_dir: Path) -> SimpleNamespace:
    return SimpleNamespace(
        api=SimpleNamespace(share_link_secret=None), bridge=SimpleNamespace(data_dir=data_dir)
    )


@pytest.fixture
def permissive_umask() -> object:
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.mark.usefixtures("permissive_umask")
async def test_the_key_file_is_0600_from_its_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash right after the file appears (here: any later chmod fails) must not leave it world-readable.
    def crash(self: Path, mode: int, **kw: object) -> None:
        raise KeyboardInterrupt("killed between create and chmod")

    monkeypatch.setattr(Path, "chmod", crash)
    key_path = tmp_path / "data" / "share-link.key"
    try:
        key = await load_secret(_settings(tmp_path / "data"))
    except KeyboardInterrupt:
        key = None
    assert key_path.exists() or key is None
    if key_path.exists():
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        assert key is not None and len(key) >= 43
    assert [p.name for p in key_path.parent.iterdir()] == ["share-link.key"]  # no temporary left behind


@pytest.mark.usefixtures("permissive_umask")
async def test_the_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = await load_secret(_settings(tmp_path))
    assert await load_secret(_settings(tmp_path)) == first
    assert stat.S_IMODE((tmp_path / "share-link.key").stat().st_mode) == 0o600
