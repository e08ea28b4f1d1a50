"""The connector supervisor: one task per linked account, restarted with backoff, with a readable state.

Each account runs ``connect -> on_connected (state sync) -> subscribe`` in a loop. A crash or a
``TransientError`` marks the account ``transient_disconnect``, disconnects, waits (exponential backoff with
jitter) and starts again; ``AuthenticationFailed`` marks it ``bad_credentials`` and stops trying until the
account is relinked, so a dead login is reported instead of retried silently forever (mautrix's
BridgeState idea). Other parts read ``state(account_id)`` or listen through ``on_state``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from ..backoff import Backoff
from ..errors import AuthenticationFailed, BridgeError, describe_error
from ..schema import ConnectionState
from .protocol import Connector

log = structlog.get_logger("msgr_bridge.supervisor")

StateListener = Callable[[str, ConnectionState, str | None], Awaitable[None]]
ConnectedHook = Callable[["AccountRuntime"], Awaitable[None]]

STABLE_AFTER_S = 30.0
"""A connection that lived this long resets the backoff counter."""
STATE_WRITE_TIMEOUT_S = 10.0
"""How long a state change may wait to be stored (it is shielded from cancellation meanwhile)."""


@dataclass
class AccountRuntime:
    account_id: str
    connector: Connector
    state: ConnectionState = ConnectionState.STOPPED
    reason: str | None = None
    restarts: int = 0
    stopping: bool = False
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    _session_scope: anyio.CancelScope | None = None
    done: anyio.Event = field(default_factory=anyio.Event)

    def should_stop(self) -> bool:
        return self.stopping


class Supervisor:
    def __init__(
        self,
        *,
        backoff: Backoff | None = None,
        on_state: StateListener | None = None,
        on_connected: ConnectedHook | None = None,
    ) -> None:
        self.backoff = backoff or Backoff()
        self._on_state = on_state
        self._on_connected = on_connected
        self._runtimes: dict[str, AccountRuntime] = {}
        self._tg: TaskGroup | None = None

    # --- reading ------------------------------------------------------------------------------------

    def state(self, account_id: str) -> ConnectionState:
        rt = self._runtimes.get(account_id)
        return rt.state if rt else ConnectionState.STOPPED

    def runtime(self, account_id: str) -> AccountRuntime | None:
        return self._runtimes.get(account_id)

    def connector(self, account_id: str) -> Connector | None:
        rt = self._runtimes.get(account_id)
        return rt.connector if rt else None

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {
            aid: {"state": rt.state.value, "reason": rt.reason, "restarts": rt.restarts}
            for aid, rt in self._runtimes.items()
        }

    # --- lifecycle ----------------------------------------------------------------------------------

    async def __aenter__(self) -> Supervisor:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> bool | None:
        with anyio.CancelScope(shield=True):
            await self.stop_all()
        assert self._tg is not None
        return await self._tg.__aexit__(*exc)  # type: ignore[arg-type]

    def start(self, account_id: str, connector: Connector) -> AccountRuntime:
        if self._tg is None:
            raise RuntimeError("Supervisor.start() called outside 'async with supervisor'")
        if account_id in self._runtimes and not self._runtimes[account_id].done.is_set():
            raise BridgeError(f"account {account_id} is already running")
        rt = AccountRuntime(account_id=account_id, connector=connector)
        self._runtimes[account_id] = rt
        self._tg.start_soon(self._run, rt, name=f"connector:{account_id}")
        return rt

    async def stop(self, account_id: str, timeout: float = 10.0) -> None:
        """Disconnect one account cleanly; cancel it if it does not finish within ``timeout``."""
        rt = self._runtimes.get(account_id)
        if rt is None or rt.done.is_set():
            return
        rt.stopping = True
        with anyio.CancelScope(shield=True):
            if rt._session_scope is None:  # between sessions (backing off): nothing to disconnect
                rt.scope.cancel()
            else:
                with anyio.move_on_after(timeout):
                    try:
                        await rt.connector.disconnect()
                    except Exception as exc:  # a broken connector must not block shutdown
                        log.warning("connector.disconnect_failed", account=account_id, error=str(exc))
                    await rt.done.wait()
            rt.scope.cancel()
            with anyio.move_on_after(timeout):
                await rt.done.wait()

    async def stop_all(self, timeout: float = 10.0) -> None:
        async with anyio.create_task_group() as tg:
            for account_id in list(self._runtimes):
                tg.start_soon(self.stop, account_id, timeout)

    def reconnect(self, account_id: str, reason: str) -> None:
        """Drop the current session and reconnect (used when sync finds the connection deaf)."""
        rt = self._runtimes.get(account_id)
        if rt is not None and rt._session_scope is not None:
            log.warning("connector.forced_reconnect", account=account_id, reason=reason)
            rt.reason = reason
            rt._session_scope.cancel()

    # --- the loop -----------------------------------------------------------------------------------

    async def _set(self, rt: AccountRuntime, state: ConnectionState, reason: str | None = None) -> None:
        if rt.state == state and rt.reason == reason:
            return
        rt.state, rt.reason = state, reason
        log.info("connector.state", account=rt.account_id, state=state.value, reason=reason)
        if self._on_state is not None:
            try:
                # Shielded: the state is already set in memory, so a shutdown arriving while the write
                # waits for the database must not leave the stored state behind (bounded by a timeout).
                with anyio.CancelScope(shield=True), anyio.fail_after(STATE_WRITE_TIMEOUT_S):
                    await self._on_state(rt.account_id, state, reason)
            except Exception as exc:
                log.error("connector.state_listener_failed", account=rt.account_id, error=str(exc))

    async def _run(self, rt: AccountRuntime) -> None:
        attempt = 0
        try:
            with rt.scope:
                while not rt.should_stop():
                    started = anyio.current_time()
                    error = await self._session(rt)
                    if rt.should_stop():
                        break
                    if isinstance(error, AuthenticationFailed):
                        await self._set(rt, ConnectionState.BAD_CREDENTIALS, describe_error(error))
                        return
                    if anyio.current_time() - started > STABLE_AFTER_S:
                        attempt = 0
                    reason = (
                        rt.reason if error is None else f"{type(error).__name__}: {describe_error(error)}"
                    )
                    await self._set(rt, ConnectionState.TRANSIENT_DISCONNECT, reason)
                    with anyio.CancelScope(shield=True):
                        try:
                            await rt.connector.disconnect()
                        except Exception as exc:
                            log.warning("connector.disconnect_failed", account=rt.account_id, error=str(exc))
                    delay = self.backoff.delay(attempt)
                    attempt += 1
                    rt.restarts += 1
                    log.info(
                        "connector.retry", account=rt.account_id, delay_s=round(delay, 2), attempt=attempt
                    )
                    await anyio.sleep(delay)
        finally:
            with anyio.CancelScope(shield=True):
                if rt.state != ConnectionState.BAD_CREDENTIALS:
                    await self._set(rt, ConnectionState.STOPPED)
            rt.done.set()

    async def _session(self, rt: AccountRuntime) -> BaseException | None:
        """One connect/sync/subscribe session. Returns the error that ended it (None: ended on request)."""
        rt._session_scope = anyio.CancelScope()
        try:
            with rt._session_scope:
                await self._set(rt, ConnectionState.CONNECTING)
                await rt.connector.connect()
                await self._set(rt, ConnectionState.CONNECTED)
                if self._on_connected is not None:
                    await self._on_connected(rt)
                await rt.connector.subscribe()
                if not rt.should_stop():
                    return ConnectionError("subscribe() returned without disconnect()")
            return None
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # TransientError, AuthenticationFailed, or a crashed connector
            if not isinstance(exc, BridgeError):
                log.error("connector.crashed", account=rt.account_id, error=repr(exc), exc_info=exc)
            return exc
        finally:
            rt._session_scope = None
