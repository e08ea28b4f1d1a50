"""msgr-bridge: one self-hosted process that links your chat accounts into one canonical message store.

The public API for plugin authors is re-exported here; everything else is internal.
"""

from .connectors.base import BaseConnector
from .connectors.protocol import Connector as Connector
from .connectors.protocol import (
    ConnectorContext,
    FormField,
    LinkFlow,
    LinkResult,
    LinkStep,
    LinkStepKind,
    SyncSnapshot,
)
from .errors import (
    AuthenticationFailed,
    BridgeError,
    MalformedPayload,
    NotSupported,
    PermanentError,
    RateLimited,
    TransientError,
)
from .hookspecs import hookimpl
from .schema import (
    SCHEMA_VERSION,
    Account,
    Attachment,
    Capabilities,
    Contact,
    Conversation,
    Delete,
    DeliveryState,
    DeliveryStatus,
    Edit,
    MembershipChange,
    Message,
    MessageReceipt,
    OutboundMessage,
    Reaction,
    ReadReceipt,
    ReceiptState,
    Sender,
    SendResult,
    Typing,
)

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "Account",
    "Attachment",
    "AuthenticationFailed",
    "BaseConnector",
    "BridgeError",
    "Capabilities",
    "Connector",
    "ConnectorContext",
    "Contact",
    "Conversation",
    "Delete",
    "DeliveryState",
    "DeliveryStatus",
    "Edit",
    "FormField",
    "LinkFlow",
    "LinkResult",
    "LinkStep",
    "LinkStepKind",
    "MalformedPayload",
    "MembershipChange",
    "Message",
    "MessageReceipt",
    "NotSupported",
    "OutboundMessage",
    "PermanentError",
    "RateLimited",
    "Reaction",
    "ReadReceipt",
    "ReceiptState",
    "SendResult",
    "Sender",
    "SyncSnapshot",
    "TransientError",
    "Typing",
    "__version__",
    "hookimpl",
]
