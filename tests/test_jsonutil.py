"""The hot-path JSON encoder: orjson's speed, without its refusals reaching the stream or the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from msgr_bridge.api.common import json_ok
from msgr_bridge.inbound.hub import encode
from msgr_bridge.jsonutil import dumps
from msgr_bridge.store.repos.event_log import LoggedEvent

ODD = {"size": 2**70, "ids": [2**64, -(2**65)], "by_number": {1: "one"}}


def test_values_orjson_refuses_are_encoded_by_the_stdlib() -> None:
    assert json.loads(dumps(ODD)) == {"size": 2**70, "ids": [2**64, -(2**65)], "by_number": {"1": "one"}}
    assert dumps({"text": "é", "n": 1}) == '{"text":"é","n":1}'


def test_a_stream_frame_carries_an_event_with_a_huge_integer() -> None:
    event = LoggedEvent(7, "t1", "a1", "c1", "message", {"attachments": [{"size": 2**70}]}, datetime.now(UTC))
    frame = json.loads(encode(event))
    assert frame["seq"] == 7 and frame["event"]["attachments"][0]["size"] == 2**70


def test_an_api_answer_carries_a_huge_integer() -> None:
    response = json_ok({"size": 2**70}, status=200)
    assert response.body is not None and json.loads(bytes(response.body)) == {"size": 2**70}
