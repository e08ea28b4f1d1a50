"""Pure IRC: line parsing, case mapping, the room a line leaves for text; conversion of payloads (ids, tags,
CTCP, memberships) and fuzzing (MalformedPayload only). Splitting and pacing: tests/sdk."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgr_bridge_irc.convert import convert, irc_lower, parse_line, text_budget

from msgr_bridge import Account, MalformedPayload
from msgr_bridge.schema import MembershipAction

ACCOUNT = Account(id="acct", network="irc", remote_user_id="irc.test/me")


def payload(line: str, **extra: Any) -> dict[str, Any]:
    return {"v": 1, "server": "IRC.test", "self_nick": "Me", "received_at": "2026-01-02T03:04:05+00:00",
            "line": line, "casemapping": "rfc1459", **extra}  # fmt: skip


def test_msgid_and_server_time_tags_are_used() -> None:
    (m,) = convert(payload("@msgid=abc;time=2026-05-06T07:08:09.123Z :Al!a@h PRIVMSG #Chan :hi"), ACCOUNT)
    assert m.remote_id == "abc" and m.timestamp.year == 2026 and m.timestamp.month == 5
    assert m.conversation_id == "irc.test/#chan" and m.sender.user_id == "irc.test/al"


def test_synthesized_ids_are_stable_and_distinct() -> None:
    p = payload(":Al!a@h PRIVMSG #c :hi")
    assert convert(p, ACCOUNT)[0].remote_id == convert(dict(p), ACCOUNT)[0].remote_id
    other = payload(":Al!a@h PRIVMSG #c :hi", received_at="2026-01-02T03:04:06+00:00")
    assert convert(p, ACCOUNT)[0].remote_id != convert(other, ACCOUNT)[0].remote_id


def test_own_echo_is_self_and_carries_the_label_as_txn_id() -> None:
    (m,) = convert(payload("@label=txn-1 :me!x@h PRIVMSG Bob :yo"), ACCOUNT)
    assert m.sender.is_self and m.txn_id == "txn-1" and m.conversation_id == "irc.test/bob"
    (n,) = convert(payload("@label=txn-1 :Bob!x@h PRIVMSG Me :yo"), ACCOUNT)
    assert not n.sender.is_self and n.txn_id is None and n.conversation_id == "irc.test/bob"


def test_rfc1459_casemapping_folds_brackets() -> None:
    (m,) = convert(payload(":[Al]!a@h PRIVMSG me :x"), ACCOUNT)
    assert m.conversation_id == "irc.test/{al}"


def test_ctcp_and_server_notices() -> None:
    assert convert(payload(":Al!a@h PRIVMSG #c :\x01VERSION\x01"), ACCOUNT) == []
    assert convert(payload(":irc.test NOTICE * :*** Looking up your hostname"), ACCOUNT) == []
    (m,) = convert(payload(":Al!a@h NOTICE #c :\x01ACTION sighs\x01"), ACCOUNT)
    assert m.text == "/me sighs"


def test_quit_and_nick_apply_to_each_shared_channel() -> None:
    quits = convert(payload(":Al!a@h QUIT :gone", channels=["#a", "#b"]), ACCOUNT)
    leave = MembershipAction.LEAVE
    assert [(e.conversation_id, e.action, e.reason) for e in quits] == [
        ("irc.test/#a", leave, "gone"),
        ("irc.test/#b", leave, "gone"),
    ]
    (rename,) = convert(payload(":Al!a@h NICK :Bo", channels=["#a"]), ACCOUNT)
    assert rename.action is MembershipAction.RENAME and rename.new_name == "Bo"


def test_kick_names_actor_and_target() -> None:
    (k,) = convert(payload(":Op!o@h KICK #c Al :spam"), ACCOUNT)
    assert k.user.display_name == "Al" and k.actor.display_name == "Op" and k.reason == "spam"


@pytest.mark.parametrize(
    "bad",
    [
        None, [], {}, {"v": 2}, payload(""), payload(":only.prefix"), payload(":Al!a@h JOIN notachannel"),
        payload(":Al!a@h QUIT :x", channels="#a"), payload(":Al!a@h NICK"), payload(":srv KICK #c"),
        payload(":Al!a@h PRIVMSG #c :x", received_at="yesterday"),
        payload(":Al!a@h PRIVMSG #c :x", received_at="2026-01-01T00:00:00"),
        payload(":Al!a@h PRIVMSG #c :x", server=""),
    ],
)  # fmt: skip
def test_malformed_payloads_are_refused(bad: Any) -> None:
    with pytest.raises(MalformedPayload):
        convert(bad, ACCOUNT)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
irc_lines = st.builds(
    lambda tags, prefix, cmd, params: f"{tags}{prefix}{cmd} {params}",
    st.sampled_from(["", "@time=2026-01-01T00:00:00Z ", "@msgid=x;label=y ", "@time=bogus ", "@=;; "]),
    st.sampled_from(["", ":Al!a@h ", ":me!m@h ", ":server ", ": ", ":!@ "]),
    st.sampled_from(["PRIVMSG", "NOTICE", "JOIN", "PART", "KICK", "QUIT", "NICK", "PING", "001", ""]),
    st.text(max_size=40),
)


@settings(max_examples=400, deadline=None)
@given(
    line=irc_lines | st.text(max_size=60),
    channels=json_values,
    extra=st.dictionaries(
        st.sampled_from(["v", "server", "self_nick", "received_at", "casemapping", "chantypes"]), json_values
    ),
)
def test_fuzzed_payloads_convert_or_raise_malformed(line: str, channels: Any, extra: dict[str, Any]) -> None:
    p = {**payload(line, channels=channels), **extra}
    with contextlib.suppress(MalformedPayload):
        convert(p, ACCOUNT)


@settings(max_examples=200, deadline=None)
@given(st.one_of(json_values, st.dictionaries(st.text(max_size=10), json_values)))
def test_fuzzed_garbage_raises_only_malformed(value: Any) -> None:
    with contextlib.suppress(MalformedPayload):
        convert(value, ACCOUNT)


# --- the wire ---


def test_parse_line_with_tags_prefix_and_trailing() -> None:
    line = parse_line(r"@time=2026-01-01T00:00:00Z;x=a\sb\:c :nick!u@h PRIVMSG #chan :hello :world")
    assert line.tags == {"time": "2026-01-01T00:00:00Z", "x": "a b;c"}
    assert (line.nick, line.command, line.params) == ("nick", "PRIVMSG", ("#chan", "hello :world"))
    assert parse_line("PING :abc").params == ("abc",) and not parse_line("PING x").from_user
    with pytest.raises(ValueError):
        parse_line(":prefix.only")


def test_casemapping() -> None:
    assert irc_lower("A[B]\\~", "rfc1459") == "a{b}|^"
    assert irc_lower("A[B]", "ascii") == "a[b]"


def test_budget_counts_prefix_command_target_and_crlf() -> None:
    nick, room, target = "bridge", len("!~bridge@127.0.0.1"), "#chan"
    budget = text_budget(nick, room, "PRIVMSG", target)
    assert len(f":{nick}!~bridge@127.0.0.1 PRIVMSG {target} :".encode()) + budget + 2 == 512
