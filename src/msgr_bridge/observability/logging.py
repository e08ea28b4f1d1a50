"""Structured logging: structlog everywhere, stdlib logging routed through it, and no secret ever logged.

``configure_logging(level, fmt)`` is called once by the CLI from the ``[logging]`` section:

* ``fmt="json"`` writes one JSON object per line (for journald, Loki, ``jq``); ``"console"`` writes
  readable, aligned lines; ``"auto"`` (the default) picks console on a terminal and JSON otherwise.
* Records from libraries that use the standard ``logging`` module (SQLAlchemy, aiohttp, alembic) go
  through the same processors and renderer, so the output is one consistent stream.
* A line written inside a tracing span carries ``trace_id`` and ``span_id`` (``add_trace_ids``).
* ``bind_context(tenant=..., network=..., account=..., conversation=..., message_id=...)`` binds ids for
  everything logged inside the ``with`` block, in this task only (contextvars), so a log line always says
  which account and conversation it is about.

Redaction runs on every event, before anything is written:

1. the value of any key that looks secret (``password``, ``token``, ``secret``, ``api_key``, ``cookie``,
   ``authorization``, ``session``, ``private_key``, ...) is replaced by ``"***"``, at any depth of nested
   dicts and lists;
2. every value registered with ``register_secret`` is replaced by ``"***"`` wherever it appears in a
   string: the message, any field, exception text and tracebacks, and finally the rendered line itself
   (also in its JSON-escaped and ``repr`` forms). The credential layer registers each secret when it
   resolves it, so a secret that slips into an f-string or an exception message is still masked.

Secrets shorter than ``MIN_SECRET_LENGTH`` characters are not registered (they would mask ordinary words);
such secrets are too weak to use anyway.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import structlog
from opentelemetry import trace
from structlog.types import EventDict, Processor, WrappedLogger

from ..errors import ConfigError

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "LogFormat",
    "add_trace_ids",
    "bind_context",
    "configure_logging",
    "looks_secret",
    "redact",
    "register_secret",
]

LogFormat = Literal["auto", "json", "console"]

REDACTED = "***"
MIN_SECRET_LENGTH = 4

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}

_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)|^pass$|secret|token|api[_-]?key|apikey|cookie|authori[sz]ation|session|"
    r"private[_-]?key|credential|signature|(access|signing|encryption|keystore)[_-]?key|^auth$|bearer",
    re.IGNORECASE,
)
"""Key names whose values are masked (anywhere in the key, case-insensitive); ``^auth$`` spares ``author``."""

_HANDLER_NAME = "msgr_bridge"


def looks_secret(key: str) -> bool:
    """Whether a field named ``key`` probably holds a secret (its value is masked in logs)."""
    return _SECRET_KEY.search(key) is not None


# --- the secret registry ----------------------------------------------------------------------------------


class _SecretRegistry:
    """Registered secret values and one compiled pattern that finds any of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1]}
        with self._lock:
            if forms <= self._values:
                return
            self._values |= forms
            # longest first, so a secret that contains another is masked whole
            alternatives = sorted(self._values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(v) for v in alternatives))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self.pattern = None


