"""The connector SDK: what the core gives every network connector so each one stays a handful of small files.

Keyed state, message id lookups, typed settings, a bounded reader, text splitting and send pacing, and media
helpers live here; ``connectors/`` keeps the contract (``protocol.py``), the defaults (``base.py``) and the
supervisor. A connector uses only what its ``ConnectorContext`` hands it and what this package exports.
"""
