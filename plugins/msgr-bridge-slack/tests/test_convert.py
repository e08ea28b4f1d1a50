"""convert and mrkdwn: pure functions, tested on payloads shaped as Slack sends them."""

from __future__ import annotations

from typing import Any

import pytest
from msgr_bridge_slack.convert import convert
from msgr_bridge_slack.mrkdwn import from_markdown, shortcode_of, to_canonical, with_mentions

from msgr_bridge.errors import MalformedPayload
from msgr_bridge.schema import (
    Account,
    Delete,
    Edit,
    MembershipAction,
    MembershipChange,
    Mention,
    Message,
    Reaction,
    ReactionAction,
    ReadReceipt,
    TextFormat,
    Typing,
)

ACCOUNT = Account(id="acct-1", network="slack", remote_user_id="UME")
USERS = {"UBOB": "Bob", "UME": "Me"}


def one(event: dict[str, Any], **extra: Any) -> Any:
    payload = {
        "v": 1,
        "self_id": "UME",
        "source": "socket_mode",
        "users": USERS,
        "event": event,
        "received_ts": "1700000009.0",
        **extra,
    }
    (converted,) = convert(payload, ACCOUNT)
    return converted


def msg(**fields: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "channel": "C1",
        "user": "UBOB",
        "ts": "1700000000.000100",
        "text": "",
        **fields,
    }


def test_message_with_mention_formatting_and_emoji() -> None:
    m = one(msg(text="hi <@UME>, *look* at <https://x.org/a?b=1&amp;c=2|this> :tada: &lt;3"))
    assert isinstance(m, Message)
    assert (m.conversation_id, m.remote_id, m.thread_id) == ("C1", "1700000000.000100", None)
    assert m.text == "hi @Me, look at this 🎉 <3".replace("look", "*look*")
    assert m.formatted == "hi @Me, **look** at [this](https://x.org/a?b=1&c=2) 🎉 <3"
    assert m.format == TextFormat.MARKDOWN
    assert m.mentions == (Mention(user_id="UME", display="Me", offset=3, length=3),)
    assert m.sender.display_name == "Bob" and not m.sender.is_self
    assert m.timestamp.timestamp() == pytest.approx(1700000000.0001)


def test_plain_text_stays_plain_and_own_messages_are_ours() -> None:
    m = one(msg(user="UME", text="just words"))
    assert (m.text, m.formatted, m.format, m.sender.is_self) == ("just words", None, TextFormat.PLAIN, True)


def test_code_is_left_alone_and_quotes_become_markdown_quotes() -> None:
    m = one(msg(text="&gt; quoted *bold*\n`*not bold*` ```a_b_c```"))
    assert m.formatted == "> quoted **bold**\n`*not bold*` ```a_b_c```"


def test_thread_reply_and_broadcast_carry_the_thread() -> None:
    reply = one(msg(ts="1700000001.000200", thread_ts="1700000000.000100", text="r"))
    parent = one(msg(thread_ts="1700000000.000100", text="p"))
    broadcast = one(
        msg(ts="1700000002.0", thread_ts="1700000000.000100", subtype="thread_broadcast", text="b")
    )
    assert (reply.thread_id, parent.thread_id, broadcast.thread_id) == (
        "1700000000.000100",
        None,
        "1700000000.000100",
    )


def test_files_become_attachments() -> None:
    f = {"id": "F1", "name": "a.png", "mimetype": "image/png", "size": 3, "url_private": "https://f/a.png"}
    m = one(msg(subtype="file_share", files=[f]))
    (a,) = m.attachments
    assert (a.name, a.mime_type, a.size, a.url, a.remote_id) == (
        "a.png",
        "image/png",
        3,
        "https://f/a.png",
        "F1",
    )


