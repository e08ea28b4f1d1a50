"""The diff engine: merge a ``SyncSnapshot``'s entities into the store.

Contacts and conversations are upserted only where a field changed; each conversation's member list
replaces the stored one (missing members join, absent ones leave), so membership churn between two syncs
collapses into its net effect. Message-level conflicts (an edit after a delete, edits out of order) are
resolved where history is applied, by the message repository: an edit older than the stored version or
timestamp changes nothing, and a deleted message stays deleted. Merging the same snapshot twice changes
nothing the second time (``DiffReport.changed`` is 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from ..connectors.protocol import SyncSnapshot
from ..store.db import Database
from ..store.repos.entities import ChannelRepo, ContactRepo, MembershipRepo


@dataclass(frozen=True, slots=True)
class DiffReport:
    contacts_changed: int = 0
    conversations_changed: int = 0
    members_joined: int = 0
    members_left: int = 0

    @property
    def changed(self) -> int:
        return self.contacts_changed + self.conversations_changed + self.members_joined + self.members_left


class SnapshotMerger:
    def __init__(self, db: Database) -> None:
        self.contacts = ContactRepo(db)
        self.channels = ChannelRepo(db)
        self.memberships = MembershipRepo(db)

    async def merge(self, session: AsyncSession, account_id: str, snapshot: SyncSnapshot) -> DiffReport:
        contacts = [c for c in snapshot.contacts if c.account_id == account_id]
        conversations = [c for c in snapshot.conversations if c.account_id == account_id]
        contacts_changed = await self.contacts.upsert(session, contacts)
        conversations_changed = await self.channels.upsert(session, conversations)
        joined = left = 0
        for conv in conversations:
            if not conv.members and not snapshot.complete:
                continue  # a partial snapshot that shows no members says nothing about who left
            diff = await self.memberships.replace_snapshot(session, account_id, conv.remote_id, conv.members)
            joined += len(diff.joined)
            left += len(diff.left)
        return DiffReport(contacts_changed, conversations_changed, joined, left)
