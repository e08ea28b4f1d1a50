"""Share links: signed, expiring, view-limited, revocable links to media, files, locations and invites.

A link's token is ``<link id>.<signature>`` where the signature is an HMAC-SHA256 (key: ``[api]
share_link_secret``, else a key generated once in ``data_dir/share-link.key``) over the id. Only the
token's SHA-256 is stored (``share_links.token_hash``), so a database dump yields no working link, and a
forged or altered token fails the signature check before any database read.

Each link has two addresses: ``https://<public_base_url>/s/<token>`` (anyone with it, through a browser)
and ``msgr://share/<token>`` (the Msgr app's deep link). ``GET /s/<token>`` is a preview (metadata);
``GET /s/<token>/content`` streams the binary. Every successful public access counts one view, atomically,
and is refused once ``max_views`` is reached, after ``expires_at``, or after revocation.

Connectors that must hand a network a URL for media call ``rehost(chunks, name, mime_type)``; connectors
reach stored files through ``msgr_bridge.sdk.media`` (``ctx.media``), which uses ``token_in`` and ``view``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import or_, select, update

from ..credentials.refs import resolve
from ..errors import BridgeError
from ..store.db import Database
from ..store.models import ShareLink
from ..store.repos._base import new_id
from ..store.types import utcnow
from .storage import Storage

Kind = Literal["media", "file", "location", "invite"]
BINARY_KINDS = frozenset({"media", "file"})


class ShareLinkNotFound(BridgeError):
    code = "share_link_not_found"


class ShareLinkGone(BridgeError):
    code = "share_link_expired"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, hint="ask the sender for a new link")
        self.code = code  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class LinkInfo:
    id: str
    kind: str
    target: Mapping[str, Any]
    expires_at: datetime | None
    max_views: int | None
    views: int
    revoked_at: datetime | None
    created_at: datetime
    storage_key: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "target": dict(self.target),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "max_views": self.max_views,
            "views": self.views,
            "revoked": self.revoked_at is not None,
            "created_at": self.created_at.isoformat(),
        }


def _info(row: ShareLink) -> LinkInfo:
    return LinkInfo(
        row.id,
        row.kind,
        dict(row.target or {}),
        row.expires_at,
        row.max_views,
        row.views,
        row.revoked_at,
        row.created_at,
        row.storage_key,
    )


async def load_secret(settings: Any) -> bytes:
    """The HMAC key: the configured reference, else a key file generated on first use (mode 0600)."""
    ref = settings.api.share_link_secret
    if ref is not None:
        return (await resolve(ref)).encode()
    path = Path(settings.bridge.data_dir) / "share-link.key"
    if not path.exists():
        _create_key_file(path, base64.urlsafe_b64encode(secrets.token_bytes(32)))
    return path.read_text().strip().encode()


def _create_key_file(path: Path, key: bytes) -> None:
    """Write ``key`` to ``path``, readable by the owner only from the first instant, whatever the umask.

    The key goes into a temporary file that ``mkstemp`` creates with mode 0600, which is then hard-linked
    to its name: the name never points at a file with other permissions or half a key, and when two
    processes start at once the first link wins and the other keeps the winner's key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".share-link.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


