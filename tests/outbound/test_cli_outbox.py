"""``msgr-bridge outbox list|retry|cancel``, as functions and through the argument parser."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from msgr_bridge.cli_outbox import cancel_entry, list_entries, register, retry_entry
from msgr_bridge.errors import BridgeError
from msgr_bridge.schema import Account
from msgr_bridge.store import audit
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import AccountRepo, EventLogRepo, OutboxAction, OutboxRepo, OutboxState


async def _entries(db: Database) -> tuple[str, str]:
    await AccountRepo(db).create(Account(id="acct-1", network="loopback", remote_user_id="me"))
    repo = OutboxRepo(db)
    queued, _ = await repo.create("default", "acct-1", "room-1", OutboxAction.SEND, {"text": "a"})
    dead, _ = await repo.create("default", "acct-1", "room-1", OutboxAction.SEND, {"text": "b"})
    await repo.claim_due(limit=10)
    await repo.mark_failed(queued.id, "later", retry_at=queued.next_attempt_at)
    await repo.dead_letter(dead.id, "gave up")
    return queued.id, dead.id


async def test_list_retry_cancel(db: Database) -> None:
    queued_id, dead_id = await _entries(db)
    assert [e.id for e in await list_entries(db, "dead")] == [dead_id]
    assert {e.id for e in await list_entries(db)} == {queued_id, dead_id}
    with pytest.raises(BridgeError, match="unknown outbox state"):
        await list_entries(db, "lost")

    retried = await retry_entry(db, dead_id)
    assert retried.state is OutboxState.QUEUED and retried.attempts == 0
    with pytest.raises(BridgeError, match="only failed, dead or cancelled"):
        await retry_entry(db, queued_id)

    cancelled = await cancel_entry(db, queued_id)
    assert cancelled.state is OutboxState.CANCELLED
    with pytest.raises(BridgeError, match="no outbox entry"):
        await cancel_entry(db, "ob_missing")

    events = await EventLogRepo(db).read_after(0)
    assert [(e.kind, e.payload["state"]) for e in events] == [
        ("delivery_status", "queued"),
        ("delivery_status", "cancelled"),  # the outbox's state: one truth (it said "failed")
    ]
    assert (await OutboxRepo(db).get(queued_id)).state.value == events[-1].payload["state"]  # type: ignore[union-attr]
    async with db.session() as s:
        assert [e.action for e in await audit.entries(s)] == ["outbox.retry", "outbox.cancel"]


async def test_commands_through_the_parser(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    async with Database(url) as db:
        await db.migrate()
        _, dead_id = await _entries(db)
    config = tmp_path / "bridge.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    register(parser.add_subparsers(dest="command", required=True))

    async def run(*argv: str) -> str:
        args = parser.parse_args(["--config", str(config), *argv])
        assert await args.handler(args) == 0
        return capsys.readouterr().out

    listed = json.loads(await run("outbox", "list", "--state", "dead", "--json"))
    assert [e["id"] for e in listed] == [dead_id] and listed[0]["last_error"] == "gave up"
    assert "queued" in await run("outbox", "retry", dead_id)
    assert "cancelled" in await run("outbox", "cancel", dead_id)
    assert dead_id in await run("outbox", "list")
