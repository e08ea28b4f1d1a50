"""Checks requests against Discord's published OpenAPI description (the vendored subset in ``data/discord``).

``SpecChecker.check`` finds the operation for a method and path, and refuses what the real API would
refuse or what the description does not know: an unknown route or method, an unknown query parameter, a
path or query value of the wrong shape, a JSON body that fails its schema, and any body field the schema
does not name (Discord silently ignores some unknown fields; a fake that refuses them catches typos that the
real service would turn into a quietly missing feature). Multipart bodies are checked through their
``payload_json`` part plus the ``files[n]`` names, the way Discord reads them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent / "data" / "discord" / "openapi-subset.json"
BASE_URI = "urn:discord-openapi"
FILE_FIELD = re.compile(r"^files\[(\d)\]$")


class SpecViolation(Exception):
    """A request the published API description refuses; ``status`` is what the fake answers."""

    def __init__(self, status: int, message: str, errors: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


@dataclass(frozen=True, slots=True)
class Operation:
    template: str
    method: str
    pattern: re.Pattern[str]
    params: dict[str, dict[str, Any]]
    """Parameter name -> {"in": "path"|"query", "schema": ...}."""
    body_schema: dict[str, Any] | None
    bot_auth_required: bool


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[a-z_]+\})", template)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


class SpecChecker:
    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.spec: dict[str, Any] = json.loads(path.read_text())
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(BASE_URI, resource)
        self.operations: list[Operation] = []
        self._validators: dict[int, Draft202012Validator] = {}
        for template, item in self.spec["paths"].items():
            for method, op in item.items():
                if method == "parameters":
                    continue
                params = {p["name"]: p for p in [*item.get("parameters", []), *op.get("parameters", [])]}
                body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
                security = op.get("security", [])
                self.operations.append(
                    Operation(template, method.upper(), _pattern(template), params, body, {} not in security)
                )

    def _validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        """A validator for one schema of the document; its ``#/components/...`` references resolve because
        the components travel along (JSON Schema ignores the unknown ``components`` keyword)."""
        key = id(schema)
        if key not in self._validators:
            wrapped = {**schema, "components": self.spec["components"]}
            self._validators[key] = Draft202012Validator(wrapped, registry=self.registry)
        return self._validators[key]

    def _resolve(self, schema: Any) -> Any:
        while isinstance(schema, dict) and "$ref" in schema:
            schema = self.registry.resolver(BASE_URI).lookup(schema["$ref"]).contents
        return schema

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]]:
        allowed = []
        for op in self.operations:
            m = op.pattern.match(path)
            if m is None:
                continue
            if op.method == method:
                return op, m.groupdict()
            allowed.append(op.method)
        if allowed:
            raise SpecViolation(405, f"405: Method Not Allowed ({method} {path}; allowed: {sorted(allowed)})")
        raise SpecViolation(404, f"404: Not Found (no operation {method} {path} in the API description)")

    def _value_errors(self, name: str, schema: dict[str, Any], raw: str) -> list[str]:
        target = self._resolve(schema)
        kind = target.get("type") if isinstance(target, dict) else None
        value: Any = raw
        if kind == "integer":
            try:
                value = int(raw)
            except ValueError:
                return [f"{name}: {raw!r} is not an integer"]
        elif kind == "boolean":
            if raw.lower() not in ("true", "false"):
                return [f"{name}: {raw!r} is not a boolean"]
            value = raw.lower() == "true"
        return [f"{name}: {e.message}" for e in self._validator(schema).iter_errors(value)]

    def unknown_fields(self, schema: Any, value: Any, where: str = "") -> list[str]:
        """Names in ``value`` that no branch of ``schema`` declares (recursively)."""
        schema = self._resolve(schema)
        if not isinstance(schema, dict):
            return []
        branches = [self._resolve(b) for key in ("allOf", "anyOf", "oneOf") for b in schema.get(key, [])]
        props: dict[str, Any] = dict(schema.get("properties", {}))
        items = schema.get("items")
        for branch in branches:
            if isinstance(branch, dict):
                props.update(branch.get("properties", {}))
                items = items or branch.get("items")
        found: list[str] = []
        if isinstance(value, dict) and props:
            for key, item in value.items():
                if key not in props:
                    found.append(f"{where}{key}")
                else:
                    found += self.unknown_fields(props[key], item, f"{where}{key}.")
        elif isinstance(value, list) and items is not None:
            for index, item in enumerate(value):
                found += self.unknown_fields(items, item, f"{where}{index}.")
        return found

    def check(
        self, method: str, path: str, query: dict[str, str], body: Any = None, files: tuple[str, ...] = ()
    ) -> tuple[Operation, dict[str, str]]:
        """The operation and path parameters for a request, or ``SpecViolation``."""
        op, path_params = self.match(method, path)
        errors: list[str] = []
        for name, raw in path_params.items():
            errors += self._value_errors(name, op.params[name]["schema"], raw)
        for name, raw in query.items():
            declared = op.params.get(name)
            if declared is None or declared.get("in") != "query":
                errors.append(f"{name}: unknown query parameter")
            else:
                errors += self._value_errors(name, declared["schema"], raw)
        if op.body_schema is None and (body is not None or files):
            errors.append(f"{method} {op.template} takes no body")
        elif op.body_schema is not None:
            if body is None and not files:
                body = {}
            errors += [
                f"{'.'.join(map(str, e.absolute_path)) or 'body'}: {e.message}"
                for e in self._validator(op.body_schema).iter_errors(body)
            ]
            errors += [f"{name}: unknown field" for name in self.unknown_fields(op.body_schema, body)]
            errors += [f"{name}: unknown multipart part" for name in files if not FILE_FIELD.match(name)]
        if errors:
            raise SpecViolation(400, "Invalid Form Body", sorted(errors))
        return op, path_params
