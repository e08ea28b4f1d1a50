"""``GET /v1/networks`` describes every installed network; an unsupported one is listed with its reason and
a link attempt is a 422 that says it."""

from __future__ import annotations

from msgr_bridge_snapchat.connector import REASON

from .conftest import Start


async def test_networks_list_supported_and_unsupported_networks(start: Start) -> None:
    async with start() as api:
        status, body = await api.call("GET", "/v1/networks")
        assert status == 200
        by_name = {n["network"]: n for n in body["networks"]}
        assert by_name["loopback"]["supported"] is True and by_name["loopback"]["unsupported_reason"] is None
        assert by_name["snapchat"]["supported"] is False
        assert by_name["snapchat"]["unsupported_reason"] == REASON


async def test_linking_an_unsupported_network_is_a_422_giving_the_reason(start: Start) -> None:
    async with start() as api:
        status, problem = await api.call("POST", "/v1/links", json={"network": "snapchat"})
        assert status == 422, problem
        assert problem["code"] == "not_supported" and problem["network"] == "snapchat"
        assert "no third-party messaging API" in problem["hint"]
        status, accounts = await api.call("GET", "/v1/accounts")
        assert status == 200 and accounts["accounts"] == []
