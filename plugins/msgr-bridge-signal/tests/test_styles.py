"""Outbound styles and mentions: the canonical formatted text in signal-cli-rest-api's styled syntax, sent
only when that is lossless, and mentions in UTF-16 positions; read back by the fake the way the REST API
reads them."""

from __future__ import annotations

from msgr_bridge_signal.styles import mentions, styled, text_fields

from msgr_bridge.schema import Mention, OutboundMessage, TextFormat
from msgr_bridge.testing.fakes.signal_styles import parse_styled

BOB = "+15550100002"


def msg(
    text: str, formatted: str | None = None, fmt: TextFormat = TextFormat.HTML, **kw: object
) -> OutboundMessage:
    return OutboundMessage(txn_id="t", text=text, formatted=formatted, format=fmt, **kw)  # type: ignore[arg-type]


def test_html_styles_become_markers_the_rest_api_reads_back() -> None:
    m = msg("bold, italic, gone, code and secret", "<b>bold</b>, <em>italic</em>, <del>gone</del>, "
            "<code>code</code> and <span data-mx-spoiler>secret</span>")  # fmt: skip
    marked = styled(m)
    assert marked == "**bold**, *italic*, ~gone~, `code` and ||secret||"
    text, styles = parse_styled(marked)
    assert text == m.text
    assert styles == ["0:4:BOLD", "6:6:ITALIC", "14:4:STRIKETHROUGH", "20:4:MONOSPACE", "29:6:SPOILER"]


def test_markdown_styles() -> None:
    marked = styled(msg("very bold and slanted", "very **bold** and _slanted_", TextFormat.MARKDOWN))
    assert marked == "very **bold** and *slanted*"
    assert parse_styled(marked or "") == ("very bold and slanted", ["5:4:BOLD", "14:7:ITALIC"])


def test_text_the_styled_parser_would_eat_goes_plain() -> None:
    # signal-cli-rest-api drops every * ~ | and backtick in styled mode: 2*3 would arrive as 23
    m = msg("2*3 is <6", "<b>2*3</b> is &lt;6")
    assert styled(m) is None
    assert text_fields(m) == {"message": "2*3 is <6"}


def test_plain_text_and_formatting_without_styles_stay_normal() -> None:
    assert text_fields(msg("hello")) == {"message": "hello"}
    assert text_fields(msg("a link", '<a href="https://example.org">a link</a>')) == {"message": "a link"}


def test_mentions_are_placed_in_utf16_units() -> None:
    text = "😀 hi @Bob!"
    m = msg(text, mentions=(Mention(user_id=BOB, offset=5, length=4),))
    assert text_fields(m)["mentions"] == [{"author": BOB, "start": 6, "length": 4}]  # the emoji is 2 units


def test_mentions_without_a_place_or_a_signal_id_are_left_out() -> None:
    found = (
        Mention(user_id=BOB),
        Mention(user_id="@bob:matrix.org", offset=0, length=3),
        Mention(user_id=BOB, offset=10, length=5),  # past the end
    )
    assert mentions("hey Bob", found) == []


def test_styles_are_dropped_rather_than_moving_mentions() -> None:
    m = msg("hi Bob", "<b>hi</b> <i>Bob</i> extra", mentions=(Mention(user_id=BOB, offset=3, length=3),))
    fields = text_fields(m)
    assert fields["message"] == "hi Bob" and "text_mode" not in fields
    assert fields["mentions"] == [{"author": BOB, "start": 3, "length": 3}]
