"""`/health` and `/ready` say only ok or not without a token; details need admin (issue #10, item 15)."""

from __future__ import annotations

from msgr_bridge.plugins import PluginReport

from .conftest import Start


async def test_health_without_a_token_says_only_ok_or_not(start: Start) -> None:
    async with start() as api:
        account = await api.link("alice", "pw-alice")
        api.bridge.registry.reports.append(
            PluginReport("evil", "evil-dist", error="ImportError: /srv/secret/path.py failed")
        )
        reader = await api.token("read:*")
        for path in ("/health", "/ready"):
            async with api.http.get(api.base + path) as r:
                body = await r.json()
            assert set(body) <= {"status", "ready"}, body
            assert body["status"] == "degraded"
            status, body = await api.call("GET", path, reader)
            assert set(body) <= {"status", "ready"}, body
            status, body = await api.call("GET", path)  # admin
            assert account in body["accounts"] and body["plugin_errors"][0]["name"] == "evil"
            assert "database" in body
        status, body = await api.call("GET", "/health", "mb_not_a_token")
        assert status == 401 and body["code"] == "token_unknown"
