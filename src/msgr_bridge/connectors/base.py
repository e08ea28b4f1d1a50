"""``BaseConnector``: defaults for the connector contract.

Subclass it, set the class attributes, and override what your network can do. Every optional action
defaults to raising ``NotSupported`` naming the capability, so a connector that declares a capability false
and forgets nothing is honest by construction. ``check_capability`` lets the core (and tests) verify that
declared capabilities and implemented methods agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import NotSupported
from ..schema import Account, Capabilities, Event, OutboundMessage, ReactionAction, SendResult
from .protocol import ConnectorContext, LinkFlow, RawPayload, SyncSnapshot

if TYPE_CHECKING:
    from ..sdk.registration import ConnectorDescription

# Which method implements which capability flag (for NotSupported and the contract suite).
CAPABILITY_METHODS: Mapping[str, str] = {
    "edits": "edit",
    "deletes": "delete",
    "reactions": "react",
    "read_receipts": "mark_read",
    "typing": "set_typing",
}


class BaseConnector:
    network: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    capabilities: ClassVar[Capabilities] = Capabilities()
    settings_model: ClassVar[type[Any] | None] = None
    """A pydantic model of the account's settings (``msgr_bridge.sdk.settings``), or None."""
    unsupported_reason: ClassVar[str | None] = None
    """Set when the network cannot be bridged at all (Snapchat): listed with this reason, never linked."""

    def __init_subclass__(cls, description: ConnectorDescription | None = None, **kw: Any) -> None:
        """``class IrcConnector(BaseConnector, description=DESCRIPTION)`` takes the network, display name,
        version, capabilities and settings model from the plugin's light description, and ``link_flow`` and
        ``convert`` from its references (unless the class defines them), so each is written once."""
        super().__init_subclass__(**kw)
        if description is None:
            return
        from ..sdk.registration import load_object

        cls.network, cls.display_name = description.network, description.display_name
        cls.version, cls.capabilities = description.version, description.capabilities
        if description.settings_model is not None:
            cls.settings_model = description.settings_model
        if description.link_callback and "link_callback" not in vars(cls):
            setattr(cls, "link_callback", True)  # noqa: B010 (the OAuth redirect URI, ``linking``)
        loaded = cache(lambda ref: load_object(ref, network=description.network))
        if (flow := description.link_flow) is not None and "link_flow" not in vars(cls):
            cls.link_flow = classmethod(lambda _cls, settings: loaded(flow)(settings))  # type: ignore[method-assign,assignment]
        if (conv := description.convert) is not None and "convert" not in vars(cls):
            cls.convert = staticmethod(lambda payload, account: loaded(conv)(payload, account))  # type: ignore[method-assign]

    def __init__(self, ctx: ConnectorContext) -> None:
        self.ctx = ctx
        self.log = ctx.log.bind(network=self.network, account=ctx.account.id)

    # --- linking and conversion (class level) -------------------------------------------------------

    @classmethod
    def link_flow(cls, settings: Mapping[str, Any]) -> LinkFlow:
        raise NotSupported("account linking", network=cls.network)

    @staticmethod
    def convert(payload: RawPayload, account: Account) -> Sequence[Event]:
        raise NotImplementedError("a connector must implement convert()")

    def conversation_capabilities(self, conversation_id: str) -> Capabilities:
        return self.capabilities

    # --- lifecycle ----------------------------------------------------------------------------------

    async def connect(self) -> None:
        raise NotImplementedError("a connector must implement connect()")

    async def subscribe(self) -> None:
        raise NotImplementedError("a connector must implement subscribe()")

    async def disconnect(self) -> None:
        return None

    # --- outbound -----------------------------------------------------------------------------------

    async def send_message(self, conversation_id: str, message: OutboundMessage) -> SendResult:
        raise NotSupported("send", network=self.network)

    async def edit(self, conversation_id: str, target_id: str, message: OutboundMessage) -> SendResult:
        raise NotSupported("edits", network=self.network)

    async def delete(self, conversation_id: str, target_id: str) -> None:
        raise NotSupported("deletes", network=self.network)

    async def react(self, conversation_id: str, target_id: str, emoji: str, action: ReactionAction) -> None:
        raise NotSupported("reactions", network=self.network)

    async def mark_read(self, conversation_id: str, up_to_id: str) -> None:
        raise NotSupported("read_receipts", network=self.network)

    async def set_typing(self, conversation_id: str, active: bool) -> None:
        raise NotSupported("typing", network=self.network)

    async def sync_state(self, cursor: str | None) -> SyncSnapshot:
        return SyncSnapshot(cursor=cursor, complete=False)


def describe(connector: type[Any]) -> dict[str, Any]:
    """A JSON-ready description of a connector class (for ``msgr-bridge plugins --json`` and the API)."""
    caps: Capabilities = connector.capabilities
    unsupported: str | None = getattr(connector, "unsupported_reason", None)
    return {
        "network": connector.network,
        "display_name": getattr(connector, "display_name", "") or connector.network,
        "version": getattr(connector, "version", "0"),
        "capabilities": caps.model_dump(mode="json"),
        "supported": unsupported is None,
        "unsupported_reason": unsupported,
    }
