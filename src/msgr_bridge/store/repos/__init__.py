"""Repositories: the only code that reads and writes the bridge's tables.

Each takes the ``Database``; methods join a caller's transaction with ``session=`` (or take the session
first, where a pipeline batches several writes into one commit) and return schema objects or small frozen
dataclasses, never ORM rows bound to a session.
"""

from .accounts import AccountRecord, AccountRepo
from .connector_state import AccountState, ConnectorStateRepo
from .entities import (
    ChannelRepo,
    ContactRepo,
    MembershipDiff,
    MembershipRepo,
    ReactionOutcome,
    ReactionRepo,
    ReadMarkerRepo,
    StoredReaction,
)
from .event_log import EventLogRepo, LoggedEvent, NewEvent
from .messages import ChangeOutcome, InsertOutcome, MessageRepo, StoredMessage, TxnMatch
from .outbox import AttemptRecord, OutboxAction, OutboxEntry, OutboxRepo, OutboxState
from .quarantine import QuarantinedPayload, QuarantineRepo
from .sync_state import SyncStateRecord, SyncStateRepo

__all__ = [
    "AccountRecord",
    "AccountRepo",
    "AccountState",
    "AttemptRecord",
    "ChangeOutcome",
    "ChannelRepo",
    "ConnectorStateRepo",
    "ContactRepo",
    "EventLogRepo",
    "InsertOutcome",
    "LoggedEvent",
    "MembershipDiff",
    "MembershipRepo",
    "MessageRepo",
    "NewEvent",
    "OutboxAction",
    "OutboxEntry",
    "OutboxRepo",
    "OutboxState",
    "QuarantineRepo",
    "QuarantinedPayload",
    "ReactionOutcome",
    "ReactionRepo",
    "ReadMarkerRepo",
    "StoredMessage",
    "StoredReaction",
    "SyncStateRecord",
    "SyncStateRepo",
    "TxnMatch",
]
