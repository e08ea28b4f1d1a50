"""The OpenAPI 3.1 document served at ``/openapi.json``, built from what each route module declares.

Every route module lists its operations in ``DOCS`` with ``op(...)``; ``document(modules)`` assembles them.
A test checks the document against the router: every registered route is documented and nothing documented
is missing from the router. A JSON body is documented by its pydantic model (``op(..., model=SendBody)``):
its JSON Schema (``additionalProperties: false``: unknown fields are refused) and its examples (the model's
``json_schema_extra={"examples": [...]}``) go under ``components/schemas``; a test posts every documented
field of every body and one undocumented field to each route.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

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
    model: type[BaseModel] | None = None
    """The JSON body's model (its schema and examples are documented)."""
    multipart: dict[str, Any] | None = None
    """The multipart body's schema (its parts), when it has one."""
    description: str | None = None


def op(
    method: str,
    path: str,
    summary: str,
    *,
    scope: str | None = None,
    query: Iterable[str] = (),
    body: str | None = None,
    ok: str = "200",
    model: type[BaseModel] | None = None,
    multipart: dict[str, Any] | None = None,
    description: str | None = None,
) -> Operation:
    if model is not None and body is None:
        body = "json"
    return Operation(
        method.upper(),
        path,
        summary,
        scope,
        tuple(query),
        body,
        {ok: "success"},
        model,
        multipart,
        description,
    )


def model_examples(model: type[BaseModel]) -> list[Any]:
    """The examples a body model declares (``json_schema_extra={"examples": [...]}``)."""
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return list(examples) if isinstance(examples, list) else []


def model_schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """A ``$ref`` to ``model``'s JSON Schema, added (with the models it uses) to ``schemas``."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(o: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
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
    notes = [o.description] if o.description else []
    if o.scope is None:
        out["security"] = []
    else:
        notes.append(f"Needs the `{o.scope}` scope on the account concerned.")
    if notes:
        out["description"] = " ".join(notes)
    if o.body:
        content: dict[str, Any] = {}
        if "json" in o.body:
            media: dict[str, Any] = {"schema": {"type": "object"}}
            if o.model is not None:
                media["schema"] = model_schema(o.model, schemas)
                examples = model_examples(o.model)
                if examples:
                    media["example"] = examples[0]
            content["application/json"] = media
        if "multipart" in o.body:
            content["multipart/form-data"] = {"schema": o.multipart or {"type": "object"}}
        out["requestBody"] = {"required": True, "content": content}
    return out


def document(operations: Iterable[Operation], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for o in operations:
        paths.setdefault(o.path, {})[o.method.lower()] = _operation(o, schemas)
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
                },
                **dict(sorted(schemas.items())),
            },
        },
        "security": [{"bearer": []}],
    }
