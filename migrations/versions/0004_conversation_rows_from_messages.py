"""Conversation rows for conversations known only through their messages.

Until now a conversation got a ``bridge_channels`` row only from a sync snapshot, so a 1:1 chat (XMPP, an
IRC query) that no snapshot names was never listed by ``GET /v1/accounts/{id}/conversations``, however many
messages it had. New messages now create the row as they are stored (``ChannelRepo.ensure_for_messages``);
this revision adds the rows for what is already stored: one per (account, conversation) with a message the
account saw and no row yet, unnamed, ``group`` (a later sync snapshot sets the real type and name) and
``last_sync_at`` NULL. No schema change.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from msgr_bridge.store.types import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    channels = sa.table(
        "bridge_channels",
        sa.column("account_id"),
        sa.column("network"),
        sa.column("remote_id"),
        sa.column("type"),
        sa.column("updated_at", UTCDateTime()),
    )
    messages = sa.table("messages", sa.column("id"), sa.column("network"), sa.column("conversation_id"))
    links = sa.table("message_accounts", sa.column("account_id"), sa.column("message_id"))
    seen = (
        sa.select(links.c.account_id, messages.c.network, messages.c.conversation_id)
        .select_from(links.join(messages, messages.c.id == links.c.message_id))
        .distinct()
        .subquery("seen")
    )
    listed = sa.select(sa.literal(1)).where(
        channels.c.account_id == seen.c.account_id, channels.c.remote_id == seen.c.conversation_id
    )
    rows = sa.select(
        seen.c.account_id,
        seen.c.network,
        seen.c.conversation_id,
        sa.literal("group"),
        sa.literal(datetime.now(UTC), UTCDateTime()),
    ).where(~listed.exists())
    op.execute(
        channels.insert().from_select(["account_id", "network", "remote_id", "type", "updated_at"], rows)
    )


def downgrade() -> None:
    """Nothing to undo: the rows are what the code of this revision creates anyway."""
