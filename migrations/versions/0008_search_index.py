"""Full-text search over message text (``GET /v1/search``), kept in step with every write by the database.

* **SQLite**: an FTS5 table ``messages_fts`` over ``messages.text`` (external content: it stores only the
  index, ``rowid`` = ``messages.id``; tokenizer ``unicode61 remove_diacritics 2``: words are runs of
  letters and digits, case and accents ignored). Three triggers keep it in step with inserts, edits and
  deletes (a delete tombstone clears the text, so its words leave the index; retention's row deletes too),
  inside the transaction of the write that fires them. Existing rows are indexed by ``rebuild``.
* **PostgreSQL**: a stored generated column ``messages.search_vector`` =
  ``to_tsvector('simple', text)`` (no stemming, no stop words: messages come in every language) and a GIN
  index ``ix_messages_search`` on it. PostgreSQL computes the column in the statement that writes the row;
  adding it rewrites the table once, which indexes the existing rows.

Two indexes on both backends (declared in ``models.py``): ``ix_messages_sender (sender_id, id)`` lets a
search for one sender's messages walk them newest first instead of the whole table, and
``ix_messages_sent_at (sent_at, id)`` turns a date window into the range of ids to search.

Neither full-text object is in ``models.py`` (``store/search_schema.py`` names them, so the model comparison and
autogenerate leave them alone). A later migration that rebuilds ``messages`` in SQLite batch mode drops the
triggers with the old table: it must create them again (``tests/store/test_search.py`` would fail).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_UP = [
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
    END
    """,
    """
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END
    """,
    """
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages WHEN old.text IS NOT new.text BEGIN
        INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
    END
    """,
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS messages_fts_update",
    "DROP TRIGGER IF EXISTS messages_fts_delete",
    "DROP TRIGGER IF EXISTS messages_fts_insert",
    "DROP TABLE IF EXISTS messages_fts",
]
POSTGRES_UP = [
    """
    ALTER TABLE messages ADD COLUMN search_vector tsvector
        GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, coalesce(text, ''))) STORED
    """,
    "CREATE INDEX ix_messages_search ON messages USING gin (search_vector)",
    "ANALYZE messages",
]
POSTGRES_DOWN = [
    "DROP INDEX IF EXISTS ix_messages_search",
    "ALTER TABLE messages DROP COLUMN IF EXISTS search_vector",
]


def _statements(up: bool) -> list[str]:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        return POSTGRES_UP if up else POSTGRES_DOWN
    if dialect == "sqlite":
        return SQLITE_UP if up else SQLITE_DOWN
    raise NotImplementedError(f"no full-text index for {dialect}")


def upgrade() -> None:
    for statement in _statements(up=True):
        op.execute(statement)
    op.create_index("ix_messages_sender", "messages", ["sender_id", "id"])
    op.create_index("ix_messages_sent_at", "messages", ["sent_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_messages_sent_at", table_name="messages")
    op.drop_index("ix_messages_sender", table_name="messages")
    for statement in _statements(up=False):
        op.execute(statement)
