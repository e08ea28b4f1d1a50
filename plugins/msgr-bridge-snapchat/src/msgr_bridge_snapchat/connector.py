"""The Snapchat connector: all capabilities false, every call a ``NotSupported`` that gives the reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from msgr_bridge import BaseConnector, NotSupported
from msgr_bridge.connectors.protocol import LinkFlow, RawPayload, SyncSnapshot
from msgr_bridge.schema import Account, Capabilities, Event, OutboundMessage, SendResult

REASON = (
    "Snap offers no third-party messaging API: Login Kit and Creative Kit only sign people in and share "
    "content into Snapchat, and automating the app or its web client breaks Snap's terms and gets accounts "
    "locked. msgr-bridge will not pretend otherwise."
)


def _refuse(what: str) -> NotSupported:
    return NotSupported(what, network=SnapchatConnector.network, hint=REASON)


class SnapchatConnector(BaseConnector):
    network: ClassVar[str] = "snapchat"
    display_name: ClassVar[str] = "Snapchat (unsupported)"
    version: ClassVar[str] = "0.1.0"
    capabilities: ClassVar[Capabilities] = Capabilities(send=False)
    unsupported_reason: ClassVar[str | None] = REASON

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        raise _refuse("account linking")

    @staticmethod
    def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
        raise _refuse("receiving")

    async def connect(self) -> None:
        raise _refuse("connecting")

    async def subscribe(self) -> None:
        raise _refuse("receiving")

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        raise _refuse("send")

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        raise _refuse("history_catchup")
