"""Store fixtures: two linked accounts of one tenant on the same network."""

from __future__ import annotations

import pytest

from msgr_bridge.schema import Account
from msgr_bridge.store.db import Database
from msgr_bridge.store.repos import AccountRepo

NETWORK = "loop"


@pytest.fixture
async def accounts(db: Database) -> tuple[str, str]:
    """Two accounts of one tenant on the same network (the two-linked-accounts-in-one-group case)."""
    repo = AccountRepo(db)
    for account_id, remote in (("acct-a", "alice"), ("acct-b", "bob")):
        await repo.create(Account(id=account_id, network=NETWORK, remote_user_id=remote))
    return ("acct-a", "acct-b")