_registry = _SecretRegistry()


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it appears in any log output from now on (process-wide).

    The credential layer calls this for every secret it resolves; call it yourself for a secret you obtain
    some other way (a session cookie a platform hands back, an OAuth token).
    """
    _registry.add(value)


def _forget_registered_secrets() -> None:
    """For tests only: empty the registry."""
    _registry.clear()


def _mask_string(text: str) -> str:
    pattern = _registry.pattern
    return pattern.sub(REDACTED, text) if pattern is not None else text


def redact(value: Any, *, key: str | None = None) -> Any:
    """Return ``value`` with secrets masked: by key name (recursively) and registered secret values.

    Strings, dicts, lists, tuples and sets are walked; other objects are rendered with ``repr`` first only
    when a registered secret appears in that ``repr``, so they are otherwise left as they are.
    """
    if (
        key is not None
        and _SECRET_KEY.search(key)
        and not (value is None or value == "" or isinstance(value, bool))
    ):
        return REDACTED
    if isinstance(value, str):
        return _mask_string(value)
    if isinstance(value, Mapping):
        return {k: redact(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return _mask_string(bytes(value).decode("utf-8", "replace"))
    if value is None or isinstance(value, bool | int | float):
        return value
    pattern = _registry.pattern
    if pattern is not None:
        text = repr(value)
        if pattern.search(text):
            return pattern.sub(REDACTED, text)
    return value


def _redact_processor(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    return {k: (redact(v) if k == "event" else redact(v, key=k)) for k, v in event_dict.items()}


class _RedactingRenderer:
    """Wraps the final renderer and masks registered secrets in the finished line: the last safety net."""

    def __init__(self, inner: Processor) -> None:
        self._inner = inner

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        rendered = self._inner(logger, method_name, event_dict)
        text = rendered if isinstance(rendered, str) else str(rendered)
        return _mask_string(text)


def add_trace_ids(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Adds ``trace_id`` and ``span_id`` (hex, as tracing backends show them) to a line written inside a
    span, so a log line leads to its trace and back."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


# --- configuration ----------------------------------------------------------------------------------------


def parse_level(level: str | int) -> int:
    """``"info"``/``"INFO"``/``20`` to a stdlib level number; anything else is a ``ConfigError``."""
    if isinstance(level, int) and not isinstance(level, bool) and level in _LEVELS.values():
        return level
    if isinstance(level, str) and level.strip().lower() in _LEVELS:
        return _LEVELS[level.strip().lower()]
    raise ConfigError(
        f"logging.level: {level!r} is not a log level",
        hint="use one of debug, info, warning, error, critical",
    )


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # closed stream
        return False


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not to the one seen at setup (a test
    runner's capture, or a daemon's redirect, may have replaced or closed that one since)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(
    level: str | int = "info", fmt: LogFormat = "auto", *, stream: TextIO | None = None
) -> None:
    """Set up structlog and stdlib logging for the whole process. Safe to call again (tests, reloads).

    ``stream`` defaults to standard error. Only the handler this function installed is replaced on a second
    call; handlers others added to the root logger stay.
    """
    level_no = parse_level(level)
    if fmt not in ("auto", "json", "console"):
        raise ConfigError(f"logging.format: {fmt!r} is not a log format", hint="use auto, json or console")
    out = stream if stream is not None else sys.stderr
    console = fmt == "console" or (fmt == "auto" and _is_tty(out))

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _redact_processor,
    ]
    renderer: Processor
    if console:
        renderer = structlog.dev.ConsoleRenderer(
            colors=_is_tty(out), exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer(default=repr)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _RedactingRenderer(renderer),
        ],
    )
    handler = logging.StreamHandler(out) if stream is not None else _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *[p for p in shared if not isinstance(p, structlog.stdlib.ExtraAdder)],
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so loggers created at import time follow a later reconfiguration.
        cache_logger_on_first_use=False,
    )


# --- context ----------------------------------------------------------------------------------------------


@contextmanager
def bind_context(
    *,
    tenant: str | None = None,
    network: str | None = None,
    account: str | None = None,
    conversation: str | None = None,
    message_id: str | None = None,
    **extra: Any,
) -> Iterator[None]:
    """Bind ids to every log line emitted inside the block (this task and tasks it starts).

    ``None`` values are not bound. Previous values of the same keys come back when the block ends::

        with bind_context(tenant="default", network="irc", account=acc.id):
            log.info("connector.connected")
    """
    values = {
        "tenant": tenant,
        "network": network,
        "account": account,
        "conversation": conversation,
        "message_id": message_id,
        **extra,
    }
    with structlog.contextvars.bound_contextvars(**{k: v for k, v in values.items() if v is not None}):
        yield
