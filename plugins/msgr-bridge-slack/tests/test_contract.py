"""The Slack connector passes the connector contract suite against the fake Slack, in both modes: an
OAuth user token read through Socket Mode, and a browser session read through RTM.

The other person is ``bob``, with his own token and slack_sdk client; what he observes is the fake's
workspace (what his Slack client would show)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from msgr_bridge_slack import SlackConnector
from msgr_bridge_slack.mrkdwn import shortcode_of
from slack_world import FAST, Slack, eventually

from msgr_bridge.connectors.protocol import Connector, RawPayload
from msgr_bridge.schema import ReactionAction
from msgr_bridge.testing.contract import ConnectorContract
from msgr_bridge.testing.fakes import CollectingSink, make_context
from msgr_bridge.testing.harness import WAIT_S, ConnectorHarness


class SlackHarness(ConnectorHarness):
    connector_class = SlackConnector
    can_restart = True

    def __init__(self, slack: Slack, mode: str) -> None:
        super().__init__()
        self.slack, self.mode = slack, mode
        self.conversation_id = slack.general.id

    def link_settings(self) -> Mapping[str, Any]:
        return {"api_url": self.slack.fake.base_url, **FAST}

    def link_answers(self) -> Mapping[str, str]:
        return self.slack.secrets(self.mode)

    def bad_link_answers(self) -> Mapping[str, str]:
        if self.mode == "rtm":
            return {"token": "xoxc-1-bogus", "cookie_d": "xoxd-bogus"}
        return {"token": "xoxp-1-bogus", "app_token": self.slack.app_token.value}

    async def build_connector(self, *, state: Any = None) -> Connector:
        result = await self.link()  # what the core does: operator settings under the stored ones
        ctx = make_context(
            "slack",
            remote_user_id=result.remote_user_id,
            settings={**self.link_settings(), **result.settings},
            secrets=result.secrets,
            sink=CollectingSink(),
            state=state,
        )
        return SlackConnector(ctx)

    def _mine(self) -> list[Any]:
        me = self.slack.me.id
        return [m for m in self.slack.general.messages.values() if m.user == me]

    async def peer_send(self, text: str) -> str | None:
        sent = await self.slack.bob_web.chat_postMessage(channel=self.conversation_id, text=text)
        return str(sent["ts"])

    async def peer_settle(self) -> None:
        await self.slack.bob_web.auth_test()

    async def peer_wait_message(self, text: str) -> str:
        found = await eventually(lambda: [m.text for m in self._mine() if text in m.text], WAIT_S)
        return str(found[0])

    async def peer_sees_edit(self, target_id: str, text: str) -> None:
        await eventually(lambda: any(m.ts == target_id and m.text == text and m.edited for m in self._mine()))

    async def peer_sees_delete(self, target_id: str) -> None:
        await eventually(lambda: target_id not in self.slack.general.messages)

    async def peer_sees_reaction(self, target_id: str, emoji: str, action: ReactionAction) -> None:
        name, me = shortcode_of(emoji), self.slack.me.id

        def seen() -> bool:
            msg = self.slack.general.messages.get(target_id)
            has = msg is not None and me in msg.reactions.get(name, [])
            return has if action == ReactionAction.ADD else not has

        await eventually(seen)

    async def peer_sees_read(self, up_to_id: str) -> None:
        await eventually(lambda: self.slack.general.last_read.get(self.slack.me.id) == up_to_id)

    async def stop_server(self) -> None:
        await self.slack.fake.stop()

    async def start_server(self) -> None:
        await self.slack.fake.start()

    def sample_payloads(self) -> Sequence[RawPayload]:
        me, bob, chan = self.slack.me.id, self.slack.bob.id, self.conversation_id
        base = {
            "v": 1,
            "self_id": me,
            "source": self.mode,
            "users": {bob: "Bob"},
            "received_ts": "1700000000.5",
        }
        msg = {"type": "message", "channel": chan, "user": bob, "ts": "1700000000.000100"}
        return [
            {**base, "event": {**msg, "text": "hello *world* <@" + me + "> &lt;3 :tada:"}},
            {
                **base,
                "event": {
                    **msg,
                    "text": "in thread",
                    "ts": "1700000001.000200",
                    "thread_ts": "1700000000.000100",
                },
            },
            {
                **base,
                "event": {
                    **msg,
                    "subtype": "file_share",
                    "text": "",
                    "files": [
                        {
                            "id": "F1",
                            "name": "a.png",
                            "mimetype": "image/png",
                            "size": 3,
                            "url_private": "https://x/a",
                        }
                    ],
                },
            },
            {
                **base,
                "event": {
                    "type": "message",
                    "subtype": "message_changed",
                    "channel": chan,
                    "ts": "1700000002.0",
                    "message": {**msg, "text": "new", "edited": {"ts": "1"}},
                },
            },
            {
                **base,
                "event": {
                    "type": "message",
                    "subtype": "message_deleted",
                    "channel": chan,
                    "ts": "1700000003.0",
                    "deleted_ts": "1700000000.000100",
                },
            },
            {
                **base,
                "event": {
                    "type": "reaction_added",
                    "user": bob,
                    "reaction": "+1",
                    "event_ts": "1700000004.0",
                    "item": {"type": "message", "channel": chan, "ts": "1700000000.000100"},
                },
            },
            {
                **base,
                "event": {
                    "type": "member_joined_channel",
                    "user": bob,
                    "channel": chan,
                    "event_ts": "1700000005.0",
                },
            },
            {**base, "event": {"type": "channel_marked", "channel": chan, "ts": "1700000000.000100"}},
            {**base, "event": {"type": "user_typing", "channel": chan, "user": bob}},
        ]


@pytest.fixture(params=["socket_mode", "rtm"])
async def connector_harness(slack: Slack, request: pytest.FixtureRequest) -> AsyncIterator[SlackHarness]:
    harness = SlackHarness(slack, request.param)
    await harness.start()
    yield harness
    await harness.aclose()


class TestContract(ConnectorContract):
    pass
