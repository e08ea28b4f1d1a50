"""What signal-cli-rest-api does with ``text_mode: "styled"`` and ``mentions`` on ``/v2/send``, for the fake.

Styled mode reads markers: ``**bold**``, ``*italic*``, ``~strikethrough~``, ```mono```, ``||spoiler||``.
Like the real parser it has no escape, drops every ``*``, ``~``, ``|`` and backtick from the text (marker
or not), does not nest, and counts positions in UTF-16 code units. The result is the text Signal carries
and its ranges as ``start:length:STYLE`` (signal-cli's ``--text-style`` form).
"""

from __future__ import annotations

from typing import Any

SINGLE = {"~": "STRIKETHROUGH", "`": "MONOSPACE"}


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_styled(message: str) -> tuple[str, list[str]]:
    out: list[str] = []
    size = 0
    styles: list[str] = []
    state: str | None = None
    start = 0
    last = ""

    def close(style: str) -> None:
        nonlocal state
        styles.append(f"{start}:{size - start}:{style}")
        state = None

    for ch in message:
        if ch == "*":
            if state is None:
                state, start = "italic", size
            elif state == "italic":
                if last == "*":
                    state, start = "bold", size
                else:
                    close("ITALIC")
            elif state == "bold":
                state = "bold-end"
            elif state == "bold-end":
                close("BOLD")
        elif ch == "|":
            if state is None:
                state = "spoiler-half"
            elif state == "spoiler-half" and last == "|":
                state, start = "spoiler", size
            elif state == "spoiler":
                state = "spoiler-end"
            elif state == "spoiler-end" and last == "|":
                close("SPOILER")
        elif ch in SINGLE:
            if state is None:
                state, start = ch, size
            elif state == ch:
                close(SINGLE[ch])
        else:
            out.append(ch)
            size += utf16_len(ch)
        last = ch
    return "".join(out), styles


def mention_error(text: str, mention: dict[str, Any], known: bool) -> str | None:
    """Why signal-cli would refuse this mention of ``text``, or None."""
    start, length = mention.get("start"), mention.get("length")
    if not known:
        return f"Failed to send message: Invalid mention: unknown recipient {mention.get('author')!r}"
    if not isinstance(start, int) or not isinstance(length, int) or start < 0 or length < 1:
        return "Failed to send message: Invalid mention syntax"
    if start + length > utf16_len(text):
        return "Failed to send message: Invalid mention: range outside the message"
    return None
