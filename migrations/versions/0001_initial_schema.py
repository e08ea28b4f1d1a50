"""Initial schema: every table of msgr-bridge 0.1 (see msgr_bridge/store/models.py for what each holds).

Revision ID: 0001
Revises:
Created: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)
"""Timestamps are UTC: timestamptz on PostgreSQL, ISO text in UTC on SQLite."""
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""64-bit keys on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY."""

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_tenant"), "api_tokens", ["tenant"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("seq", BIGID, autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(), nullable=True),
        sa.Column("hash", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "event_log",
        sa.Column("seq", BIGID, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=True),
        sa.Column("conversation_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_event_log")),
    )
    op.create_index("ix_event_log_tenant_seq", "event_log", ["tenant", "seq"], unique=False)

    op.create_table(
        "messages",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("network", sa.String(), nullable=False),
        sa.Column("conversation_id", sa.String(), nullable=False),
        sa.Column("remote_id", sa.String(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.String(), nullable=False),
        sa.Column("sender_name", sa.String(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("formatted", sa.Text(), nullable=True),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("reply_to", sa.String(), nullable=True),
        sa.Column("thread_id", sa.String(), nullable=True),
        sa.Column("mentions", sa.JSON(), nullable=False),
        sa.Column("sent_at", TS, nullable=False),
        sa.Column("edited_at", TS, nullable=True),
        sa.Column("edit_version", sa.Integer(), nullable=False),
        sa.Column("deleted_at", TS, nullable=True),
        sa.Column("txn_id", sa.String(), nullable=True),
        sa.Column("outbox_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "network",
            "conversation_id",
            "remote_id",
            "part",
            name=op.f("uq_messages_network_conversation_id_remote_id_part"),
        ),
        sa.UniqueConstraint("txn_id", name=op.f("uq_messages_txn_id")),
    )
    op.create_index(
        "ix_messages_conversation_cursor", "messages", ["network", "conversation_id", "id"], unique=False
    )

    op.create_table(
        "quarantine",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("network", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    op.create_table(
        "share_links",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("storage_key", sa.String(), nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("max_views", sa.Integer(), nullable=True),
        sa.Column("views", sa.Integer(), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_share_links_token_hash")),
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "reactions",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("message_id", BIGID, nullable=False),
        sa.Column("sender_id", sa.String(), nullable=False),
        sa.Column("sender_name", sa.String(), nullable=True),
        sa.Column("emoji", sa.String(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_reactions_message_id_messages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reactions")),
        sa.UniqueConstraint(
            "message_id", "sender_id", "emoji", name=op.f("uq_reactions_message_id_sender_id_emoji")
        ),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant"], ["tenants.id"], name=op.f("fk_users_tenant_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index(op.f("ix_users_tenant"), "users", ["tenant"], unique=False)

    op.create_table(
        "bridge_accounts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("network", sa.String(), nullable=False),
        sa.Column("remote_user_id", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("credentials_expire_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant"], ["tenants.id"], name=op.f("fk_bridge_accounts_tenant_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_bridge_accounts_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bridge_accounts")),
    )
    op.create_index(
        "ix_bridge_accounts_network_remote", "bridge_accounts", ["network", "remote_user_id"], unique=False
    )
    op.create_index(op.f("ix_bridge_accounts_tenant"), "bridge_accounts", ["tenant"], unique=False)

    op.create_table(
        "bridge_channels",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("network", sa.String(), nullable=False),
        sa.Column("remote_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=True),
        sa.Column("last_sync_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["bridge_accounts.id"],
            name=op.f("fk_bridge_channels_account_id_bridge_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bridge_channels")),
        sa.UniqueConstraint("account_id", "remote_id", name=op.f("uq_bridge_channels_account_id_remote_id")),
    )
    op.create_table(
        "bridge_contacts",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("remote_id", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=True),
        sa.Column("avatar_url", sa.Text(), nullable=True),
        sa.Column("is_self", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["bridge_accounts.id"],
            name=op.f("fk_bridge_contacts_account_id_bridge_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bridge_contacts")),
        sa.UniqueConstraint("account_id", "remote_id", name=op.f("uq_bridge_contacts_account_id_remote_id")),
    )
    op.create_table(
        "connector_state",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("namespace", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["bridge_accounts.id"],
            name=op.f("fk_connector_state_account_id_bridge_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "namespace", "key", name=op.f("pk_connector_state")),
    )
    op.create_table(
        "memberships",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("conversation_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["bridge_accounts.id"],
            name=op.f("fk_memberships_account_id_bridge_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "conversation_id", "user_id", name=op.f("pk_memberships")),
    )
    op.create_table(
        "message_accounts",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("message_id", BIGID, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["bridge_accounts.id"],
            name=op.f("fk_message_accounts_account_id_bridge_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_accounts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "message_id", name=op.f("pk_message_accounts")),
    )
    op.create_index(op.f("ix_message_accounts_message_id"), "message_accounts", ["message_id"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("conversation_id", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.Column("txn_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("remote_id", sa.String(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["bridge_accounts.id"],
            name=op.f("fk_outbox_account_id_bridge_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("tenant", "idempotency_key", name=op.f("uq_outbox_tenant_idempotency_key")),
        sa.UniqueConstraint("txn_id", name=op.f("uq_outbox_txn_id")),
    )
    op.create_index(
        "ix_outbox_account_conversation", "outbox", ["account_id", "conversation_id"], unique=False
    )
    op.create_index("ix_outbox_state_due", "outbox", ["state", "next_attempt_at"], unique=False)

    op.create_table(
        "read_markers",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("conversation_id", sa.String(), nullable=False),
        sa.Column("reader_id", sa.String(), nullable=False),
        sa.Column("up_to_id", sa.String(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["bridge_accounts.id"],
            name=op.f("fk_read_markers_account_id_bridge_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "conversation_id", "reader_id", name=op.f("pk_read_markers")),
    )
    op.create_table(
        "sync_state",
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("last_sync_at", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["bridge_accounts.id"],
            name=op.f("fk_sync_state_account_id_bridge_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_sync_state")),
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["outbox_id"],
            ["outbox.id"],
            name=op.f("fk_delivery_attempts_outbox_id_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
        sa.UniqueConstraint("outbox_id", "attempt", name=op.f("uq_delivery_attempts_outbox_id_attempt")),
    )


def downgrade() -> None:
    for table in (
        "delivery_attempts",
        "sync_state",
        "read_markers",
        "outbox",
        "message_accounts",
        "memberships",
        "connector_state",
        "bridge_contacts",
        "bridge_channels",
        "bridge_accounts",
        "users",
        "reactions",
        "tenants",
        "share_links",
        "quarantine",
        "messages",
        "event_log",
        "audit_log",
        "api_tokens",
    ):
        op.drop_table(table)
