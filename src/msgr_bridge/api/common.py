"""Helpers shared by route modules: the bridge, the account named in the path (scope-checked), JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..jsonutil import dumps_bytes
from ..schema import Capabilities
from ..store.repos.accounts import AccountRecord
from ..store.tokens import Action
from .auth import require
from .keys import BRIDGE_KEY
from .paths import path_param
from .problems import PATH_ID_HINT, ApiProblem

if TYPE_CHECKING:
    from .services import ApiServices


def bridge_of(request: web.Request) -> ApiServices:
    return request.app[BRIDGE_KEY]


async def account_for(request: web.Request, action: Action) -> AccountRecord:
    """The account in the path, after checking the token's scope for ``action`` on it (404 when absent or
    another tenant's, before the scope check, so scopes reveal nothing)."""
    bridge = bridge_of(request)
    account_id = request.match_info["account_id"]
    record = await bridge.impersonation.account(account_id)
    if record is None or record.tenant != bridge.tenant:
        raise ApiProblem(
            404,
            "account_not_found",
            f"no account {account_id!r}",
            hint="list your accounts with GET /v1/accounts",
        )
    require(request, action, account_id)
    return record


async def conversation_for(request: web.Request, action: Action) -> tuple[AccountRecord, str]:
    """The account and the conversation in the path: 404 ``conversation_not_found`` when the account
    knows no such conversation (no sync snapshot named it and no message of it is stored)."""
    from .queries import conversation_exists

    record = await account_for(request, action)
    conversation_id = path_param(request, "conversation_id")
    if not await conversation_exists(bridge_of(request).db, record.id, conversation_id):
        raise ApiProblem(
            404,
            "conversation_not_found",
            f"account {record.id!r} has no conversation {conversation_id!r}",
            hint="list the account's conversations with GET /v1/accounts/{account_id}/conversations; "
            + PATH_ID_HINT,
        )
    return record, conversation_id


def capabilities_of(
    bridge: ApiServices, record: AccountRecord, conversation_id: str | None = None
) -> Capabilities:
    connector = bridge.supervisor.connector(record.id)
    if connector is not None:
        return (
            connector.conversation_capabilities(conversation_id)
            if conversation_id
            else connector.capabilities
        )
    if record.capabilities:
        return Capabilities.model_validate(dict(record.capabilities))
    cls = bridge.registry.connectors.get(record.network)
    return cls.capabilities if cls is not None else Capabilities()


def account_json(bridge: ApiServices, r: AccountRecord) -> dict[str, Any]:
    state = bridge.supervisor.state(r.id) if bridge.supervisor.runtime(r.id) is not None else r.state
    return {
        "id": r.id,
        "network": r.network,
        "remote_user_id": r.remote_user_id,
        "display_name": r.display_name,
        "state": state.value,
        "state_reason": r.state_reason,
        "user_id": r.user_id,
        "capabilities": capabilities_of(bridge, r).model_dump(mode="json"),
        "credentials_expire_at": r.credentials_expire_at.isoformat() if r.credentials_expire_at else None,
        "sync": bridge.progress.snapshot(r.id),
    }


def json_ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps_bytes(data), status=status, content_type="application/json")
