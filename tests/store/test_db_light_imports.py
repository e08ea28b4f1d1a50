"""A running bridge does not load what only some configurations or commands need (issue 19: idle memory)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from msgr_bridge.store.db import Database, alembic_config, script_revisions

CHECK = """
import asyncio, sys
from msgr_bridge.store.db import Database
import msgr_bridge.app  # everything `msgr-bridge run` imports at start

async def main():
    async with Database(sys.argv[1]) as db:
        print(await db.check_schema())

asyncio.run(main())
heavy = sorted(m for m in ("alembic", "mako", "segno", "cryptography") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_the_light_reading_of_the_migrations_agrees_with_alembic() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    known, head = script_revisions()
    assert known == {rev.revision for rev in script.walk_revisions()}
    assert head == script.get_current_head()


async def test_starting_imports_neither_alembic_segno_nor_cryptography(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bridge.db"
    async with Database(url) as db:
        await db.migrate()
        head = Database.head_revision()
    out = await asyncio.to_thread(_check, url)
    assert out == [head, "none"]


def _check(url: str) -> list[str]:
    return subprocess.run(
        [sys.executable, "-c", CHECK, url], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
