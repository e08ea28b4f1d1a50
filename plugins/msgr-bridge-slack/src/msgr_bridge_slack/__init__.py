"""msgr-bridge Slack connector (slack_sdk): a workspace account linked with an OAuth user token (plus the
app's Socket Mode token) or a browser session, read in order through Socket Mode or RTM, written through
the Web API as the person. See docs/networks/slack.md."""

from __future__ import annotations

import msgr_bridge

from .connector import SlackConnector

__all__ = ["SlackConnector", "register_connectors"]


@msgr_bridge.hookimpl
def register_connectors() -> list[type[SlackConnector]]:
    return [SlackConnector]
