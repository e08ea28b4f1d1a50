"""Keyed connector state: per-key expiry, last-use order, and bounded maps.

* ``connector_state.expires_at``: a key written with a TTL ends then (reads treat it as absent; writes to
  the namespace delete expired keys), indexed per namespace so the purge reads only expired keys.
* ``connector_state.used_seq``: the order of last use inside a namespace; a bounded map drops its least
  recently used keys first (``ix_connector_state_used``).
* ``connector_state_maps``: each bounded map's bound and how many entries it has dropped to keep it.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("connector_state") as batch:
        batch.add_column(sa.Column("expires_at", TS, nullable=True))
        batch.add_column(sa.Column("used_seq", sa.BigInteger(), server_default="0", nullable=False))
    op.create_index("ix_connector_state_used", "connector_state", ["account_id", "namespace", "used_seq"])
    op.create_index("ix_connector_state_expiry", "connector_state", ["account_id", "namespace", "expires_at"])
    op.create_table(
        "connector_state_maps",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("namespace", sa.String(), nullable=False),
        sa.Column("max_entries", sa.Integer(), nullable=False),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["bridge_accounts.id"],
            name=op.f("fk_connector_state_maps_account_id_bridge_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "namespace", name=op.f("pk_connector_state_maps")),
    )


def downgrade() -> None:
    op.drop_table("connector_state_maps")
    op.drop_index("ix_connector_state_expiry", table_name="connector_state")
    op.drop_index("ix_connector_state_used", table_name="connector_state")
    with op.batch_alter_table("connector_state") as batch:
        batch.drop_column("used_seq")
        batch.drop_column("expires_at")
