"""Drives in the Teams fake: each user's OneDrive and each team's SharePoint folder per channel, enough for
sending a file into a chat or channel the way Graph asks (create the item, PUT its bytes, share it, then
refer to it from the message). Items are ``driveItem`` shapes (``id``, ``name``, ``eTag`` with the item's
GUID, ``webUrl``, ``size``, ``file``/``folder``, ``parentReference``); the bytes are kept in ``content``."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .teams_graph import graph_error

if TYPE_CHECKING:
    from .teams import FakeTeams

MAX_UPLOAD = 64 * 1024 * 1024
"""What the fake keeps of one file (Graph's simple upload takes up to 250 MB)."""


class Drives:
    def __init__(self, fake: FakeTeams) -> None:
        self.fake = fake
        self.drives: dict[str, dict[str, Any]] = {}
        """drive id -> {"owner": user or team id, "items": {item id: driveItem}}"""

    def handlers(self, ids: str) -> list[tuple[str, str, Any]]:
        item = rf"/drives/{ids}/items/{ids}"
        return [
            ("GET", "/me/drive", self.my_drive),
            ("GET", "/me/drive/root/children", self.root_children),
            ("POST", "/me/drive/root/children", self.create_in_root),
            ("GET", rf"/teams/{ids}/channels/{ids}/filesFolder", self.files_folder),
            ("POST", item + "/children", self.create),
            ("PUT", item + "/content", self.put_content),
            ("POST", item + "/invite", self.invite),
        ]

    # --- the model -----------------------------------------------------------------------------------

    def drive_of(self, owner: str) -> str:
        for drive_id, drive in self.drives.items():
            if drive["owner"] == owner:
                return drive_id
        drive_id = "b!" + uuid.uuid5(uuid.NAMESPACE_URL, owner).hex
        root = self._item(drive_id, "root", None, folder=True)
        self.drives[drive_id] = {"owner": owner, "items": {root["id"]: root}, "root": root["id"]}
        return drive_id

    def _item(self, drive_id: str, name: str, parent: str | None, *, folder: bool) -> dict[str, Any]:
        item_id = "01" + uuid.uuid4().hex.upper()[:32]
        guid = str(uuid.uuid4()).upper()
        item: dict[str, Any] = {
            "id": item_id,
            "name": name,
            "eTag": f'"{{{guid}}},1"',
            "cTag": f'"c:{{{guid}}},1"',
            "size": 0,
            "webUrl": f"https://contoso.sharepoint.example/{drive_id[:10]}/{name}",
            "createdDateTime": self.fake.now(),
            "lastModifiedDateTime": self.fake.now(),
            "parentReference": {"driveId": drive_id, "id": parent},
            "content": b"",
            "shared_with": [],
        }
        item["folder" if folder else "file"] = {"childCount": 0} if folder else {"mimeType": None}
        return item

    def public(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in ("content", "shared_with")}

    def _allowed(self, user: str, drive_id: str) -> dict[str, Any] | None:
        drive = self.drives.get(drive_id)
        if drive is None:
            return None
        owner = drive["owner"]
        team = self.fake.teams.get(owner)
        return drive if owner == user or (team is not None and user in team["members"]) else None

    def _create(self, drive_id: str, parent_id: str, body: Any) -> web.Response:
        drive = self.drives[drive_id]
        parent = drive["items"].get(parent_id)
        name = (body or {}).get("name")
        if parent is None or "folder" not in parent:
            return graph_error(404, "itemNotFound", "The resource could not be found.")
        if not isinstance(name, str) or not name or "/" in name:
            return graph_error(400, "invalidRequest", "A valid name is required.")
        siblings = {i["name"] for i in drive["items"].values() if i["parentReference"]["id"] == parent_id}
        if name in siblings:
            if (body or {}).get("@microsoft.graph.conflictBehavior") != "rename":
                return graph_error(409, "nameAlreadyExists", "The specified item name already exists.")
            stem, dot, ext = name.rpartition(".")
            base, ext = (stem, dot + ext) if stem else (name, "")
            name = next(f"{base} {n}{ext}" for n in range(1, 10_000) if f"{base} {n}{ext}" not in siblings)
        item = self._item(drive_id, name, parent_id, folder="folder" in body)
        drive["items"][item["id"]] = item
        return web.json_response(self.public(item), status=201)

    # --- handlers ------------------------------------------------------------------------------------

    async def my_drive(self, request: web.Request, user: str, m: re.Match[str], body: Any) -> web.Response:
        drive_id = self.drive_of(user)
        return web.json_response({"id": drive_id, "driveType": "business", "owner": {"user": {"id": user}}})

    async def root_children(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.Response:
        drive = self.drives[self.drive_of(user)]
        items = [i for i in drive["items"].values() if i["parentReference"]["id"] == drive["root"]]
        flt = re.fullmatch(r"name eq '([^']*)'", request.query.get("$filter", "").strip())
        if "$filter" in request.query and flt is None:
            return graph_error(400, "invalidRequest", "Only name eq '...' is supported by this fake.")
        if flt is not None:
            items = [i for i in items if i["name"] == flt.group(1)]
        return web.json_response({"value": [self.public(i) for i in items]})

    async def create_in_root(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.Response:
        drive_id = self.drive_of(user)
        return self._create(drive_id, self.drives[drive_id]["root"], body)

    async def files_folder(
        self, request: web.Request, user: str, m: re.Match[str], body: Any
    ) -> web.Response:
        team = self.fake.teams.get(m.group(1))
        if team is None or user not in team["members"] or m.group(2) not in team["channels"]:
            return graph_error(404, "NotFound", "Team or channel not found.")
        drive_id = self.drive_of(m.group(1))
        drive = self.drives[drive_id]
        name = team["channels"][m.group(2)]["displayName"]
        folder = next(
            (
                i
                for i in drive["items"].values()
                if i["name"] == name and i["parentReference"]["id"] == drive["root"]
            ),
            None,
        )
        if folder is None:
            folder = self._item(drive_id, name, drive["root"], folder=True)
            drive["items"][folder["id"]] = folder
        return web.json_response(self.public(folder))

    async def create(self, request: web.Request, user: str, m: re.Match[str], body: Any) -> web.Response:
        if self._allowed(user, m.group(1)) is None:
            return graph_error(404, "itemNotFound", "The resource could not be found.")
        return self._create(m.group(1), m.group(2), body)

    async def put_content(self, request: web.Request, user: str, m: re.Match[str], body: Any) -> web.Response:
        drive = self._allowed(user, m.group(1))
        item = drive["items"].get(m.group(2)) if drive is not None else None
        if item is None or "file" not in item:
            return graph_error(404, "itemNotFound", "The resource could not be found.")
        if request.content_length is None:
            return graph_error(411, "lengthRequired", "Content-Length is required for a simple upload.")
        data = bytearray()
        while chunk := await request.content.read(256 * 1024):
            data += chunk
            if len(data) > MAX_UPLOAD:
                return graph_error(413, "maxFileSizeExceeded", "The fake keeps files up to 64 MB.")
        item["content"], item["size"] = bytes(data), len(data)
        item["file"] = {"mimeType": request.headers.get("Content-Type")}
        version = int(item["eTag"].rsplit(",", 1)[1].rstrip('"')) + 1
        item["eTag"] = item["eTag"].rsplit(",", 1)[0] + f',{version}"'
        item["lastModifiedDateTime"] = self.fake.now()
        return web.json_response(self.public(item))

    async def invite(self, request: web.Request, user: str, m: re.Match[str], body: Any) -> web.Response:
        drive = self._allowed(user, m.group(1))
        item = drive["items"].get(m.group(2)) if drive is not None else None
        if item is None:
            return graph_error(404, "itemNotFound", "The resource could not be found.")
        granted = []
        for recipient in body.get("recipients", []):
            who = recipient.get("objectId") or recipient.get("email")
            item["shared_with"].append((who, tuple(body.get("roles", []))))
            granted.append(
                {"id": uuid.uuid4().hex, "roles": body.get("roles", []), "grantedTo": {"user": {"id": who}}}
            )
        return web.json_response({"value": granted})
