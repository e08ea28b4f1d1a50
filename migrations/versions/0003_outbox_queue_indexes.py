"""Outbox indexes that keep delivery cost flat however long the queue or the history grows.

* ``ix_outbox_due (state, next_attempt_at, created_at, id)`` replaces ``ix_outbox_state_due``: the delivery
  worker claims the earliest due entries (oldest first among those due at the same time) straight off the
  index and stops at the batch limit. Before, the database read every due row and sorted them for each
  batch of 100, so draining a backlog (an account back from a long back-off) cost time quadratic in its
  length; entries held for later (a conversation in back-off) are never read before they are due.
* ``ix_outbox_conversation_state (account_id, conversation_id, state, created_at)`` replaces
  ``ix_outbox_account_conversation``: the per-conversation order check looks for older queued or in-flight
  entries, and used to read every entry the conversation ever had, sent ones included.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_due", "outbox", ["state", "next_attempt_at", "created_at", "id"])
    op.drop_index("ix_outbox_state_due", table_name="outbox")
    op.create_index(
        "ix_outbox_conversation_state", "outbox", ["account_id", "conversation_id", "state", "created_at"]
    )
    op.drop_index("ix_outbox_account_conversation", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_account_conversation", "outbox", ["account_id", "conversation_id"])
    op.drop_index("ix_outbox_conversation_state", table_name="outbox")
    op.create_index("ix_outbox_state_due", "outbox", ["state", "next_attempt_at"])
    op.drop_index("ix_outbox_due", table_name="outbox")
