"""State sync: catch-up of missed history and snapshots of contacts, conversations and memberships.

``diff`` merges a connector's snapshot into the store (idempotent: running it twice changes nothing);
``jobs`` runs a sync on connect, on reconnect and periodically, and detects connections that look healthy
but receive nothing.
"""
