"""Conversation and message ids in URL paths: a URL-safe *path form* the API maps both ways.

Networks name conversations with characters a URL path cannot carry as they are: an IRC channel is
``127.0.0.1/#channel`` (``/`` ends the segment, ``#`` starts a fragment the client never sends), Matrix
ids hold ``!`` and ``:``, Signal groups are base64 with ``/`` and ``+``. Every conversation and message the
API returns carries its ``path_id``, to use in paths as it is:

* an id made only of ``A-Z a-z 0-9 . _ - @ : !`` (and not ``.``, ``..`` or starting with ``~``) is its own
  path form, so ``general`` stays ``general``;
* any other id becomes ``~`` followed by its UTF-8 bytes in unpadded base64url: ``127.0.0.1/#channel`` is
  ``~MTI3LjAuMC4xLyNjaGFubmVs``.

A path segment starting with ``~`` is always read as a path form; any other segment is the id itself, so a
percent-encoded id (``127.0.0.1%2F%23channel``) works too. Stored rows, events and JSON bodies keep the
network's own id (``conversation_id``); only paths use the path form.
"""

from __future__ import annotations

import base64
import binascii
import re

from aiohttp import web

from .problems import PATH_ID_HINT as HINT
from .problems import ApiProblem

_AS_IS = re.compile(r"[A-Za-z0-9._@:!-]+")
PREFIX = "~"


def path_id(raw: str) -> str:
    """The URL-safe path form of a conversation or message id."""
    if _AS_IS.fullmatch(raw) and raw not in (".", "..") and not raw.startswith(PREFIX):
        return raw
    return PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def from_path(segment: str) -> str | None:
    """The id a path segment names; None for a ``~`` segment that is not a path form."""
    if not segment.startswith(PREFIX):
        return segment
    body = segment[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        exact = base64.urlsafe_b64encode(raw).decode().rstrip("=") == body
        return raw.decode() if raw and exact else None
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def path_param(request: web.Request, name: str) -> str:
    """The id in the path parameter ``name`` (``conversation_id`` or ``message_id``), decoded from its
    path form; a malformed path form is a 404 saying how ids go in paths."""
    segment = request.match_info[name]
    raw = from_path(segment)
    if not raw:
        kind = name.removesuffix("_id")
        raise ApiProblem(
            404, f"{kind}_not_found", f"{segment!r} is not a {kind} id nor its path form", hint=HINT
        )
    return raw
