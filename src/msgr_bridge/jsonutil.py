"""One JSON encoder for the hot paths: orjson, falling back to the stdlib for what orjson refuses.

orjson is several times faster than ``json.dumps`` on the send and stream paths, but refuses integers past
64 bits and non-string dict keys, which a platform payload may carry (an attachment size, a foreign id).
Those go through the stdlib instead, so such a value is never a crash or a lost event. Decoding stays with
the stdlib wherever values are stored (orjson reads such integers back as floats).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: integers past 64 bits, non-string keys
        return json.dumps(value, separators=(",", ":")).encode()


def dumps(value: Any) -> str:
    return dumps_bytes(value).decode()
