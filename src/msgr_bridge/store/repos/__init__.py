"""Repositories: the only code that reads and writes the bridge's tables.

Each takes the ``Database``; methods join a caller's transaction with ``session=`` (or take the session
first, where a pipeline batches several writes into one commit) and return schema objects or small frozen
dataclasses, never ORM rows bound to a session.
"""

from .accounts import AccountRecord, AccountRepo
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
from .messages import ChangeOutcome, InsertOutcome, MessageRepo, StoredMessage, TxnMatch
from .misc import (
    AccountState,
    ConnectorStateRepo,
    EventLogRepo,
    LoggedEvent,
    NewEvent,
    QuarantinedPayload,
    QuarantineRepo,
    SyncStateRecord,
    SyncStateRepo,
)
from .outbox import AttemptRecord, OutboxAction, OutboxEntry, OutboxRepo, OutboxState

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
