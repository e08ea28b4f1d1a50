"""Media tests: the core's media helper over throwaway storage, data in chunks, and a local file server.

    async with temporary_media(tmp_path) as media:      # ctx.media for a connector under test
        kept = await media.receive(chunks_of(data), name="a.pdf", mime_type="application/pdf")

``temporary_media`` is the core's ``Media`` helper with share-link storage in ``directory`` (a migrated
SQLite database ``media.db`` and files under ``media/``), as the bridge gives connectors in ``ctx.media``;
``local_shares`` is that storage alone. The pytest plugin's ``media`` fixture is ``temporary_media`` in the
test's ``tmp_path``. ``chunks_of`` streams bytes in pieces, as ``Media.receive`` takes them.

``FileServer`` is a local HTTP server for fetching: files, redirects and long streams, counting what it sent.

    async with FileServer() as files:
        url = files.serve("/a.bin", b"...")            # with Content-Length
        big = files.stream("/big", total=64 << 20)      # chunked, no Content-Length
        hop = files.redirect("/hop", "http://10.0.0.1/")
        ... files.sent["/big"]                          # bytes written before the client hung up

It binds 127.0.0.1 on a free port, so fetching from it needs ``fetch_allow_networks`` to allow loopback:
exactly what the media helper refuses by default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from aiohttp import web

from ..media.sharelinks import ShareLinkService
from ..media.storage import LocalStorage
from ..sdk.media import Media, MediaRules
from ..store.db import Database

CHUNK = 64 * 1024


@asynccontextmanager
async def local_shares(directory: Path, *, database: str = "media.db") -> AsyncIterator[ShareLinkService]:
    """Share-link storage for tests: a migrated SQLite ``database`` in ``directory``, files under
    ``directory / "media"``, links on ``https://b.example`` for the ``default`` tenant."""
    db = Database(f"sqlite+aiosqlite:///{directory}/{database}")
    await db.connect()
    await db.migrate()
    try:
        yield ShareLinkService(
            db,
            LocalStorage(directory / "media"),
            b"k" * 32,
            tenant="default",
            public_base_url="https://b.example",
        )
    finally:
        await db.close()


@asynccontextmanager
async def temporary_media(
    directory: Path, rules: MediaRules | None = None, *, database: str = "media.db"
) -> AsyncIterator[Media]:
    """The core's media helper (``ctx.media``) with ``rules`` (the defaults unless given) over
    ``local_shares(directory)``."""
    async with local_shares(directory, database=database) as shares:
        yield Media(rules or MediaRules(), shares=lambda: shares)


async def chunks_of(data: bytes, size: int = CHUNK) -> AsyncIterator[bytes]:
    """``data`` in pieces of ``size`` bytes (the last one shorter), as ``Media.receive`` reads a stream."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


class FileServer:
    """A local HTTP server for fetch tests (see the module's docstring)."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.sent: dict[str, int] = {}
        self.finished: dict[str, anyio.Event] = {}
        self._routes: dict[str, Any] = {}
        self.app.router.add_get("/{path:.*}", self._handle)
        self._runner = web.AppRunner(self.app, access_log=None)
        self.port = 0

    async def __aenter__(self) -> FileServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, data: bytes) -> str:
        self._routes[path] = ("file", data)
        return self.url(path)

    def stream(self, path: str, *, total: int) -> str:
        """``total`` bytes in chunks without ``Content-Length``; ``sent[path]`` counts what went out."""
        self._routes[path] = ("stream", total)
        self.finished[path] = anyio.Event()
        return self.url(path)

    def redirect(self, path: str, to: str) -> str:
        self._routes[path] = ("redirect", to)
        return self.url(path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        kind, value = self._routes.get(path, ("missing", None))
        if kind == "file":
            return web.Response(body=value, content_type="application/octet-stream")
        if kind == "redirect":
            raise web.HTTPFound(value)
        if kind == "stream":
            return await self._stream(request, path, value)
        raise web.HTTPNotFound()

    async def _stream(self, request: web.Request, path: str, total: int) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        self.sent[path] = 0
        try:
            while self.sent[path] < total:
                await response.write(b"x" * CHUNK)
                self.sent[path] += CHUNK
            await response.write_eof()
        except (ConnectionError, OSError):
            pass  # the client hung up: what it read is counted
        finally:
            self.finished[path].set()
        return response
