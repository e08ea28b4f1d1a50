"""Accounts and linking through the real API: link flow, list, capabilities, unlink, OpenAPI coverage."""

from __future__ import annotations

from msgr_bridge_loopback import LoopbackNetwork

from msgr_bridge.api.app import build_app
from msgr_bridge.credentials.base import CredentialStore
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


async def test_wrong_password_fails_the_flow_and_unknown_network_is_422(start: Start) -> None:
    async with start() as api:
        status, flow = await api.call(
            "POST", "/v1/links", json={"network": "loopback", "settings": {"network": "api"}}
        )
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
        app = build_app(api.bridge)
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
