"""The retention job removes expired share links with their files, orphaned files and, when configured,
old messages and quarantined payloads (issue #10, item 13), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from msgr_bridge.config.sections import RetentionSection
from msgr_bridge.inbound.persist import DatabaseInboundStore
from msgr_bridge.media.sharelinks import ShareLinkService
from msgr_bridge.media.storage import LocalStorage
from msgr_bridge.retention import RetentionJob
from msgr_bridge.schema import Account, Message, Sender
from msgr_bridge.store.db import Database
from msgr_bridge.store.models import MessageRow, QuarantineRow, ShareLink
from msgr_bridge.store.repos.accounts import AccountRepo
from msgr_bridge.store.repos.quarantine import QuarantineRepo
from msgr_bridge.store.types import utcnow


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _count(db: Database, model: type[object]) -> int:
    async with db.read() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_expired_links_and_orphans_are_removed_live_ones_kept(db: Database, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")
    shares = ShareLinkService(db, storage, b"k" * 32, tenant="default", public_base_url="https://x")
    await AccountRepo(db).ensure_tenant("default")
    expired = await shares.upload(
        "file", _chunks(b"old"), name="a", mime_type="text/plain", max_bytes=10, ttl_s=-1
    )
    used_up = await shares.upload(
        "file", _chunks(b"u"), name="b", mime_type="text/plain", max_bytes=10, max_views=1
    )
    await shares.view(shares.token_for(used_up.id))
    live = await shares.upload("file", _chunks(b"live"), name="c", mime_type="text/plain", max_bytes=10)
    await storage.write("blob_orphan_old", _chunks(b"o"), 10)
    an_hour_ago = time.time() - 7200
    os.utime(storage.path("blob_orphan_old"), (an_hour_ago, an_hour_ago))
    await storage.write("blob_orphan_new", _chunks(b"n"), 10)  # maybe an upload about to be linked

    report = await RetentionJob(db, storage, RetentionSection(), tenant="default").run_once()

    assert not storage.path(str(expired.storage_key)).exists()
    assert not storage.path(str(used_up.storage_key)).exists()
    assert storage.path(str(live.storage_key)).exists()
    assert not storage.path("blob_orphan_old").exists() and storage.path("blob_orphan_new").exists()
    async with db.read() as s:
        assert list((await s.scalars(select(ShareLink.id))).all()) == [live.id]
    assert (report.share_links, report.files) == (2, 3)


async def test_old_messages_and_quarantine_are_removed_only_when_configured(
    db: Database, tmp_path: Path
) -> None:
    await AccountRepo(db).create(Account(id="acct", network="loop", remote_user_id="me"))
    old, new = utcnow() - timedelta(days=40), utcnow()
    await DatabaseInboundStore(db).persist(
        "default",
        [
            Message(network="loop", account_id="acct", conversation_id="c", remote_id=f"m{i}",
                    sender=Sender(user_id="bob"), timestamp=at)
            for i, at in enumerate((old, new))
        ],
        [],
    )  # fmt: skip
    quarantine = QuarantineRepo(db)
    await quarantine.add("loop", "acct", {"x": 1}, "bad")
    async with db.session() as s:
        row = (await s.scalars(select(QuarantineRow))).one()
        row.created_at = old
    storage = LocalStorage(tmp_path / "media")

    off = await RetentionJob(db, storage, RetentionSection(), tenant="default").run_once()
    assert (off.messages, off.quarantined) == (0, 0)
    assert await _count(db, MessageRow) == 2 and await _count(db, QuarantineRow) == 1

    on = RetentionSection(messages_max_age_days=30, quarantine_max_age_days=30)
    report = await RetentionJob(db, storage, on, tenant="default").run_once()
    assert (report.messages, report.quarantined) == (1, 1)
    async with db.read() as s:
        assert list((await s.scalars(select(MessageRow.remote_id))).all()) == ["m1"]
    assert await _count(db, QuarantineRow) == 0
