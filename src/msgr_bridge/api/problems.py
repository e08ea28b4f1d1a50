"""RFC 9457 problem details: every error the API returns is ``application/problem+json`` with a stable code.

A body looks like::

    {"type": "https://msgr-bridge.dev/problems/not_supported", "title": "Not supported",
     "status": 422, "code": "not_supported", "detail": "edits is not supported on irc",
     "capability": "edits", "hint": "..."}

``code`` never changes meaning between releases (clients switch on it; ``title`` and ``detail`` are for
people). Validation problems carry ``errors``: one entry per field, each naming the field (``field``, a
dotted path) and what is wrong with it. ``problem_middleware`` maps every ``msgr_bridge.errors`` family and
aiohttp's own HTTP errors; an unexpected exception becomes a 500 whose detail names no internals.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from ..errors import (
    AttachmentRefused,
    BridgeError,
    CredentialError,
    DatabaseError,
    ImpersonationDenied,
    NotSupported,
    OutboundRejected,
    PolicyDenied,
    TokenRejected,
    TransientError,
)
from ..flags import FeatureDisabled
from ..store.outage import is_outage

log = structlog.get_logger("msgr_bridge.api")

PROBLEM_BASE = "https://msgr-bridge.dev/problems/"
CONTENT_TYPE = "application/problem+json"


class ApiProblem(Exception):
    """Raise from a handler to answer with a problem (``extra`` keys are added to the body)."""

    def __init__(self, status: int, code: str, detail: str, *, hint: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.hint, self.extra = status, code, detail, hint, extra


def problem_response(
    status: int, code: str, detail: str, *, hint: str | None = None, **extra: Any
) -> web.Response:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if hint:
        body["hint"] = hint
    body.update(extra)
    return web.Response(status=status, text=json.dumps(body), content_type=CONTENT_TYPE)


def validation_problem(errors: list[dict[str, str]], detail: str | None = None) -> ApiProblem:
    """A 422 naming each bad field: ``errors=[{"field": "text", "message": "..."}]``."""
    first = errors[0] if errors else {"field": "", "message": "invalid"}
    text = detail or f"{first['field'] or 'body'}: {first['message']}"
    return ApiProblem(422, "validation_failed", text, errors=errors)


def from_pydantic(exc: ValidationError, *, prefix: str = "") -> ApiProblem:
    """Field-level errors from pydantic: unknown fields get their own code (``unknown_field``)."""
    errors = []
    unknown = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        if err["type"] == "extra_forbidden":
            unknown.append(field)
        msg = str(err.get("ctx", {}).get("error", "")) if err["type"] == "value_error" else err["msg"]
        errors.append({"field": field, "message": msg or err["msg"]})
    if unknown:
        return ApiProblem(
            400,
            "unknown_field",
            f"unknown field(s): {', '.join(unknown)}",
            hint="remove them; see /openapi.json for the accepted fields",
            errors=[{"field": f, "message": "unknown field"} for f in unknown],
        )
    return validation_problem(errors)


def _for_bridge_error(exc: BridgeError) -> web.Response:
    extra: dict[str, Any] = {}
    status = 400
    if isinstance(exc, NotSupported):
        status, extra = 422, {"capability": exc.capability, "network": exc.network}
    elif isinstance(exc, PolicyDenied):
        status, extra = 403, {"reason": exc.reason, "rule": exc.rule}
    elif isinstance(exc, ImpersonationDenied):
        status = 403
    elif isinstance(exc, OutboundRejected | AttachmentRefused):
        status = 422
    elif isinstance(exc, FeatureDisabled):
        status, extra = 422, {"flag": exc.flag}
    elif isinstance(exc, TokenRejected):
        status = 401
    elif isinstance(exc, TransientError | DatabaseError | CredentialError):
        status = 503
    if exc.code == "body_too_large":
        status = 413
    elif exc.code in NOT_FOUND_CODES:
        status = 404
    elif exc.code in GONE_CODES:
        status = 410
    elif exc.code in CONFLICT_CODES:
        status = 409
    return problem_response(status, exc.code, exc.message, hint=exc.hint, **extra)


NOT_FOUND_CODES = frozenset(
    {"link_flow_not_found", "account_not_found", "share_link_not_found", "outbox_entry_not_found"}
)
CONFLICT_CODES = frozenset({"not_scheduled", "outbox_state"})
GONE_CODES = frozenset({"share_link_expired", "share_link_revoked", "share_link_exhausted"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PATH_ID_HINT = (
    "use the conversation's path_id (from GET /v1/accounts/{account_id}/conversations) in the path; an id "
    "with '/', '#', '?', '%' or spaces must be given in that form (or percent-encoded)"
)

_HTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into a problem response; one bad request never affects another."""
    try:
        return await handler(request)
    except ApiProblem as p:
        return problem_response(p.status, p.code, p.detail, hint=p.hint, **p.extra)
    except ValidationError as exc:
        vp = from_pydantic(exc)
        return problem_response(vp.status, vp.code, vp.detail, hint=vp.hint, **vp.extra)
    except BridgeError as exc:
        return _for_bridge_error(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app._client_max_size
        return problem_response(
            413,
            "body_too_large",
            f"the request body is larger than the limit of {limit} bytes",
            hint="send a smaller body; the limit is [api] max_body_bytes",
            limit=limit,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
        hint = PATH_ID_HINT if exc.status == 404 and "/conversations/" in request.path else None
        return problem_response(exc.status, code, exc.reason, hint=hint)
    except HttpProcessingError as exc:  # a malformed body part (multipart headers, chunking)
        return problem_response(
            400,
            "malformed_body",
            f"the request body could not be parsed: {exc.message}",
            hint="send a well-formed multipart/form-data or JSON body",
        )
    except (ConnectionResetError, TimeoutError):
        raise
    except SQLAlchemyError as exc:
        if not is_outage(exc):
            log.exception("api.unhandled", path=request.path, error=type(exc).__name__)
            return _internal_error()
        # the database is unreachable for now: a clear 503 the client retries, not a 500 with a traceback
        unavailable = problem_response(
            503,
            "database_unavailable",
            "the bridge's database cannot be reached right now",
            hint="retry shortly; /ready says when the bridge is back",
        )
        unavailable.headers["Retry-After"] = "5"
        return unavailable
    except Exception as exc:
        log.exception("api.unhandled", path=request.path, error=type(exc).__name__)
        return _internal_error()


def _internal_error() -> web.Response:
    return problem_response(
        500,
        "internal_error",
        "the bridge failed to handle this request",
        hint="the bridge log has the details (event api.unhandled)",
    )
