"""``/openapi.json`` documents every JSON request body from its model: each documented field is accepted and
an undocumented one is refused, route by route, against a running bridge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from msgr_bridge_loopback import LoopbackNetwork

from .conftest import Api, Start

REFUSED = {"unknown_field", "validation_failed", "malformed_json"}


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def sample(schema: dict[str, Any], doc: dict[str, Any]) -> Any:
    """A valid value for ``schema``: its example or default when it has one, else one made from its type,
    with every property of an object filled in."""
    schema = _resolve(schema, doc)
    if "examples" in schema and schema.get("type") != "object":
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return sample(options[0], doc)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        example = (schema.get("examples") or [{}])[0]
        return {
            name: example[name] if name in example else sample(sub, doc)
            for name, sub in schema.get("properties", {}).items()
        }
    if schema.get("format") == "date-time":
        return (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    minimum = schema.get("exclusiveMinimum", schema.get("minimum", 0))
    made = {
        "string": "x" * max(1, schema.get("minLength", 1)),
        "boolean": True,
        "integer": int(minimum) + 1,
        "number": float(minimum) + 1,
        "array": [],
    }
    return made.get(str(kind), "x")


async def _paths(api: Api, net: LoopbackNetwork) -> dict[str, str]:
    """Real values for the path parameters of the documented routes."""
    account = await api.link("alice", "pw-alice")
    net.post("g", "bob", "hi alice")
    page: dict[str, Any] = {"messages": []}
    while not page["messages"]:
        _, page = await api.call("GET", f"/v1/accounts/{account}/conversations/g/messages")
    _, flow = await api.call(
        "POST", "/v1/links", json={"network": "loopback", "settings": {"network": "api"}}
    )
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    _, scheduled = await api.call(
        "POST", f"/v1/accounts/{account}/conversations/g/messages", json={"text": "x", "send_at": later}
    )
    return {
        "outbox_id": scheduled["outbox_id"],
        "account_id": account,
        "conversation_id": "g",
        "message_id": page["messages"][0]["id"],
        "flow_id": flow["id"],
    }


async def test_every_documented_body_field_is_accepted_and_an_undocumented_one_refused(
    start: Start, net: LoopbackNetwork
) -> None:
    async with start() as api:
        _, doc = await api.call("GET", "/openapi.json")
        params = await _paths(api, net)
        checked = []
        for path, operations in doc["paths"].items():
            for method, operation in operations.items():
                media = operation.get("requestBody", {}).get("content", {}).get("application/json")
                if media is None:
                    continue
                schema = _resolve(media["schema"], doc)
                assert schema.get("type") == "object" and schema.get("properties"), (method, path)
                assert schema.get("additionalProperties") is False, (method, path)
                assert "example" in media, f"{method} {path} has no example"
                url = path.format(**params)
                body = sample(schema, doc)
                assert set(body) == set(schema["properties"])
                status, answer = await api.call(method.upper(), url, json=body)
                problem = answer if isinstance(answer, dict) else {}
                assert problem.get("code") not in REFUSED, (method, path, body, answer)
                status, answer = await api.call(method.upper(), url, json={**body, "undocumented": 1})
                assert (status, answer["code"]) == (400, "unknown_field"), (method, path, answer)
                assert answer["errors"] == [{"field": "undocumented", "message": "unknown field"}]
                checked.append((method, path))
        assert len(checked) >= 8, checked


async def test_bodies_are_real_schemas_with_examples(start: Start) -> None:
    async with start() as api:
        _, doc = await api.call("GET", "/openapi.json")
        send = doc["paths"]["/v1/accounts/{account_id}/conversations/{conversation_id}/messages"]["post"]
        media = send["requestBody"]["content"]["application/json"]
        schema = _resolve(media["schema"], doc)
        assert {"text", "reply_to", "attachments", "idempotency_key"} <= set(schema["properties"])
        attachment = _resolve(schema["properties"]["attachments"]["items"], doc)
        assert "url" in attachment["properties"]
        assert media["example"]["text"]
        multipart = send["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert set(multipart["properties"]) == {"message", "file"}
