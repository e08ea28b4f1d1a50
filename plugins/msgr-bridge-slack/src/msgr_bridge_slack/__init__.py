"""msgr-bridge Slack connector (slack_sdk): a workspace account linked with an OAuth user token (plus the
app's Socket Mode token) or a browser session, read in order through Socket Mode or RTM, written through
the Web API as the person. See docs/networks/slack.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgr_bridge.sdk.registration import ConnectorDescription, plugin_hooks

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

register_connectors, __getattr__ = plugin_hooks(DESCRIPTION, SlackConnector="msgr_bridge_slack.connector")