def test_edit_delete_and_reply_count_changes() -> None:
    changed = msg(text="new <@UBOB>", edited={"user": "UBOB", "ts": "1700000005.0"})
    e = one(
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": "C1",
            "ts": "1700000005.0",
            "message": changed,
        }
    )
    assert isinstance(e, Edit) and (e.target_id, e.text) == ("1700000000.000100", "new @Bob")
    d = one(
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": "C1",
            "ts": "1700000006.0",
            "deleted_ts": "1700000000.000100",
        }
    )
    assert isinstance(d, Delete) and d.target_id == "1700000000.000100"
    # Slack also sends message_changed when only a thread's reply count moved: that is no edit
    payload = {
        "v": 1,
        "self_id": "UME",
        "users": {},
        "event": {
            "type": "message",
            "subtype": "message_changed",
            "channel": "C1",
            "ts": "1700000007.0",
            "message": msg(text="same", reply_count=2),
        },
    }
    assert convert(payload, ACCOUNT) == []


def test_reactions_membership_marks_and_typing() -> None:
    item = {"type": "message", "channel": "C1", "ts": "1700000000.000100"}
    r = one(
        {
            "type": "reaction_removed",
            "user": "UBOB",
            "reaction": "+1",
            "item": item,
            "event_ts": "1700000003.0",
        }
    )
    assert isinstance(r, Reaction) and (r.emoji, r.action, r.target_id) == (
        "👍",
        ReactionAction.REMOVE,
        item["ts"],
    )
    unknown = one(
        {
            "type": "reaction_added",
            "user": "UBOB",
            "reaction": "partyparrot",
            "item": item,
            "event_ts": "1700000003.0",
        }
    )
    assert unknown.emoji == ":partyparrot:"
    j = one(
        {
            "type": "member_joined_channel",
            "user": "UBOB",
            "channel": "C1",
            "inviter": "UME",
            "event_ts": "1700000004.0",
        }
    )
    assert (
        isinstance(j, MembershipChange) and j.action == MembershipAction.JOIN and j.actor and j.actor.is_self
    )
    left = one({"type": "member_left_channel", "user": "UBOB", "channel": "C1"})
    assert left.action == MembershipAction.LEAVE
    mark = one({"type": "im_marked", "channel": "D1", "ts": "1700000000.000100"})
    assert isinstance(mark, ReadReceipt) and mark.reader.is_self and mark.up_to_id == "1700000000.000100"
    t = one({"type": "user_typing", "channel": "C1", "user": "UBOB"})
    assert isinstance(t, Typing) and t.user.user_id == "UBOB"


def test_events_without_meaning_convert_to_nothing() -> None:
    for event in (
        {"type": "user_change", "user": {"id": "UBOB"}},
        msg(subtype="channel_join"),
        {"type": "hello"},
    ):
        assert convert({"v": 1, "self_id": "UME", "event": event}, ACCOUNT) == []


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {"v": 2, "self_id": "UME", "event": msg()},
        {"v": 1, "event": msg()},
        {"v": 1, "self_id": "UME", "event": msg(ts="yesterday")},
        {"v": 1, "self_id": "UME", "event": msg(ts="1e400")},
        {"v": 1, "self_id": "UME", "event": msg(text=5)},
        {"v": 1, "self_id": "UME", "event": msg(files="nope")},
        {"v": 1, "self_id": "UME", "users": ["UBOB"], "event": msg()},
        {
            "v": 1,
            "self_id": "UME",
            "event": {"type": "message", "subtype": "message_changed", "channel": "C1"},
        },
    ],
)
def test_malformed_payloads_are_refused(payload: Any) -> None:
    with pytest.raises(MalformedPayload):
        convert(payload, ACCOUNT)


def test_outbound_markdown_and_mentions_become_mrkdwn() -> None:
    assert from_markdown("**bold** *it* ~~gone~~ [site](https://x.org/?a=1) `**code**` a<b") == (
        "*bold* _it_ ~gone~ <https://x.org/?a=1|site> `**code**` a&lt;b"
    )
    assert with_mentions("hi Bob & <@UEVIL>", (Mention(user_id="UBOB", offset=3, length=3),)) == (
        "hi <@UBOB> &amp; &lt;@UEVIL&gt;"
    )
    assert (shortcode_of("👍"), shortcode_of("🎉"), shortcode_of(":custom:")) == ("+1", "tada", "custom")


def test_round_trip_of_styles() -> None:
    rendered = to_canonical("*a* _b_ ~c~", {})
    assert from_markdown(rendered.markdown) == "*a* _b_ ~c~"
