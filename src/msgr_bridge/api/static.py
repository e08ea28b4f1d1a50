"""The web app's files (``msgr_bridge/web/``, shipped in the package): ``/`` and ``/assets/<name>``.

Only the files found in that folder when the app is built are served, looked up by exact name in a map
(no path from a request ever reaches the file system, so there is no traversal to defend against). Each
file is read once, with its content type from a fixed table, an ``ETag`` (its SHA-256) and
``Cache-Control: no-cache`` (the browser keeps it and asks again: an unchanged file is a 304). Every
response carries a strict Content-Security-Policy (scripts, styles and connections from this origin only,
no inline script, no framing) and ``nosniff``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from .openapi import op

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


DOCS = [
    op("GET", "/", "The web app (sign in, accounts, inbox, search, operations)"),
    op("GET", "/assets/{name}", "The web app's scripts, styles and icons"),
]


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(root: Path = WEB_DIR) -> dict[str, Asset]:
    """Every servable file under ``root`` by its name relative to it (``pages/inbox.js``)."""
    assets: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        ctype = CONTENT_TYPES.get(path.suffix)
        if not path.is_file() or ctype is None or path.name.startswith("."):
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[path.relative_to(root).as_posix()] = Asset(body, ctype, etag)
    return assets


def _serve(request: web.Request, asset: Asset | None) -> web.Response:
    if asset is None:
        raise web.HTTPNotFound(reason="no such file in the web app")
    headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


def add_static_routes(app: web.Application, root: Path = WEB_DIR) -> None:
    assets = load_assets(root)

    async def index(request: web.Request) -> web.Response:
        return _serve(request, assets.get("index.html"))

    async def asset(request: web.Request) -> web.Response:
        return _serve(request, assets.get(request.match_info["name"]))

    app.router.add_get("/", index)
    app.router.add_get("/assets/{name:.+}", asset)
