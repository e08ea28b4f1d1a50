"""Logging: JSON and console output, stdlib routing, context binding, and redaction of secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import structlog

from msgr_bridge.errors import ConfigError
from msgr_bridge.observability.logging import (
    REDACTED,
    _forget_registered_secrets,
    bind_context,
    configure_logging,
    redact,
    register_secret,
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    structlog.contextvars.clear_contextvars()
    _forget_registered_secrets()


class TTYStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# --- formats and routing ----------------------------------------------------------------------------------


def test_json_lines_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", stream=out)
    structlog.get_logger("msgr_bridge.test").info("bridge.started", port=8080)
    [line] = json_lines(out)
    assert line["event"] == "bridge.started"
    assert line["port"] == 8080
    assert line["level"] == "info"
    assert line["logger"] == "msgr_bridge.test"
    assert line["timestamp"].endswith("Z")


def test_console_on_a_terminal() -> None:
    out = TTYStream()
    configure_logging("info", "auto", stream=out)
    structlog.get_logger().info("bridge.started", port=8080)
    text = out.getvalue()
    assert "bridge.started" in text and "port" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_explicit_json_on_a_terminal() -> None:
    out = TTYStream()
    configure_logging("info", "json", stream=out)
    structlog.get_logger().info("hello")
    assert json_lines(out)[0]["event"] == "hello"


def test_stdlib_logging_goes_through_the_same_pipeline() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    logging.getLogger("aiohttp.client").warning("retrying %s in %d s", "GET /", 3)
    [line] = json_lines(out)
    assert line == {**line, "event": "retrying GET / in 3 s", "level": "warning", "logger": "aiohttp.client"}


def test_level_filters_structlog_and_stdlib() -> None:
    out = io.StringIO()
    configure_logging("WARNING", "json", stream=out)
    structlog.get_logger().info("quiet")
    logging.getLogger("lib").info("quiet too")
    structlog.get_logger().error("loud")
    assert [line["event"] for line in json_lines(out)] == ["loud"]


def test_reconfiguring_replaces_only_our_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("info", "json", stream=second)
    structlog.get_logger().info("once")
    assert first.getvalue() == ""
    assert len(json_lines(second)) == 1


@pytest.mark.parametrize(("level", "fmt"), [("loud", "json"), (7, "json"), ("info", "xml")])
def test_bad_settings_are_config_errors(level: Any, fmt: Any) -> None:
    with pytest.raises(ConfigError) as info:
        configure_logging(level, fmt, stream=io.StringIO())
    assert info.value.message.startswith("logging.")


# --- context ----------------------------------------------------------------------------------------------


def test_bind_context_adds_ids_inside_the_block_only() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    log = structlog.get_logger()
    with bind_context(tenant="default", network="irc", account="acc1"):
        with bind_context(conversation="#chan", message_id="m1", account="acc2"):
            log.info("inner")
        log.info("outer")
    log.info("outside")
    inner, outer, outside = json_lines(out)
    assert (inner["tenant"], inner["account"], inner["conversation"], inner["message_id"]) == (
        "default",
        "acc2",
        "#chan",
        "m1",
    )
    assert outer["account"] == "acc1" and "conversation" not in outer
    assert "tenant" not in outside


async def test_bind_context_is_per_task() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    log = structlog.get_logger()

    async def worker(account: str, ready: anyio.Event, go: anyio.Event) -> None:
        with bind_context(account=account):
            ready.set()
            await go.wait()
            log.info("work")

    go = anyio.Event()
    a_ready, b_ready = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker, "a", a_ready, go)
        tg.start_soon(worker, "b", b_ready, go)
        await a_ready.wait()
        await b_ready.wait()
        go.set()
    assert sorted(line["account"] for line in json_lines(out)) == ["a", "b"]


# --- redaction --------------------------------------------------------------------------------------------


class Holder:
    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Holder({self.value})"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_registered_secret_never_reaches_the_output(fmt: Any) -> None:
    secret = "hunter2-S3cr3t-value"
    quoted = 'pa"ss\\wo\nrd-99'  # changes under JSON escaping and repr
    register_secret(secret)
    register_secret(quoted)
    out = io.StringIO()
    configure_logging("debug", fmt, stream=out)
    log = structlog.get_logger("msgr_bridge.test")

    log.info("login", password=secret)  # as a secret-named key
    log.info("harmless", note=secret)  # as the value of an innocent key
    log.info(f"connecting with {secret} now")  # inside the message
    log.info("config", data={"a": {"b": [f"x{secret}y", {"deep": secret}]}, "t": (secret,)})  # nested
    log.info("object", obj=Holder(secret))  # only visible through repr
    log.info("bytes", raw=secret.encode())
    log.info("escaped", value=quoted, inside=f"<{quoted}>")
    try:
        raise RuntimeError(f"auth failed for {secret}")
    except RuntimeError:
        log.exception("failed")  # inside exception text and traceback
    logging.getLogger("some.library").error("token=%s and %s", secret, quoted)  # stdlib, via args
    try:
        raise ValueError(secret)
    except ValueError:
        logging.getLogger("some.library").exception("stdlib failure")

    text = out.getvalue()
    assert "failed" in text and "stdlib failure" in text and "connecting with" in text
    for form in (secret, quoted, json.dumps(quoted)[1:-1], repr(quoted)[1:-1]):
        assert form not in text
    assert REDACTED in text


def test_secret_looking_keys_are_masked_even_when_unregistered() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    structlog.get_logger().info(
        "request",
        headers={"Authorization": "Bearer abc.def", "Cookie": "sid=zzz", "Accept": "text/plain"},
        api_key="k-123456",
        access_token="t-123456",
        author="alice",
        session=None,
    )
    [line] = json_lines(out)
    assert line["headers"] == {"Authorization": REDACTED, "Cookie": REDACTED, "Accept": "text/plain"}
    assert line["api_key"] == REDACTED and line["access_token"] == REDACTED
    assert line["author"] == "alice"
    assert line["session"] is None
    assert "abc.def" not in out.getvalue() and "k-123456" not in out.getvalue()


def test_redact_walks_structures() -> None:
    register_secret("topsecret")
    value = {"user": "bob", "db": {"password": "pw", "hosts": ["a", "topsecret-b"]}, "private_key": b"x"}
    assert redact(value) == {
        "user": "bob",
        "db": {"password": REDACTED, "hosts": ["a", f"{REDACTED}-b"]},
        "private_key": REDACTED,
    }
    assert redact(42) == 42 and redact(None) is None


def test_very_short_secrets_are_not_registered() -> None:
    register_secret("ab")
    assert redact("table") == "table"
    register_secret("")
    assert redact("") == ""
