"""Bus topics and subscription patterns: building, validating and NATS-style wildcard matching.

Pure functions with no state, shared by every backend. ``topic_tokens`` and ``pattern_tokens`` split and
validate; ``match_tokens`` compares tokens already split, so ``MemoryBus`` validates a pattern once (at
subscribe time) and a topic once per route-cache miss, not on every publish.
"""

from __future__ import annotations

from ..errors import BusError

_FORBIDDEN_IN_TOKEN = frozenset(".*> \t\r\n")


def _bad(what: str, value: str, why: str) -> BusError:
    return BusError(
        f"invalid bus {what} {value!r}: {why}",
        hint="topics are dot-separated tokens like 'default.loopback.inbound'; build them with bus.topic()",
    )


def topic(tenant: str, network: str, kind: str, *rest: str) -> str:
    """Build a topic ``tenant.network.kind[.rest...]``, refusing tokens that would change its meaning.

    Each token must be a non-empty string without dots, whitespace or the wildcards ``*`` and ``>``.
    """
    tokens = (tenant, network, kind, *rest)
    for token in tokens:
        if not isinstance(token, str) or not token:
            raise _bad("topic token", str(token), "tokens must be non-empty strings")
        if not _FORBIDDEN_IN_TOKEN.isdisjoint(token):
            raise _bad("topic token", token, "a token may not contain '.', '*', '>' or whitespace")
    return ".".join(tokens)


def topic_tokens(value: str) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise _bad("topic", str(value), "a topic is a string")
    tokens = tuple(value.split("."))
    if len(tokens) < 3:
        raise _bad("topic", value, "a topic has at least three tokens: tenant.network.kind")
    for token in tokens:
        if not token:
            raise _bad("topic", value, "empty token")
        if not _FORBIDDEN_IN_TOKEN.isdisjoint(token):
            raise _bad("topic", value, "wildcards and whitespace are only allowed in subscription patterns")
    return tokens


def pattern_tokens(value: str) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise _bad("pattern", str(value), "a pattern is a string")
    tokens = tuple(value.split("."))
    for i, token in enumerate(tokens):
        if not token:
            raise _bad("pattern", value, "empty token")
        if token in ("*", ">"):
            if token == ">" and i != len(tokens) - 1:
                raise _bad("pattern", value, "'>' is only allowed as the last token")
            continue
        if not _FORBIDDEN_IN_TOKEN.isdisjoint(token):
            raise _bad("pattern", value, "'*' and '>' must be whole tokens; no whitespace")
    return tokens


def match_tokens(pattern: tuple[str, ...], tokens: tuple[str, ...]) -> bool:
    n = len(tokens)
    for i, p in enumerate(pattern):
        if p == ">":
            return n > i
        if i >= n or (p != "*" and p != tokens[i]):
            return False
    return len(pattern) == n


def matches(pattern: str, topic: str) -> bool:
    """Whether ``pattern`` (with ``*``/``>`` wildcards) matches the concrete ``topic``, NATS semantics."""
    return match_tokens(pattern_tokens(pattern), topic_tokens(topic))
