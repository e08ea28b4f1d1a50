"""Alembic environment for msgr-bridge.

The bridge runs migrations itself (``msgr-bridge migrate``, or ``Database.migrate()``): it passes an open
connection of its async engine in ``config.attributes["connection"]`` through ``AsyncConnection.run_sync``,
and this file only configures the context on it. Run from the ``alembic`` command line instead, it reads the
URL from ``-x url=...`` or ``MSGR_BRIDGE__DATABASE__URL`` and opens its own async engine.

SQLite cannot ALTER most things, so migrations run in batch mode there (``render_as_batch``): a table is
copied, changed and renamed, which alembic's ``op.batch_alter_table`` does for us.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from msgr_bridge.store.models import Base
from msgr_bridge.store.search_schema import include_object

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(url: str) -> None:
    from msgr_bridge.store.db import Database

    db = Database(url)
    await db.connect()
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(run_migrations)
    finally:
        await db.close()


def main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "MSGR_BRIDGE__DATABASE__URL"
    )
    if not url:
        raise SystemExit(
            "no database URL: pass `-x url=sqlite:///data/bridge.db` or set MSGR_BRIDGE__DATABASE__URL"
        )
    asyncio.run(run_with_own_engine(url))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `msgr-bridge migrate`")
main()
