"""``msgr-bridge tokens create|list|revoke`` and ``audit verify`` through ``cli.main``, against a migrated
SQLite database in a temporary directory. Tampering tests drop the append-only triggers first, as an
attacker with write access to the database would."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from msgr_bridge.cli import main


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    for name in list(os.environ):
        if name.upper().startswith("MSGR_BRIDGE"):
            monkeypatch.delenv(name)
    path = tmp_path / "bridge.toml"
    path.write_text(
        f'[bridge]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "bridge.db"}"\n'
    )
    assert main(["--config", str(path), "migrate"]) == 0
    capsys.readouterr()
    return path


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *args])
    out, err = capsys.readouterr()
    return code, out, err


def sql(config: Path, statement: str, *params: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(config.parent / "bridge.db")
    try:
        with conn:
            return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def audit_rows(config: Path) -> list[tuple[object, ...]]:
    return sql(config, "SELECT seq, actor, action, target, details FROM audit_log ORDER BY seq")


def create(capsys: pytest.CaptureFixture[str], config: Path, name: str, *extra: str) -> dict[str, object]:
    code, out, _ = run(
        capsys, config, "tokens", "create", "--name", name, "--scope", "read", *extra, "--json"
    )
    assert code == 0
    data: dict[str, object] = json.loads(out)
    return data


def test_create_prints_the_token_once_and_stores_only_its_hash(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, out, err = run(
        capsys,
        config,
        "tokens",
        "create",
        "--name",
        "ci",
        "--scope",
        "send:acct-1",
        "--scope",
        "read",
        "--ttl",
        "30d",
        "--user",
        "alice",
    )
    assert code == 0
    lines = dict(line.split(":", 1) for line in out.splitlines())
    token, token_id = lines["token"].strip(), lines["id"].strip()
    assert token.startswith("mb_") and token_id.startswith("tok_")
    assert "shown only this once" in err
    assert "send:acct-1" in lines["scopes"] and "read:*" in lines["scopes"]
    # the database holds a hash, never the token
    dump = "\n".join(sqlite3.connect(config.parent / "bridge.db").iterdump())
    assert token not in dump
    # list never shows it either, in either format
    for fmt in ([], ["--json"]):
        code, out, _ = run(capsys, config, "tokens", "list", *fmt)
        assert code == 0 and token_id in out and token not in out
    code, out, _ = run(capsys, config, "tokens", "list", "--json")
    (row,) = json.loads(out)
    assert row["user"] == "alice" and row["status"] == "active" and row["expires_at"] is not None
    assert sorted(row["scopes"]) == ["read:*", "send:acct-1"]


def test_create_and_revoke_are_audited_and_revoke_shows_in_list(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    first = create(capsys, config, "one")
    create(capsys, config, "two")
    code, out, _ = run(capsys, config, "tokens", "revoke", str(first["id"]))
    assert code == 0 and "revoked" in out
    actions = [(r[2], r[3]) for r in audit_rows(config)]
    assert actions[0] == ("token.create", first["id"])
    assert [a for a, _ in actions] == ["token.create", "token.create", "token.revoke"]
    assert actions[2][1] == first["id"]
    for row in audit_rows(config):
        assert str(first["token"]) not in str(row)
    # revoking again is harmless and not audited twice
    code, out, _ = run(capsys, config, "tokens", "revoke", str(first["id"]))
    assert code == 0 and "already revoked" in out
    assert len(audit_rows(config)) == 3
    code, out, _ = run(capsys, config, "tokens", "list", "--json")
    status = {r["name"]: r["status"] for r in json.loads(out)}
    assert status == {"one": "revoked", "two": "active"}
    code, out, _ = run(capsys, config, "tokens", "list", "--json", "--active")
    assert [r["name"] for r in json.loads(out)] == ["two"]


def test_bad_input_gets_a_clear_error(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, _, err = run(capsys, config, "tokens", "revoke", "tok_nope")
    assert code != 0 and "no API token with id 'tok_nope'" in err
    code, _, err = run(capsys, config, "tokens", "create", "--name", "x", "--scope", "fly")
    assert code != 0 and "unknown scope action 'fly'" in err
    with pytest.raises(SystemExit) as info:
        main(["--config", str(config), "tokens", "create", "--name", "x", "--scope", "read", "--ttl", "soon"])
    assert info.value.code == 2
    assert "30d, 12h" in capsys.readouterr().err
    code, _, err = run(capsys, config, "audit", "verify", "--anchor", "not-a-hash")
    assert code != 0 and "is not an audit head" in err
    assert audit_rows(config) == []


def test_verify_intact_prints_the_head_and_accepts_it_as_anchor(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, out, _ = run(capsys, config, "audit", "verify")
    assert code == 0 and "intact: 0 rows" in out
    for name in ("a", "b", "c"):
        create(capsys, config, name)
    code, out, _ = run(capsys, config, "audit", "verify")
    assert code == 0 and "intact: 3 rows" in out
    head = out.split("head: ", 1)[1].split()[0]
    seq, digest = head.split(":")
    assert (int(seq), digest) == tuple(sql(config, "SELECT seq, hash FROM audit_log ORDER BY seq DESC")[0])
    create(capsys, config, "d")  # the chain grows past the anchor: still fine
    for anchor in (head, digest):
        code, out, _ = run(capsys, config, "audit", "verify", "--anchor", anchor)
        assert code == 0, out
    code, out, _ = run(capsys, config, "audit", "verify", "--json")
    assert json.loads(out)["ok"] is True and json.loads(out)["rows_checked"] == 4


def _drop_triggers(config: Path) -> None:
    sql(config, "DROP TRIGGER audit_log_no_update")
    sql(config, "DROP TRIGGER audit_log_no_delete")


def test_the_triggers_refuse_tampering(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create(capsys, config, "a")
    with pytest.raises(sqlite3.DatabaseError):
        sql(config, "UPDATE audit_log SET actor = 'someone-else'")
    with pytest.raises(sqlite3.DatabaseError):
        sql(config, "DELETE FROM audit_log")


def test_a_changed_row_is_reported_with_a_failing_exit_code(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    for name in ("a", "b", "c"):
        create(capsys, config, name)
    seqs = [r[0] for r in audit_rows(config)]
    _drop_triggers(config)
    sql(config, "UPDATE audit_log SET actor = 'cli:nobody' WHERE seq = ?", seqs[1])
    code, out, _ = run(capsys, config, "audit", "verify")
    assert code == 1
    assert f"BROKEN at seq {seqs[1]}: changed" in out
    code, out, _ = run(capsys, config, "audit", "verify", "--json")
    report = json.loads(out)
    assert (code, report["ok"], report["problem"], report["broken_seq"]) == (1, False, "changed", seqs[1])


def test_a_removed_row_is_reported(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    for name in ("a", "b", "c"):
        create(capsys, config, name)
    seqs = [r[0] for r in audit_rows(config)]
    _drop_triggers(config)
    sql(config, "DELETE FROM audit_log WHERE seq = ?", seqs[1])
    code, out, _ = run(capsys, config, "audit", "verify")
    assert code == 1 and f"BROKEN at seq {seqs[2]}: removed" in out


def test_an_inserted_row_is_reported(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    for name in ("a", "b"):
        create(capsys, config, name)
    (first, second) = sql(config, "SELECT seq, at, prev_hash, hash FROM audit_log ORDER BY seq")
    _drop_triggers(config)
    # move the second row up and slip a forged row (linking to the first) in between
    sql(config, "UPDATE audit_log SET seq = seq + 10 WHERE seq = ?", second[0])
    sql(
        config,
        "INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash) "
        "VALUES (?, ?, 'cli:mallory', 'token.create', 'tok_forged', '{}', ?, ?)",
        int(str(first[0])) + 1,
        second[1],
        first[3],
        "0" * 64,
    )
    code, out, _ = run(capsys, config, "audit", "verify")
    assert code == 1 and "inserted" in out


def test_a_truncated_chain_fails_against_its_anchor(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    for name in ("a", "b", "c"):
        create(capsys, config, name)
    code, out, _ = run(capsys, config, "audit", "verify")
    head = out.split("head: ", 1)[1].split()[0]
    _drop_triggers(config)
    sql(config, "DELETE FROM audit_log WHERE seq = ?", int(head.split(":")[0]))
    code, out, _ = run(capsys, config, "audit", "verify")
    assert code == 0  # without the anchor, removing the last row cannot be seen...
    for anchor in (head, head.split(":")[1]):
        code, out, _ = run(capsys, config, "audit", "verify", "--anchor", anchor)
        assert code == 1 and "anchor_mismatch" in out  # ...with it, it can


def test_web_reset_login_forgets_the_owner_and_its_sessions(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, out, _ = run(capsys, config, "web", "reset-login")
    assert code == 0 and "has no web app login" in out
    sql(config, "INSERT INTO web_owners VALUES ('default', 'me', 'scrypt$x', '2026-01-01', '2026-01-01')")
    sql(
        config,
        "INSERT INTO web_sessions VALUES ('wss_1', 'default', 'h1', '2026-01-01', '2099-01-01', NULL)",
    )
    code, out, _ = run(capsys, config, "web", "reset-login")
    assert code == 0 and "setup link" in out
    assert sql(config, "SELECT count(*) FROM web_owners") == [(0,)]
    assert sql(config, "SELECT count(*) FROM web_sessions") == [(0,)]
    assert audit_rows(config)[-1][2] == "web.owner.reset"
