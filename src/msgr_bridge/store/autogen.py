"""A maintainer's tool: write the next numbered migration from the difference between the models and the
schema that the existing migrations build.

    python -m msgr_bridge.store.autogen "add delivery attempts"

It migrates a scratch SQLite database to head, compares it with ``models.py`` and writes
``migrations/versions/NNNN_add_delivery_attempts.py`` with the next number. Review the file by hand:
autogenerate misses renames and anything backend-specific (triggers, for instance).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from .db import Database, alembic_config


def next_revision_id() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return f"{int(head) + 1:04d}" if head else "0001"


async def autogenerate(message: str) -> str:
    rev_id = next_revision_id()
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite:///{Path(scratch) / 'autogen.db'}")
        await db.connect()
        try:
            await db.migrate()
            cfg = alembic_config()

            def write(conn: Connection) -> None:
                cfg.attributes["connection"] = conn
                command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)

            async with db.engine.begin() as conn:
                await conn.run_sync(write)
        finally:
            await db.close()
    return rev_id


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    if len(sys.argv) != 2:
        raise SystemExit('usage: python -m msgr_bridge.store.autogen "what the migration does"')
    print(asyncio.run(autogenerate(sys.argv[1])))
