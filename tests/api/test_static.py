"""The web app's files: served from the package by exact name only, with content types, ETags and a CSP."""

from __future__ import annotations

import re

from yarl import URL

from msgr_bridge.api.static import CSP, WEB_DIR, load_assets

from .conftest import Start


async def test_index_and_assets_are_served_with_security_headers(start: Start) -> None:
    async with start() as api:
        async with api.http.get(api.base + "/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert r.headers["Content-Security-Policy"] == CSP
            assert (
                "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP
            )
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Cache-Control"] == "no-cache"
            assert '<script type="module" src="/assets/app.js">' in await r.text()
        async with api.http.get(api.base + "/assets/app.js") as r:
            assert r.status == 200 and r.content_type == "text/javascript"
            etag = r.headers["ETag"]
        async with api.http.get(api.base + "/assets/app.js", headers={"If-None-Match": etag}) as r:
            assert r.status == 304 and await r.read() == b""
        async with api.http.get(api.base + "/assets/style.css") as r:
            assert r.content_type == "text/css"
        async with api.http.get(api.base + "/assets/pages/inbox.js") as r:
            assert r.status == 200


async def test_no_path_outside_the_web_folder_is_served(start: Start) -> None:
    async with start() as api:
        for path in (
            "/assets/../api/app.py",
            "/assets/%2e%2e/api/app.py",
            "/assets/..%2f..%2fstore%2fdb.py",
            "/assets//etc/passwd",
            "/assets/nope.js",
            "/assets/",
        ):
            async with api.http.get(URL(api.base + path, encoded=True)) as r:  # sent as written
                assert r.status in (401, 404), path  # never the file (a normalised path may need a token)
                assert b"import" not in await r.read()


def test_every_module_the_app_imports_is_shipped() -> None:
    assets = load_assets()
    assert {"index.html", "app.js", "lib.js", "style.css"} <= set(assets)
    for name, asset in assets.items():
        if not name.endswith(".js"):
            continue
        folder = name.rsplit("/", 1)[0] if "/" in name else ""
        for target in re.findall(r'from "(\.[^"]+)"', asset.body.decode()):
            resolved = (WEB_DIR / folder / target).resolve().relative_to(WEB_DIR).as_posix()
            assert resolved in assets, f"{name} imports {target}, which is not shipped"
