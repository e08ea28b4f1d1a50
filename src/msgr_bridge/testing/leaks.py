"""Helpers for tests that prove a secret never leaks: into logs, database dumps, files or error texts."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import structlog

from ..observability import logging as bridge_logging


def encoded_forms(secret: str) -> list[bytes]:
    """The secret as it could appear at rest: raw, base64 (both alphabets) and hex."""
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), raw.hex().encode()]


def assert_absent(secrets: str | Iterable[str], blob: bytes | str, where: str) -> None:
    """Fail when any form of any of ``secrets`` occurs in ``blob`` (the message never repeats it)."""
    data = blob.encode() if isinstance(blob, str) else blob
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        for form in encoded_forms(secret):
            assert form not in data, f"a secret leaked into {where}"


@contextmanager
def captured_bridge_logs(level: str = "debug") -> Iterator[io.StringIO]:
    """The bridge's real logging configuration (JSON, redaction on), writing to a buffer; restored after."""
    out = io.StringIO()
    bridge_logging.configure_logging(level, "json", stream=out)
    try:
        yield out
    finally:
        root = logging.getLogger()
        for h in [h for h in root.handlers if h.get_name() == "msgr_bridge"]:
            root.removeHandler(h)
        root.setLevel(logging.WARNING)
        structlog.reset_defaults()
        bridge_logging._forget_registered_secrets()
