"""``isolate = true``: neonize runs in a child process. Killing the child does not end the bridge's
supervisor: the account turns transient, is started again with a new child, and messages flow both ways
through it (the child's whatsmeow stand-in answers every send with ``echo: ...``)."""

from __future__ import annotations

import os
import signal

import pytest
from msgr_bridge_whatsapp.isolate import FAKE_ENV, ChildClient

from conftest import BOB, build
from msgr_bridge.backoff import Backoff
from msgr_bridge.connectors.supervisor import Supervisor
from msgr_bridge.schema import ConnectionState, Message, OutboundMessage
from msgr_bridge.testing.fakes import CollectingSink
from msgr_bridge.testing.waiting import wait_until


def converted(connector: object, sink: CollectingSink) -> list[str]:
    account = connector.ctx.account  # type: ignore[attr-defined]
    return [e.text for p in sink.payloads for e in connector.convert(p, account) if isinstance(e, Message)]  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_killing_the_child_reconnects_the_account_and_the_bridge_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FAKE_ENV, "echo")
    sink = CollectingSink()
    connector = build({"isolate": True}, sink=sink)
    states: list[tuple[ConnectionState, str | None]] = []

    async def seen(account_id: str, state: ConnectionState, reason: str | None) -> None:
        states.append((state, reason))

    async with Supervisor(backoff=Backoff(base_s=0.05, cap_s=0.2), on_state=seen) as supervisor:
        supervisor.start("acct-1", connector)
        await wait_until(lambda: supervisor.state("acct-1") == ConnectionState.CONNECTED, timeout=30)
        first = connector.wa
        assert isinstance(first, ChildClient) and first.pid is not None and first.pid != os.getpid()
        await connector.send_message(BOB, OutboundMessage(txn_id="t1", text="before"))
        await wait_until(lambda: "echo: before" in converted(connector, sink), timeout=20)

        os.kill(first.pid, signal.SIGKILL)  # the Go runtime crashes
        await wait_until(lambda: supervisor.runtime("acct-1").restarts >= 1, timeout=30)  # type: ignore[union-attr]
        await wait_until(
            lambda: supervisor.state("acct-1") == ConnectionState.CONNECTED and connector.wa is not first,
            timeout=30,
        )
        second = connector.wa
        assert isinstance(second, ChildClient) and second.pid != first.pid
        marked = [r for s, r in states if s is ConnectionState.TRANSIENT_DISCONNECT]
        assert marked and "WhatsApp client stopped" in str(marked[0]), states  # the account said why
        await connector.send_message(BOB, OutboundMessage(txn_id="t2", text="after"))
        await wait_until(lambda: "echo: after" in converted(connector, sink), timeout=20)
    assert supervisor.state("acct-1") == ConnectionState.STOPPED
