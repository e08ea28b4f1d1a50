"""msgr-bridge Slack connector (slack_sdk): a workspace account linked with an OAuth user token (plus the
app's Socket Mode token) or a browser session, read in order through Socket Mode or RTM, written through
the Web API as the person. See docs/networks/slack.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgr_bridge import hookimpl
from msgr_bridge.sdk.registration import ConnectorDescription

from .config import CAPABILITIES

if TYPE_CHECKING:
    from .connector import SlackConnector

__all__ = ["DESCRIPTION", "SlackConnector", "register_connectors"]

# Light registration: the connector module (and its client library) loads when the first account starts.
DESCRIPTION = ConnectorDescription(
    network="slack",
    display_name="Slack",
    version="0.1.0",
    capabilities=CAPABILITIES,
    settings_model=None,
    connector="msgr_bridge_slack.connector:SlackConnector",
)


@hookimpl
def register_connectors() -> list[ConnectorDescription]:
    return [DESCRIPTION]


def __getattr__(name: str) -> Any:
    """``SlackConnector`` imports on first use (PEP 562), not with the plugin."""
    if name == "SlackConnector":
        from .connector import SlackConnector

        return SlackConnector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
