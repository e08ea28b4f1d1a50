"""Accounts and linking through the real API: link flow, list, capabilities, unlink, OpenAPI coverage."""

from __future__ import annotations

import ssl
from typing import Any

from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.api.app import build_app
from msgr_bridge.credentials.base import CredentialStore
from msgr_bridge.linking import MAX_FAILED_ANSWERS
from msgr_bridge.store import audit

from .conftest import Start


async def test_link_list_and_unlink(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        acct = await api.link("alice", "pw-alice")
        status, body = await api.call("GET", "/v1/accounts")
        assert status == 200
        [a] = body["accounts"]
        assert a["id"] == acct and a["remote_user_id"] == "alice" and a["state"] == "connected"
        assert a["capabilities"]["edits"] is True
        creds = api.bridge.credentials
        assert isinstance(creds, CredentialStore)
        assert await creds.get(acct, "password") == "pw-alice"

        status, body = await api.call("GET", "/v1/networks")
        assert status == 200 and "loopback" in {n["network"] for n in body["networks"]}

        status, body = await api.call("DELETE", f"/v1/accounts/{acct}")
        assert status == 200 and body["unlinked"] is True
        assert await creds.keys(acct) == []
        status, body = await api.call("GET", "/v1/accounts")
        assert body["accounts"] == []
        status, body = await api.call("GET", f"/v1/accounts/{acct}")
        assert status == 404 and body["code"] == "account_not_found"
        async with api.bridge.db.session() as s:
            actions = [e.action for e in await audit.entries(s)]
        assert "account.link" in actions and "account.unlink" in actions


async def test_a_wrong_answer_is_answered_again_and_the_same_flow_links(start: Start) -> None:
    """Regression: a wrong password used to fail the flow; the person could only start over."""
    async with start() as api:
        status, flow = await api.call(
            "POST", "/v1/links", json={"network": "loopback", "settings": {"network": "api"}}
        )
        answers = f"/v1/links/{flow['id']}/answers"
        status, refused = await api.call(
            "POST", answers, json={"answers": {"user_id": "alice", "password": "no"}}
        )
        assert status == 200 and refused["status"] == "pending" and "refused" in refused["error"]
        assert refused["step"] == flow["step"]  # the same step, to answer again
        status, polled = await api.call("GET", f"/v1/links/{flow['id']}")
        assert polled["status"] == "pending" and polled["error"] == refused["error"]
        status, done = await api.call(
            "POST", answers, json={"answers": {"user_id": "alice", "password": "pw-alice"}}
        )
        assert status == 200 and done["status"] == "linked" and done["error"] is None, done
        assert done["account"]["remote_user_id"] == "alice"


async def test_link_answers_take_numbers_and_booleans(start: Start) -> None:
    """Regression: a number in the answers was refused with 422 "not a string"."""
    async with start() as api:
        status, flow = await api.call(
            "POST", "/v1/links", json={"network": "loopback", "settings": {"network": "api"}}
        )
        fields = {f["name"]: f for f in flow["step"]["fields"]}
        assert fields["history_page"]["type"] == "integer" and fields["history_page"]["default"] == 5000
        answers = {"user_id": "bob", "password": "pw-bob", "history_page": 250}
        status, done = await api.call("POST", f"/v1/links/{flow['id']}/answers", json={"answers": answers})
        assert status == 200 and done["status"] == "linked", done
        record = await api.bridge.accounts.get(done["account"]["id"])
        assert record is not None and record.settings["history_page"] == 250
        # an out-of-range number is refused with the setting's name, and the flow stays open
        status, flow = await api.call("POST", "/v1/links", json={"network": "loopback"})
        bad = {"user_id": "carol", "password": "pw-carol", "history_page": 0, "network": "api"}
        status, refused = await api.call("POST", f"/v1/links/{flow['id']}/answers", json={"answers": bad})
        assert refused["status"] == "pending" and "history_page" in refused["error"], refused


async def test_an_error_without_text_still_gives_a_reason(start: Start, net: LoopbackNetwork) -> None:
    """Regression: an exception with an empty ``str()`` (a TLS mismatch) ended the flow with no reason
    (and one that was not a ``BridgeError`` became a 500)."""
    async with start() as api:
        net.inject_fault("link", ssl.SSLError())
        status, flow = await api.call(
            "POST", "/v1/links", json={"network": "loopback", "settings": {"network": "api"}}
        )
        answers = {"user_id": "alice", "password": "pw-alice"}
        status, refused = await api.call("POST", f"/v1/links/{flow['id']}/answers", json={"answers": answers})
        assert status == 200 and refused["status"] == "pending", refused
        assert "TLS" in refused["error"] and "SSLError" in refused["error"]


async def test_repeated_wrong_answers_end_the_flow_and_unknown_network_is_422(start: Start) -> None:
    async with start() as api:
        status, flow = await api.call(
            "POST", "/v1/links", json={"network": "loopback", "settings": {"network": "api"}}
        )
        for _ in range(MAX_FAILED_ANSWERS):
            status, done = await api.call(
                "POST",
                f"/v1/links/{flow['id']}/answers",
                json={"answers": {"user_id": "alice", "password": "nope"}},
            )
        assert status == 200 and done["status"] == "failed" and "refused" in done["error"]
        status, polled = await api.call("GET", f"/v1/links/{flow['id']}")
        assert polled["status"] == "failed"
        status, body = await api.call("POST", f"/v1/links/{flow['id']}/answers", json={"answers": {}})
        assert status == 400
        status, body = await api.call("POST", "/v1/links", json={"network": "nowhere"})
        assert status == 422 and body["capability"] == "network"
        status, body = await api.call("GET", "/v1/links/link_missing")
        assert status == 404 and body["code"] == "link_flow_not_found"


async def test_cancel_and_qr_png(start: Start) -> None:
    async with start() as api:
        from msgr_bridge.api.routes.links import qr_png

        png = qr_png("msgr://link/abc")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        status, flow = await api.call(
            "POST", "/v1/links", json={"network": "loopback", "settings": {"network": "api"}}
        )
        status, body = await api.call("GET", f"/v1/links/{flow['id']}/qr.png")
        assert status == 404  # a credentials form has no QR code
        status, body = await api.call("DELETE", f"/v1/links/{flow['id']}")
        assert status == 200 and body["status"] == "cancelled"


async def test_openapi_documents_exactly_the_routes(start: Start) -> None:
    async with start() as api:
        async with api.http.get(api.base + "/openapi.json") as r:  # public: no token
            assert r.status == 200
            doc = await r.json()
        assert doc["openapi"] == "3.1.0"
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        app = build_app(api.bridge, api.bridge.api.services)
        registered = {
            (r.method, r.resource.canonical)
            for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None
        }
        assert registered == documented


async def test_health_and_ready_need_no_token(start: Start) -> None:
    async with start() as api:
        for path in ("/health", "/ready"):
            async with api.http.get(api.base + path) as r:
                assert r.status == 200


async def test_the_link_flow_is_closed_before_the_accounts_connection_starts(start: Start) -> None:
    """A flow's ``close()`` (its test connection) runs before the real connection (IRC's ``nick_`` case)."""
    from msgr_bridge_loopback.connector import LoopbackConnector
    from msgr_bridge_loopback.link import LoopbackLinkFlow

    order: list[str] = []

    class Flow(LoopbackLinkFlow):
        async def submit(self, answers: Any) -> Any:
            result = await super().submit(answers)
            order.append("answered")
            return result

        async def close(self) -> None:
            order.append("closed")
            await super().close()

    class Connector(LoopbackConnector):
        @classmethod
        def link_flow(cls, settings: Any) -> Any:
            return Flow(settings)

        async def connect(self) -> None:
            order.append("connect")
            await super().connect()

    async with start() as api:
        api.bridge.registry.connectors["loopback"] = Connector
        await api.link("alice", "pw-alice")
    assert order[order.index("answered") :][:3] == ["answered", "closed", "connect"], order


async def test_an_account_with_invalid_settings_is_not_started_and_says_why(start: Start) -> None:
    from msgr_bridge.schema import Account
    from msgr_bridge.testing.waiting import wait_until

    async with start() as api:
        bridge = api.bridge
        record = await bridge.accounts.create(
            Account(id="acct-bad", tenant=bridge.tenant, network="loopback", remote_user_id="alice"),
            settings={"network": "api", "history_page": 0},
        )
        assert bridge.start_account(record) is None
        assert bridge.supervisor.runtime("acct-bad") is None

        async def reason() -> str | None:
            stored = await bridge.accounts.get("acct-bad")
            return stored.state_reason if stored else None

        await wait_until(reason, timeout=5)
        assert "history_page" in (await reason() or "")
