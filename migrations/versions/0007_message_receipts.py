"""Message receipts: who received and who read each of our messages (``MessageReceipt`` events).

* ``message_receipts``: one row per (message, recipient); ``delivered_at`` set by the first receipt,
  ``read_at`` by the first read one. Deleted with its message.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "message_receipts",
        sa.Column("message_id", BIGID, nullable=False),
        sa.Column("recipient_id", sa.String(), nullable=False),
        sa.Column("recipient_name", sa.String(), nullable=True),
        sa.Column("delivered_at", TS, nullable=False),
        sa.Column("read_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_receipts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", "recipient_id", name=op.f("pk_message_receipts")),
    )


def downgrade() -> None:
    op.drop_table("message_receipts")
