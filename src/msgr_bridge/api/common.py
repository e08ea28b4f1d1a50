"""Helpers shared by route modules: each service a route uses (one app key each, ``services.py``), the
account named in the path (scope-checked), JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..jsonutil import dumps_bytes
from ..schema import Capabilities
from ..store.repos.accounts import AccountRecord
from ..store.tokens import Action
from .auth import require
from .keys import (
    ACCOUNTS_KEY,
    ADMIN_KEY,
    HEALTH_KEY,
    HOOKS_KEY,
    LINKS_KEY,
    METRICS_KEY,
    OUTBOUND_KEY,
    OUTBOX_KEY,
    QUERIES_KEY,
    SEARCH_KEY,
    URLS_KEY,
    WEB_KEY,
)
from .paths import path_param
from .problems import PATH_ID_HINT, ApiProblem

if TYPE_CHECKING:
    from .services import (
        AccountViews,
        ConnectorHooks,
        Health,
        LinkFlows,
        Metrics,
        Outbound,
        OutboxOps,
        OwnerAdmin,
        Queries,
        SearchIndex,
        UrlCheck,
        WebSignIn,
    )


def accounts_of(request: web.Request) -> AccountViews:
    return request.app[ACCOUNTS_KEY]


def links_of(request: web.Request) -> LinkFlows:
    return request.app[LINKS_KEY]


def queries_of(request: web.Request) -> Queries:
    return request.app[QUERIES_KEY]


def health_of(request: web.Request) -> Health:
    return request.app[HEALTH_KEY]


def urls_of(request: web.Request) -> UrlCheck:
    return request.app[URLS_KEY]


def outbound_of(request: web.Request) -> Outbound | None:
    """The outbound service, or None while the bridge is still starting."""
    return request.app.get(OUTBOUND_KEY)


def outbox_of(request: web.Request) -> OutboxOps:
    return request.app[OUTBOX_KEY]


def admin_of(request: web.Request) -> OwnerAdmin:
    return request.app[ADMIN_KEY]


def search_of(request: web.Request) -> SearchIndex:
    return request.app[SEARCH_KEY]


def hooks_of(request: web.Request) -> ConnectorHooks:
    return request.app[HOOKS_KEY]


def metrics_of(request: web.Request) -> Metrics:
    return request.app[METRICS_KEY]


def web_of(request: web.Request) -> WebSignIn:
    return request.app[WEB_KEY]


async def account_for(request: web.Request, action: Action) -> AccountRecord:
    """The account in the path, after checking the token's scope for ``action`` on it (404 when absent or
    another tenant's, before the scope check, so scopes reveal nothing)."""
    accounts = accounts_of(request)
    account_id = request.match_info["account_id"]
    record = await accounts.get(account_id)
    if record is None or record.tenant != accounts.tenant:
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
    record = await account_for(request, action)
    conversation_id = path_param(request, "conversation_id")
    if not await queries_of(request).conversation_exists(record.id, conversation_id):
        raise ApiProblem(
            404,
            "conversation_not_found",
            f"account {record.id!r} has no conversation {conversation_id!r}",
            hint="list the account's conversations with GET /v1/accounts/{account_id}/conversations; "
            + PATH_ID_HINT,
        )
    return record, conversation_id


def capabilities_of(
    accounts: AccountViews, record: AccountRecord, conversation_id: str | None = None
) -> Capabilities:
    connector = accounts.connector(record.id)
    if connector is not None:
        return (
            connector.conversation_capabilities(conversation_id)
            if conversation_id
            else connector.capabilities
        )
    if record.capabilities:
        return Capabilities.model_validate(dict(record.capabilities))
    cls = accounts.networks.get(record.network)
    return cls.capabilities if cls is not None else Capabilities()


def account_json(accounts: AccountViews, r: AccountRecord) -> dict[str, Any]:
    live = accounts.live_state(r.id)
    state = live if live is not None else r.state
    return {
        "id": r.id,
        "network": r.network,
        "remote_user_id": r.remote_user_id,
        "display_name": r.display_name,
        "state": state.value,
        "state_reason": r.state_reason,
        "user_id": r.user_id,
        "capabilities": capabilities_of(accounts, r).model_dump(mode="json"),
        "credentials_expire_at": r.credentials_expire_at.isoformat() if r.credentials_expire_at else None,
        "sync": accounts.progress(r.id),
    }


def json_ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps_bytes(data), status=status, content_type="application/json")
