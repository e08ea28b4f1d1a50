"""Write the subset of Microsoft Graph v1.0's published description that the Teams fake checks against.

Usage: python scripts/teams_graph_subset.py CSDL_XML OUT_JSON

CSDL_XML is ``clean_v10_metadata/cleanMetadata.xml`` of github.com/microsoftgraph/msgraph-metadata (MIT):
the metadata Graph publishes and its ``openapi/v1.0/openapi.yaml`` is generated from (that YAML is too large
to fetch here). The output is an OpenAPI 3.0 document with only the paths the Teams connector calls, and the
JSON schemas of the request bodies, converted from the CSDL types they use (inheritance flattened, enums as
string enums, ``@odata.*`` and ``@microsoft.graph.*`` instance annotations allowed, every other unknown
property refused as Graph does). The PUT of a file's content has no JSON body (the fake reads it as bytes).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from typing import Any

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
NS = "microsoft.graph"

# (method, path, body): body is None, ("type", name) for an entity/complex type, or ("action", name, binding).
PATHS: list[tuple[str, str, Any]] = [
    ("get", "/me", None),
    ("get", "/me/chats", None),
    ("get", "/chats/{chat-id}", None),
    ("get", "/chats/{chat-id}/members", None),
    ("get", "/chats/{chat-id}/messages", None),
    ("post", "/chats/{chat-id}/messages", ("type", "chatMessage")),
    ("get", "/chats/{chat-id}/messages/{chatMessage-id}", None),
    ("patch", "/chats/{chat-id}/messages/{chatMessage-id}", ("type", "chatMessage")),
    (
        "post",
        "/chats/{chat-id}/messages/{chatMessage-id}/softDelete",
        ("action", "softDelete", "chatMessage"),
    ),
    (
        "post",
        "/chats/{chat-id}/messages/{chatMessage-id}/undoSoftDelete",
        ("action", "undoSoftDelete", "chatMessage"),
    ),
    (
        "post",
        "/chats/{chat-id}/messages/{chatMessage-id}/setReaction",
        ("action", "setReaction", "chatMessage"),
    ),
    (
        "post",
        "/chats/{chat-id}/messages/{chatMessage-id}/unsetReaction",
        ("action", "unsetReaction", "chatMessage"),
    ),
    ("post", "/chats/{chat-id}/markChatReadForUser", ("action", "markChatReadForUser", "chat")),
    ("get", "/me/joinedTeams", None),
    ("get", "/teams/{team-id}/channels", None),
    ("get", "/teams/{team-id}/channels/{channel-id}/members", None),
    ("get", "/teams/{team-id}/channels/{channel-id}/messages", None),
    ("post", "/teams/{team-id}/channels/{channel-id}/messages", ("type", "chatMessage")),
    ("get", "/teams/{team-id}/channels/{channel-id}/messages/delta", None),
    ("get", "/teams/{team-id}/channels/{channel-id}/messages/{chatMessage-id}/replies", None),
    (
        "post",
        "/teams/{team-id}/channels/{channel-id}/messages/{chatMessage-id}/replies",
        ("type", "chatMessage"),
    ),
    ("patch", "/teams/{team-id}/channels/{channel-id}/messages/{chatMessage-id}", ("type", "chatMessage")),
    (
        "post",
        "/teams/{team-id}/channels/{channel-id}/messages/{chatMessage-id}/softDelete",
        ("action", "softDelete", "chatMessage"),
    ),
    (
        "post",
        "/teams/{team-id}/channels/{channel-id}/messages/{chatMessage-id}/setReaction",
        ("action", "setReaction", "chatMessage"),
    ),
    (
        "post",
        "/teams/{team-id}/channels/{channel-id}/messages/{chatMessage-id}/unsetReaction",
        ("action", "unsetReaction", "chatMessage"),
    ),
    (
        "patch",
        "/teams/{team-id}/channels/{channel-id}/messages/{chatMessage-id}/replies/{chatMessage-id1}",
        ("type", "chatMessage"),
    ),
    *(
        (
            "post",
            f"/teams/{{team-id}}/channels/{{channel-id}}/messages/{{chatMessage-id}}/replies/{{chatMessage-id1}}/{a}",
            ("action", a, "chatMessage"),
        )
        for a in ("softDelete", "setReaction", "unsetReaction")
    ),
    # files sent: the sender's OneDrive (chats) or the channel's folder, then a reference attachment
    ("get", "/me/drive", None),
    ("get", "/me/drive/root/children", None),
    ("post", "/me/drive/root/children", ("type", "driveItem")),
    ("get", "/teams/{team-id}/channels/{channel-id}/filesFolder", None),
    ("post", "/drives/{drive-id}/items/{driveItem-id}/children", ("type", "driveItem")),
    ("put", "/drives/{drive-id}/items/{driveItem-id}/content", None),
    ("post", "/drives/{drive-id}/items/{driveItem-id}/invite", ("action", "invite", "driveItem")),
    ("post", "/subscriptions", ("type", "subscription")),
    ("patch", "/subscriptions/{subscription-id}", ("type", "subscription")),
    ("delete", "/subscriptions/{subscription-id}", None),
]
QUERY = {"get": ["$top", "$skip", "$filter", "$orderby", "$select", "$expand", "$skiptoken", "$deltatoken"]}
EDM_TYPES: dict[str, dict[str, Any]] = {
    "Edm.String": {"type": "string"},
    "Edm.Boolean": {"type": "boolean"},
    "Edm.Byte": {"type": "integer"},
    "Edm.SByte": {"type": "integer"},
    "Edm.Int16": {"type": "integer"},
    "Edm.Int32": {"type": "integer"},
    "Edm.Int64": {"type": "integer"},
    "Edm.Double": {"type": "number"},
    "Edm.Single": {"type": "number"},
    "Edm.Decimal": {"type": "number"},
    "Edm.Date": {"type": "string", "format": "date"},
    "Edm.TimeOfDay": {"type": "string"},
    "Edm.Duration": {"type": "string"},
    "Edm.DateTimeOffset": {"type": "string", "format": "date-time"},
    "Edm.Guid": {"type": "string"},
    "Edm.Binary": {"type": "string"},
    "Edm.Stream": {"type": "string"},
    "Edm.Untyped": {},
}


def main(csdl_path: str, out_path: str) -> None:
    root = ET.parse(csdl_path).getroot()
    schema = next(s for s in root.iter(f"{EDM}Schema") if s.get("Namespace") == NS)
    types = {el.get("Name"): el for el in schema if el.tag in (f"{EDM}EntityType", f"{EDM}ComplexType")}
    enums = {el.get("Name"): el for el in schema if el.tag == f"{EDM}EnumType"}
    actions = {
        (el.get("Name"), el.find(f"{EDM}Parameter").get("Type")): el  # type: ignore[union-attr]
        for el in schema
        if el.tag == f"{EDM}Action" and el.get("IsBound") == "true"
    }
    components: dict[str, Any] = {}

    def ref(type_name: str) -> dict[str, Any]:
        if type_name.startswith("Collection("):
            return {"type": "array", "items": ref(type_name[len("Collection(") : -1])}
        if type_name in EDM_TYPES:
            return dict(EDM_TYPES[type_name])
        name = type_name.removeprefix("graph.")
        if name not in components:
            components[name] = {}
            components[name] = build(name)
        return {"$ref": f"#/components/schemas/{name}"}

    def build(name: str) -> dict[str, Any]:
        if name in enums:
            return {"type": "string", "enum": [m.get("Name") for m in enums[name].iter(f"{EDM}Member")]}
        props: dict[str, Any] = {}
        chain, el = [], types[name]
        while el is not None:
            chain.append(el)
            base = el.get("BaseType")
            el = types[base.removeprefix("graph.")] if base else None
        for el in reversed(chain):
            for prop in el.findall(f"{EDM}Property") + el.findall(f"{EDM}NavigationProperty"):
                if prop.tag == f"{EDM}NavigationProperty":
                    continue  # navigation properties are not written through these bodies
                prop_schema = ref(prop.get("Type", ""))
                if prop.get("Nullable") != "false":
                    prop_schema = {"anyOf": [prop_schema, {"type": "null"}]}
                props[prop.get("Name", "")] = prop_schema
        open_type = any(el.get("OpenType") == "true" for el in chain)
        return {
            "type": "object",
            "properties": props,
            "patternProperties": {"^@(odata|microsoft\\.graph)\\.": {}},
            "additionalProperties": open_type,
        }

    paths: dict[str, Any] = {}
    for method, path, body in PATHS:
        op: dict[str, Any] = {"operationId": f"{method} {path}"}
        params = [
            {"name": p[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for p in path.split("/")
            if p.startswith("{")
        ]
        params += [{"name": q, "in": "query", "schema": {"type": "string"}} for q in QUERY.get(method, [])]
        op["parameters"] = params
        if body is not None and body[0] == "type":
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body[1])}}}
        elif body is not None:
            action = actions[(body[1], f"graph.{body[2]}")]
            props = {p.get("Name"): ref(p.get("Type", "")) for p in action.findall(f"{EDM}Parameter")[1:]}
            op["requestBody"] = {
                "required": bool(props),
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "properties": props, "additionalProperties": False}
                    }
                },
            }
        paths.setdefault(path, {})[method] = op
    document = {
        "openapi": "3.0.4",
        "info": {
            "title": "Microsoft Graph v1.0: the subset msgr-bridge's Teams fake checks",
            "version": "v1.0",
            "x-source": "microsoftgraph/msgraph-metadata clean_v10_metadata/cleanMetadata.xml (MIT)",
        },
        "servers": [{"url": "https://graph.microsoft.com/v1.0/"}],
        "paths": paths,
        "components": {"schemas": dict(sorted(components.items()))},
    }
    with open(out_path, "w") as out:
        json.dump(document, out, indent=1, sort_keys=False)
        out.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
