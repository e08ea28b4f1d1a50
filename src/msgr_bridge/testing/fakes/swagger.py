"""A small Swagger 2.0 checker for wire-level fakes: is this request one the published API describes?

    api = SwaggerSpec.load(path_to_swagger_json)
    op = api.operation("POST", "/v2/send")           # None: the API has no such path or method
    problems = api.check_request(op, query, body)    # unknown/missing/mistyped parameters and body fields
    problems = api.check_value(schema, value, "x")  # any value against a schema (responses, envelopes)

It knows what the fakes need: paths with ``{templates}``, query parameters, one JSON body parameter, and
schemas made of ``type``/``properties``/``required``/``items``/``enum``/``additionalProperties``/``$ref``.
An object property the description does not list is a problem (the fakes refuse unknown fields, so a typo
in a connector fails its test instead of being ignored by the real server).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    template: str
    spec: Mapping[str, Any]
    path_params: Mapping[str, str]

    def parameters(self, where: str) -> list[Mapping[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p.get("in") == where]

    def response_schema(self, status: int) -> Mapping[str, Any] | None:
        response = self.spec.get("responses", {}).get(str(status))
        return None if response is None else response.get("schema")


class SwaggerSpec:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.definitions: Mapping[str, Any] = document.get("definitions", {})
        self._paths: list[tuple[re.Pattern[str], str, Mapping[str, Any]]] = []
        for template, methods in document.get("paths", {}).items():
            pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            self._paths.append((re.compile(f"^{pattern}$"), template, methods))
        # literal paths win over templated ones (``/v1/qrcodelink/raw`` before ``/v1/x/{id}``)
        self._paths.sort(key=lambda item: item[1].count("{"))

    @classmethod
    def load(cls, path: Path) -> SwaggerSpec:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def operation(self, method: str, path: str) -> Operation | None:
        for pattern, template, methods in self._paths:
            found = pattern.match(path)
            if found is not None:
                spec = methods.get(method.lower())
                if spec is None:
                    return None
                return Operation(method.upper(), template, spec, found.groupdict())
        return None

    def check_request(self, op: Operation, query: Mapping[str, str], body: Any) -> list[str]:
        problems: list[str] = []
        known = {p["name"]: p for p in op.parameters("query")}
        for name in query:
            if name not in known:
                problems.append(f"query parameter {name!r} is not in the API description of {op.template}")
        for name, param in known.items():
            if param.get("required") and name not in query:
                problems.append(f"query parameter {name!r} is required by {op.template}")
        bodies = op.parameters("body")
        if bodies:
            if body is None:
                if bodies[0].get("required"):
                    problems.append(f"{op.method} {op.template} needs a JSON body")
            else:
                problems += self.check_value(bodies[0].get("schema", {}), body, "body")
        elif body is not None:
            problems.append(f"{op.method} {op.template} takes no body")
        return problems

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema:
            schema = self.definitions[str(schema["$ref"]).rsplit("/", 1)[-1]]
        return schema

    def check_value(self, schema: Mapping[str, Any], value: Any, where: str) -> list[str]:
        schema = self.resolve(schema)
        kind = schema.get("type")
        if kind is None and "properties" in schema:
            kind = "object"
        if kind is None:
            return []
        wanted = _TYPES.get(str(kind), (object,))
        if not isinstance(value, wanted) or (kind in ("integer", "number") and isinstance(value, bool)):
            return [f"{where}: expected {kind}, got {type(value).__name__}"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{where}: {value!r} is not one of {schema['enum']}"]
        if isinstance(value, list):
            items = schema.get("items", {})
            return [p for i, item in enumerate(value) for p in self.check_value(items, item, f"{where}[{i}]")]
        if isinstance(value, dict):
            return self._check_object(schema, value, where)
        return []

    def _check_object(self, schema: Mapping[str, Any], value: Mapping[str, Any], where: str) -> list[str]:
        problems = [
            f"{where}: required field {k!r} is missing" for k in schema.get("required", []) if k not in value
        ]
        properties: Mapping[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                problems += self.check_value(properties[key], item, f"{where}.{key}")
            elif isinstance(extra, dict):
                problems += self.check_value(extra, item, f"{where}.{key}")
            elif properties or extra is False:
                problems.append(f"{where}: unknown field {key!r}")
        return problems
