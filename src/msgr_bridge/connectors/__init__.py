"""The connector contract (``protocol``), its defaults (``base``) and lifecycle (``supervisor``)."""
