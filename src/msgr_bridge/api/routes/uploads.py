"""Multipart sends: attachments streamed to storage, checked against the network's attachment rules.

The form has a ``message`` part (JSON: the send body without attachments) and one or more ``file`` parts.
Each file part is checked before any byte is stored (its type against the network's declared rules) and
while streaming (its size against the matching rule and ``[api] max_body_bytes``); it is stored through
the share-link service, and the message carries an attachment whose ``url`` a network can fetch.

The sending policy decides before any file is stored: each file part is first checked by a dry run of the
policy on the message as it stands with that file's name and type; a refused send stores nothing (its files
are read and discarded, and the send is then recorded as refused like a JSON one). Files stored for a send
that is refused later (a rule that needs the size) or that fails half way are deleted before the answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from fnmatch import fnmatchcase

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ValidationError

from ...errors import NotSupported
from ...media.storage import CHUNK
from ...outbound.policy import PolicyRequest
from ...schema import Attachment, OutboundMessage
from ...store.repos.accounts import AccountRecord
from ..auth import token_of
from ..bodies import open_multipart
from ..common import accounts_of, capabilities_of, outbound_of
from ..keys import SHARES_KEY
from ..paths import path_param
from ..problems import ApiProblem, from_pydantic, validation_problem


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def _policy_refuses(
    request: web.Request, record: AccountRecord, fields: dict[str, object], attachments: list[Attachment]
) -> bool:
    """A dry run of the sending policy on the message as it stands (no state counted)."""
    outbound = outbound_of(request)
    if outbound is None:
        return False
    try:
        message = OutboundMessage(
            txn_id="policy-precheck",
            text=str(fields.get("text") or ""),
            attachments=tuple(attachments),
        )
    except ValidationError:
        return False  # the full validation at the end names the problem
    outcome = await outbound.policy.evaluate(
        PolicyRequest(
            tenant=record.tenant,
            user=token_of(request).user_id or f"tenant:{record.tenant}",
            account_id=record.id,
            network=record.network,
            conversation_id=path_param(request, "conversation_id"),
            message=message,
        ),
        dry_run=True,
    )
    return not outcome.allowed


async def read_multipart_send[M: BaseModel](
    request: web.Request, record: AccountRecord, model: type[M], stored_shares: list[str]
) -> M:
    """The send body with its attachments; the ids of the share links of stored files are appended to
    ``stored_shares`` as they are made (the caller deletes them when the send is refused or fails)."""
    limit = request.app._client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    caps = capabilities_of(accounts_of(request), record, path_param(request, "conversation_id"))
    reader = await open_multipart(request)
    fields: dict[str, object] = {}
    attachments: list[Attachment] = []
    used = 0
    refused = False
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise validation_problem([{"field": "multipart", "message": "nested multipart is not accepted"}])
        if part.name == "message":
            try:
                fields = json.loads(await part.text())
            except ValueError as exc:
                raise ApiProblem(
                    400, "malformed_json", f"the message part is not valid JSON: {exc}"
                ) from None
            if not isinstance(fields, dict):
                raise validation_problem([{"field": "message", "message": "must be a JSON object"}])
        elif part.name == "file":
            mime = part.headers.get("Content-Type", "application/octet-stream")
            name = part.filename or "file"
            rules = [r for r in caps.attachments if fnmatchcase(mime, r.mime_pattern)]
            if not caps.attachments:
                raise NotSupported("attachments", network=record.network, hint="send text or a share link")
            if not rules:
                raise ApiProblem(
                    422,
                    "outbound_rejected",
                    f"{record.network} does not accept {mime} files",
                    hint="convert the file or send a share link",
                    field="file",
                )
            sizes = [r.max_size for r in rules]
            rule_max = None if None in sizes else max(s for s in sizes if s is not None)
            max_bytes = limit - used if rule_max is None else min(rule_max, limit - used)
            meta = Attachment(name=name, mime_type=mime)
            if refused or await _policy_refuses(request, record, fields, [*attachments, meta]):
                refused = True  # stored nothing; the submit records the refusal with its reason
                await part.release()
                attachments.append(meta)
                continue
            info = await request.app[SHARES_KEY].upload(
                "file", _chunks(part), name=name, mime_type=mime, max_bytes=max_bytes
            )
            stored_shares.append(info.id)
            used += int(info.target["size"])
            url = request.app[SHARES_KEY].urls(info.id)["url"] + "/content"
            attachments.append(Attachment(name=name, mime_type=mime, size=int(info.target["size"]), url=url))
        else:
            raise ApiProblem(
                400,
                "unknown_field",
                f"unknown form part {part.name!r}",
                hint="send a 'message' part and 'file' parts",
                errors=[{"field": str(part.name), "message": "unknown field"}],
            )
    try:
        return model.model_validate({**fields, "attachments": attachments})
    except ValidationError as exc:
        raise from_pydantic(exc) from None
