"""Outbound attachment bytes: the place the connector SDK's media helpers plug in.

A connector has no door to the bridge's media storage yet, so ``open_attachment`` refuses every attachment
with ``NotSupported`` (and the connector declares ``attachments=()``). Once the SDK can stream a stored
attachment, this returns that stream and ``SlackWeb.upload`` sends it through Slack's external upload flow,
which is implemented and tested already.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from msgr_bridge.errors import NotSupported
from msgr_bridge.schema import Attachment

from .convert import NETWORK


def open_attachment(attachment: Attachment) -> AsyncIterator[bytes]:
    """The bytes of an outbound attachment, streamed (never read from a URL or a local path)."""
    raise NotSupported("attachments", network=NETWORK, hint="needs the connector SDK's media helpers")
