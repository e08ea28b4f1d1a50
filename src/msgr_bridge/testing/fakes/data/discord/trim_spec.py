"""Regenerate ``openapi-subset.json`` from Discord's published OpenAPI description.

Discord publishes its HTTP API as OpenAPI 3.1 in github.com/discord/discord-api-spec (``specs/openapi.json``,
MIT licence, copied here as ``LICENSE``). The fake checks every request it is sent against the operations
the connector uses; this script keeps exactly those operations, their parameters and request bodies, and
every component schema those reach (responses are dropped: the fake builds its answers itself). Run::

    python src/msgr_bridge/testing/fakes/data/discord/trim_spec.py path/to/openapi.json

and commit the result together with the upstream commit it came from (``SOURCE``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

OPERATIONS: dict[str, tuple[str, ...]] = {
    "/users/@me": ("get",),
    "/gateway/bot": ("get",),
    "/channels/{channel_id}": ("get",),
    "/channels/{channel_id}/messages": ("get", "post"),
    "/channels/{channel_id}/messages/{message_id}": ("get", "patch", "delete"),
    "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me": ("put", "delete"),
    "/channels/{channel_id}/typing": ("post",),
    "/channels/{channel_id}/webhooks": ("get", "post"),
    "/webhooks/{webhook_id}/{webhook_token}": ("post",),
    "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}": ("patch", "delete"),
}


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def trim(spec: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, methods in OPERATIONS.items():
        item = spec["paths"][path]
        kept: dict[str, Any] = {"parameters": item.get("parameters", [])}
        for method in methods:
            op = item[method]
            kept[method] = {
                key: op[key] for key in ("operationId", "parameters", "requestBody", "security") if key in op
            }
        paths[path] = kept
    schemas = spec["components"]["schemas"]
    wanted: set[str] = set()
    _refs(paths, wanted)
    done: set[str] = set()
    while wanted - done:
        name = (wanted - done).pop()
        done.add(name)
        _refs(schemas[name], wanted)
    return {
        "openapi": spec["openapi"],
        "info": {
            **spec["info"],
            "description": "Trimmed by trim_spec.py: only the operations the fake serves.",
        },
        "servers": spec.get("servers", []),
        "paths": paths,
        "components": {"schemas": {name: schemas[name] for name in sorted(done)}},
    }


if __name__ == "__main__":
    source = json.loads(Path(sys.argv[1]).read_text())
    out = HERE / "openapi-subset.json"
    out.write_text(json.dumps(trim(source), indent=1, sort_keys=True) + "\n")
    print(f"{out}: {out.stat().st_size} bytes")
