"""Reading request bodies and query parameters into validated models, with clear problems.

``read_json(request, Model)``: malformed JSON -> 400 ``malformed_json``; a body that is not an object ->
422 naming the body; unknown fields -> 400 ``unknown_field`` naming them; bad values -> 422 naming each field;
a body over ``[api] max_body_bytes`` -> 413 ``body_too_large``. Models used here forbid extra keys.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import MultipartReader, web
from pydantic import BaseModel, ConfigDict, ValidationError

from .problems import ApiProblem, from_pydantic, validation_problem


class Body(BaseModel):
    """Base of request bodies: unknown fields are refused, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


async def read_json[M: BaseModel](request: web.Request, model: type[M]) -> M:
    if request.content_length is not None and request.content_length > request.app._client_max_size:
        raise web.HTTPRequestEntityTooLarge(
            max_size=request.app._client_max_size, actual_size=request.content_length
        )
    raw = await request.read()  # bounded by client_max_size (413 beyond it)
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = orjson.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiProblem(
                400,
                "malformed_json",
                f"the body is not valid JSON: {exc}",
                hint="send a JSON object with Content-Type: application/json",
            ) from None
    if not isinstance(data, dict):
        raise validation_problem([{"field": "", "message": "the body must be a JSON object"}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_pydantic(exc) from None


async def open_multipart(request: web.Request) -> MultipartReader:
    """``request.multipart()``, with a clear 400 for a multipart content type without its boundary."""
    try:
        return await request.multipart()
    except ValueError as exc:
        raise ApiProblem(
            400,
            "malformed_body",
            f"the multipart body cannot be read: {exc}",
            hint="send Content-Type: multipart/form-data; boundary=... (HTTP clients add the boundary)",
        ) from None


def int_query(
    request: web.Request, name: str, default: int | None, *, lo: int = 0, hi: int = 10**18
) -> int | None:
    """An integer query parameter within ``lo..hi``; a bad one is a 422 naming it."""
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise validation_problem([{"field": name, "message": f"must be an integer, not {value!r}"}]) from None
    if not lo <= number <= hi:
        raise validation_problem([{"field": name, "message": f"must be between {lo} and {hi}"}])
    return number
