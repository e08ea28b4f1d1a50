"""The full-text index's database objects (migration ``0008_search_index``), which ``models.py`` leaves out.

They are backend-specific (an FTS5 table and its triggers on SQLite; a generated ``tsvector`` column and its
GIN index on PostgreSQL), so the ORM models do not declare them; ``include_object`` tells alembic's model
comparison (autogenerate, and the test that the models match the migrated schema) to leave them alone.
"""

from __future__ import annotations

from typing import Any

FTS_TABLE = "messages_fts"
"""SQLite: the FTS5 table (its shadow tables: ``messages_fts_data``, ``_idx``, ``_docsize``, ``_config``)."""
VECTOR_COLUMN = "search_vector"
"""PostgreSQL: the generated ``tsvector`` column of ``messages``."""
VECTOR_INDEX = "ix_messages_search"
"""PostgreSQL: the GIN index on ``messages.search_vector``."""


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's ``include_object`` hook: skip the search index's objects found in the database."""
    if not reflected or name is None:
        return True
    if type_ == "table" and (name == FTS_TABLE or name.startswith(FTS_TABLE + "_")):
        return False
    if type_ == "column" and name == VECTOR_COLUMN and getattr(obj, "table", None) is not None:
        return bool(obj.table.name != "messages")
    return not (type_ == "index" and name == VECTOR_INDEX)
