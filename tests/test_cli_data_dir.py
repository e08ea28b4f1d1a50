"""The CLI finds the bridge's data from any directory (the config file's place, ``--data-dir``, the
environment), never creates a database outside ``migrate`` and ``run``, and ``run`` creates the schema of a
brand-new embedded database itself (an existing one still needs ``migrate``, after a backup)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from msgr_bridge.app import Bridge
from msgr_bridge.cli import main
from msgr_bridge.config import load_settings
from msgr_bridge.errors import SchemaOutdatedError
from msgr_bridge.store.db import Database

BIN = Path(sys.executable).parent / "msgr-bridge"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MSGR_BRIDGE"):
            monkeypatch.delenv(key)


def cli(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")}
    return subprocess.run(
        [str(BIN), *argv], cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def _home(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A bridge home (config/msgr-bridge.toml, no data_dir in it) and an unrelated working directory."""
    home, elsewhere = tmp_path / "bridge", tmp_path / "elsewhere"
    (home / "config").mkdir(parents=True)
    elsewhere.mkdir()
    config = home / "config" / "msgr-bridge.toml"
    config.write_text('[bridge]\ntenant = "default"\n')
    return home, elsewhere, config


def test_tools_find_the_bridges_data_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home, elsewhere, config = _home(tmp_path)
    monkeypatch.chdir(home)  # from its home, as `make run` does
    assert main(["migrate"]) == 0 and (home / "data" / "msgr-bridge.db").is_file()
    assert main(["tokens", "create", "--name", "t", "--scope", "read:*"]) == 0
    capsys.readouterr()

    listed = cli(elsewhere, "--config", str(config), "tokens", "list", "--json")  # a process elsewhere
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)] == ["t"]

    monkeypatch.chdir(elsewhere)

    def names(*argv: str) -> list[str]:
        assert main([*argv, "tokens", "list", "--json"]) == 0
        return [t["name"] for t in json.loads(capsys.readouterr().out)]

    monkeypatch.setenv("MSGR_BRIDGE_CONFIG", str(config))
    assert names() == ["t"]
    monkeypatch.delenv("MSGR_BRIDGE_CONFIG")
    assert names("--data-dir", str(home / "data")) == ["t"]
    monkeypatch.setenv("MSGR_BRIDGE__BRIDGE__DATA_DIR", str(home / "data"))
    assert names() == ["t"]
    assert not (elsewhere / "data").exists()


def test_tools_never_create_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (["accounts", "list"], ["outbox", "list"], ["tokens", "list"], ["audit", "verify"]):
        assert main(argv) == 3, argv
        err = capsys.readouterr().err
        assert "there is no database at" in err and "--data-dir" in err, err
    assert not (tmp_path / "data" / "msgr-bridge.db").exists()
    assert main(["--data-dir", str(tmp_path / "d"), "migrate"]) == 0
    assert (tmp_path / "d" / "msgr-bridge.db").is_file()


async def test_run_creates_the_schema_of_a_brand_new_embedded_database(tmp_path: Path) -> None:
    settings = load_settings(overrides={"bridge": {"data_dir": str(tmp_path / "data")}, "api": {"port": 0}})
    assert settings.embedded_database
    async with Bridge(settings).running() as bridge:
        assert await bridge.db.current_revision() == Database.head_revision()
    async with Bridge(settings).running():  # the second start finds it migrated
        pass


async def test_run_still_refuses_an_existing_database_that_needs_migrate(tmp_path: Path) -> None:
    settings = load_settings(overrides={"bridge": {"data_dir": str(tmp_path / "data")}, "api": {"port": 0}})
    async with Database(settings.database.url) as db:
        await db.migrate("0004")
    with pytest.raises(SchemaOutdatedError, match="'0004'"):
        async with Bridge(settings).running():
            pass


async def test_run_does_not_create_a_database_named_by_url(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}"
    settings = load_settings(
        overrides={"bridge": {"data_dir": str(tmp_path)}, "database": {"url": url}, "api": {"port": 0}}
    )
    assert not settings.embedded_database
    with pytest.raises(SchemaOutdatedError, match="empty"):
        async with Bridge(settings).running():
            pass
