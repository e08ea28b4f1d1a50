"""The bridge store: ``Database`` (engine, migrations, schema checks, sessions), the models, and the
repositories in ``msgr_bridge.store.repos``. See ``db.py`` for backends and ``models.py`` for the tables."""

from .db import Database

__all__ = ["Database"]
