"""The OpenAPI 3.1 document served at ``/openapi.json``, built from what each route module declares.

Every route module lists its operations in ``DOCS`` with ``op(...)``; ``document(modules)`` assembles them.
A test checks the document against the router: every registered route is documented and nothing documented
is missing from the router.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_PARAM = re.compile(r"{(\w+)}")
PROBLEM = {"$ref": "#/components/schemas/Problem"}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    scope: str | None = None
    query: tuple[str, ...] = ()
    body: str | None = None
    """``json`` or ``multipart`` (or ``json|multipart``)."""
    responses: dict[str, str] = field(default_factory=dict)


def op(
    method: str,
    path: str,
    summary: str,
    *,
    scope: str | None = None,
    query: Iterable[str] = (),
    body: str | None = None,
    ok: str = "200",
) -> Operation:
    return Operation(method.upper(), path, summary, scope, tuple(query), body, {ok: "success"})


def _operation(o: Operation) -> dict[str, Any]:
    params = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
        for p in _PARAM.findall(o.path)
    ]
    params += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}} for q in o.query]
    out: dict[str, Any] = {
        "summary": o.summary,
        "operationId": f"{o.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', o.path.lower()).strip('_')}",
        "parameters": params,
        "responses": {
            **{code: {"description": desc} for code, desc in o.responses.items()},
            "default": {
                "description": "a problem (RFC 9457)",
                "content": {"application/problem+json": {"schema": PROBLEM}},
            },
        },
    }
    if o.scope is None:
        out["security"] = []
    else:
        out["description"] = f"Needs the `{o.scope}` scope on the account concerned."
    if o.body:
        content: dict[str, Any] = {}
        if "json" in o.body:
            content["application/json"] = {"schema": {"type": "object"}}
        if "multipart" in o.body:
            content["multipart/form-data"] = {"schema": {"type": "object"}}
        out["requestBody"] = {"required": True, "content": content}
    return out


def document(operations: Iterable[Operation], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for o in operations:
        paths.setdefault(o.path, {})[o.method.lower()] = _operation(o)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "msgr-bridge API",
            "version": version,
            "description": "Accounts, conversations, messages, events and share links of a msgr-bridge.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "code", "detail"],
                    "properties": {k: {"type": "string"} for k in ("type", "title", "code", "detail", "hint")}
                    | {"status": {"type": "integer"}, "errors": {"type": "array"}},
                }
            },
        },
        "security": [{"bearer": []}],
    }