class ShareLinkService:
    def __init__(
        self,
        db: Database,
        storage: Storage,
        secret: bytes,
        *,
        tenant: str,
        public_base_url: str,
        default_ttl_s: float = 7 * 86400.0,
    ) -> None:
        self.db, self.storage, self._secret = db, storage, secret
        self.tenant, self.base = tenant, public_base_url.rstrip("/")
        self.default_ttl = timedelta(seconds=default_ttl_s)

    # --- tokens ---------------------------------------------------------------------------------------

    def _sign(self, link_id: str) -> str:
        mac = hmac.new(self._secret, link_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def token_for(self, link_id: str) -> str:
        return f"{link_id}.{self._sign(link_id)}"

    def urls(self, link_id: str) -> dict[str, str]:
        token = self.token_for(link_id)
        return {"url": f"{self.base}/s/{token}", "deep_link": f"msgr://share/{token}", "token": token}

    def token_in(self, url: str) -> str | None:
        """The token when ``url`` is one of this bridge's content URLs (``<base>/s/<token>/content``, as
        multipart sends give attachments), else None. The token is not verified here (``view`` does)."""
        prefix, suffix = f"{self.base}/s/", "/content"
        if not (url.startswith(prefix) and url.endswith(suffix)):
            return None
        token = url[len(prefix) : -len(suffix)]
        return token if token and "/" not in token else None

    def _verify(self, token: str) -> str:
        link_id, _, sig = token.partition(".")
        # Tokens we make are ASCII; compare_digest refuses other strings (a pasted-in URL can carry them).
        if not token.isascii() or not link_id or not sig or not hmac.compare_digest(sig, self._sign(link_id)):
            raise ShareLinkNotFound("no such share link", hint="check the link was copied whole")
        return link_id

    # --- management ----------------------------------------------------------------------------------

    async def create(
        self,
        kind: Kind,
        target: Mapping[str, Any],
        *,
        storage_key: str | None = None,
        ttl_s: float | None = None,
        max_views: int | None = None,
    ) -> LinkInfo:
        link_id = new_id("sl")
        now = utcnow()
        ttl = self.default_ttl if ttl_s is None else timedelta(seconds=ttl_s)
        row = ShareLink(
            id=link_id,
            tenant=self.tenant,
            token_hash=hashlib.sha256(self.token_for(link_id).encode()).hexdigest(),
            kind=kind,
            target=dict(target),
            storage_key=storage_key,
            expires_at=now + ttl,
            max_views=max_views,
            views=0,
            created_at=now,
        )
        async with self.db.session() as s:
            s.add(row)
            await s.flush()
            return _info(row)

    async def upload(
        self,
        kind: Kind,
        chunks: AsyncIterable[bytes],
        *,
        name: str,
        mime_type: str,
        max_bytes: int,
        ttl_s: float | None = None,
        max_views: int | None = None,
    ) -> LinkInfo:
        """Stream a binary to storage and link it."""
        key = new_id("blob").lower()
        size = await self.storage.write(key, chunks, max_bytes)
        return await self.create(
            kind,
            {"name": name, "mime_type": mime_type, "size": size},
            storage_key=key,
            ttl_s=ttl_s,
            max_views=max_views,
        )

    async def rehost(
        self,
        chunks: AsyncIterable[bytes],
        name: str,
        mime_type: str,
        *,
        max_bytes: int,
        ttl_s: float | None = None,
    ) -> str:
        """For connectors: store media and return a public HTTPS URL a network can fetch."""
        info = await self.upload(
            "media", chunks, name=name, mime_type=mime_type, max_bytes=max_bytes, ttl_s=ttl_s
        )
        return self.urls(info.id)["url"] + "/content"

    async def get(self, link_id: str) -> LinkInfo:
        async with self.db.session() as s:
            row = await s.get(ShareLink, link_id)
            if row is None or row.tenant != self.tenant:
                raise ShareLinkNotFound(f"no share link {link_id!r}")
            return _info(row)

    async def list(self, *, limit: int = 100) -> list[LinkInfo]:
        stmt = (
            select(ShareLink)
            .where(ShareLink.tenant == self.tenant)
            .order_by(ShareLink.created_at.desc())
            .limit(limit)
        )
        async with self.db.session() as s:
            return [_info(r) for r in (await s.scalars(stmt)).all()]

    async def revoke(self, link_id: str) -> LinkInfo:
        async with self.db.session() as s:
            row = await s.get(ShareLink, link_id)
            if row is None or row.tenant != self.tenant:
                raise ShareLinkNotFound(f"no share link {link_id!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            info = _info(row)
        if info.storage_key:
            await self.storage.delete(info.storage_key)
        return info

    # --- public access -------------------------------------------------------------------------------

    async def view(self, token: str, *, count: bool = True) -> LinkInfo:
        """Resolve a public token; with ``count`` one view is used, atomically (limits enforced)."""
        link_id = self._verify(token)
        now = utcnow()
        async with self.db.session() as s:
            if count:
                stmt = (
                    update(ShareLink)
                    .where(
                        ShareLink.id == link_id,
                        ShareLink.revoked_at.is_(None),
                        or_(ShareLink.expires_at.is_(None), ShareLink.expires_at > now),
                        or_(ShareLink.max_views.is_(None), ShareLink.views < ShareLink.max_views),
                    )
                    .values(views=ShareLink.views + 1)
                    .returning(ShareLink.id)
                )
                counted = (await s.execute(stmt)).scalar_one_or_none() is not None
            row = await s.get(ShareLink, link_id, populate_existing=True)
            if row is None:
                raise ShareLinkNotFound("no such share link")
            info = _info(row)
        if count and counted:
            return info
        _refuse_if_gone(info, now)
        if count:  # raced with another view for the last one
            raise ShareLinkGone(
                "share_link_exhausted", "this share link has been viewed its maximum number of times"
            )
        return info


def _refuse_if_gone(info: LinkInfo, now: datetime) -> None:
    if info.revoked_at is not None:
        raise ShareLinkGone("share_link_revoked", "this share link was revoked")
    if info.expires_at is not None and info.expires_at <= now:
        raise ShareLinkGone("share_link_expired", "this share link has expired")
    if info.max_views is not None and info.views >= info.max_views:
        raise ShareLinkGone(
            "share_link_exhausted", "this share link has been viewed its maximum number of times"
        )
