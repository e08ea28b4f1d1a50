"""The event stream's pump holds nothing it has sent while it waits for more (issue 19: RSS after a burst:
the last batch of frames, and the first replayed page, stayed referenced for as long as the stream ran)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import CoroutineType
from typing import Any, cast

import anyio

from msgr_bridge.api.routes.events import pump
from msgr_bridge.inbound.hub import Client, EventHub
from msgr_bridge.store.tokens import Scope, TokenInfo
from msgr_bridge.testing.waiting import wait_until


class OnePageHub:
    async def replay(self, client: Client, cursor: int) -> tuple[list[str], int, bool]:
        return ["replayed frame"], cursor + 1, True


async def test_the_pump_holds_no_frame_it_sent_while_it_waits() -> None:
    token = TokenInfo(
        id="t", tenant="default", name="t", user_id=None, scopes=(Scope.parse("read:*"),),
        created_at=datetime.now(UTC),
    )  # fmt: skip
    client = Client(token, maxsize=10)
    sent: list[str] = []

    async def send(frames: list[str], last: int) -> None:
        sent.extend(frames)

    async def control(kind: str, last: int) -> None:
        sent.append(kind)

    hub: EventHub = OnePageHub()  # type: ignore[assignment]
    stream = cast("CoroutineType[Any, Any, None]", pump(hub, client, 0, send, control))

    async def run() -> None:
        await stream

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        client.put(2, None, "live frame")
        await wait_until(lambda: sent == ["replayed frame", "live", "live frame"])

        def held() -> list[str]:
            """The strings in the pump's local lists (and their tuples) while it waits for more."""
            found: list[str] = []
            assert stream.cr_frame is not None  # suspended, not finished
            for value in stream.cr_frame.f_locals.values():
                for item in value if isinstance(value, list) else []:
                    found += [x for x in (item if isinstance(item, tuple) else (item,)) if isinstance(x, str)]
            return found

        await wait_until(lambda: held() == [], timeout=2)
        client.end("shutdown")
    assert sent[-1] == "shutdown"
