"""The resolver a remote fetch connects through (``msgr_bridge.sdk.fetch.CheckedResolver``): every address a
name resolves to is checked, and what aiohttp connects to is exactly the checked list (no second lookup
that a DNS rebinding could answer differently)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from aiohttp.abc import ResolveResult

from msgr_bridge.errors import AttachmentRefused
from msgr_bridge.sdk.fetch import CheckedResolver
from msgr_bridge.sdk.urls import AddressRules


class ScriptedResolver:
    """Answers each lookup with the next list of addresses (a rebinding DNS server)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups = 0

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        self.lookups += 1
        return [
            ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0)
            for a in self.answers.pop(0)
        ]

    async def close(self) -> None:
        pass


def checked(inner: ScriptedResolver, rules: AddressRules | None = None) -> CheckedResolver:
    resolver = CheckedResolver(rules or AddressRules())
    resolver._inner = inner  # type: ignore[assignment]
    return resolver


async def test_one_private_address_among_public_ones_refuses_the_name() -> None:
    with pytest.raises(AttachmentRefused, match=r"rebind\.example is at 127\.0\.0\.1"):
        await checked(ScriptedResolver(["93.184.215.14", "127.0.0.1"])).resolve("rebind.example", 80)


async def test_the_checked_answer_is_what_gets_connected_to() -> None:
    inner = ScriptedResolver(["93.184.215.14"], ["127.0.0.1"])
    resolver = checked(inner)
    first = await resolver.resolve("rebind.example", 80)
    assert [r["host"] for r in first] == ["93.184.215.14"] and inner.lookups == 1
    with pytest.raises(AttachmentRefused):  # the next lookup (a new connection) is checked again
        await resolver.resolve("rebind.example", 80)
