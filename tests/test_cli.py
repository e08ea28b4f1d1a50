"""The CLI's distinct exit codes and clear errors: config 2, database 3, plugins 4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from msgr_bridge.bus import MemoryBus
from msgr_bridge.cli import main
from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.sync.progress import ProgressService

BIN = Path(sys.executable).parent / "msgr-bridge"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("MSGR_BRIDGE"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_malformed_config_exits_2_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[api]\nport = \n")
    assert main(["--config", str(cfg), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "line 2" in err


def test_placeholder_is_refused_with_what_to_put(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[api]\npublic_base_url = "https://CHANGE_ME"\n')
    assert main(["--config", str(cfg), "config", "check"]) == 2
    assert "api.public_base_url" in capsys.readouterr().err


def test_config_check_validates_network_tables_against_the_connectors_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.toml"
    allow = '[plugins]\nallow = ["loopback"]\n'  # the test network is off unless allowed
    cfg.write_text(allow + '[networks.loopback]\nnetwrk = "x"\nhistory_page = 0\n')
    assert main(["--config", str(cfg), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "[networks.loopback] netwrk" in err and "[networks.loopback] history_page" in err
    cfg.write_text(
        allow + '[networks.loopback]\nnetwork = "x"\nhistory_page = 10\n[networks.nowhere]\nkey = 1\n'
    )
    assert main(["--config", str(cfg), "config", "check"]) == 0
    assert "[networks.nowhere]: no installed connector" in capsys.readouterr().err


def test_config_check_prints_effective_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["api"]["port"] == 8080
    assert out["credentials"]["keystore_key"] == "env://MSGR_BRIDGE_KEYSTORE_KEY"


def test_unreachable_database_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MSGR_BRIDGE__DATABASE__URL", "postgresql://nobody:secret@127.0.0.1:1/nothing")
    assert main(["accounts", "list"]) == 3
    err = capsys.readouterr().err
    assert "127.0.0.1:1" in err and "secret" not in err


def test_unmigrated_database_exits_3_and_says_migrate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["accounts", "list"]) == 3
    assert "msgr-bridge migrate" in capsys.readouterr().err
    assert main(["migrate"]) == 0
    assert main(["accounts", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == []


def broken_plugin_env(tmp_path: Path) -> dict[str, str]:
    """A real installed distribution whose msgr_bridge entry point raises at import."""
    site = tmp_path / "site"
    dist = site / "broken_msgr_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-msgr-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[msgr_bridge]\nbroken = broken_msgr_plugin\n")
    (site / "broken_msgr_plugin.py").write_text("raise ImportError('missing dependency: left-pad')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGR_BRIDGE")}
    env["PYTHONPATH"] = str(site)
    env["MSGR_BRIDGE__PLUGINS__ALLOW"] = "loopback,broken"
    return env


def test_plugin_failing_at_import_exits_4_and_others_are_listed(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN), "plugins", "--json"],
        env=broken_plugin_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 4, result.stderr
    listing = json.loads(result.stdout)
    assert [c["network"] for c in listing["connectors"]] == ["loopback"]
    [broken] = [p for p in listing["plugins"] if p["name"] == "broken"]
    assert "left-pad" in broken["error"]
    assert "broken" in result.stderr and "left-pad" in result.stderr


async def test_accounts_list_shows_import_progress(
    db: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    account = Account(id="acct-cli", network="loopback", remote_user_id="alice")
    await AccountRepo(db).create(account)
    progress = ProgressService(MemoryBus(), "default", db)
    progress.reporter(account).report("g", done=40, total=40, finished=True)
    progress.reporter(account).report("dm", done=5, total=None, phase="catchup")
    await progress.flush()
    monkeypatch.setenv("MSGR_BRIDGE__DATABASE__URL", db.url.render_as_string(hide_password=False))

    assert await anyio.to_thread.run_sync(main, ["accounts", "list"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("acct-cli") and line.endswith("catchup 1/2 conversations, 45 messages")
    assert await anyio.to_thread.run_sync(main, ["accounts", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["sync"]["in_progress"] == 1
    assert [(c["conversation_id"], c["phase"], c["done"]) for c in row["sync"]["conversations"]] == [
        ("dm", "catchup", 5),
        ("g", "history", 40),
    ]
