"""Operations over the API as the web app uses them: outbox list/retry/cancel, API tokens, audit verify."""

from __future__ import annotations

from datetime import timedelta

from msgr_bridge.store.repos.outbox import OutboxAction, OutboxRepo
from msgr_bridge.store.types import utcnow
from msgr_bridge.testing.waiting import wait_until

from .conftest import Start


async def test_outbox_list_cancel_and_retry(start: Start) -> None:
    async with start() as api:
        account = await api.link("alice", "pw-alice")
        repo = OutboxRepo(api.bridge.db)
        later = utcnow() + timedelta(hours=1)  # due later: it stays queued while the test runs
        entry, _ = await repo.create(
            api.bridge.tenant, account, "g", OutboxAction.SEND, {"text": "hi"}, not_before=later
        )
        dead, _ = await repo.create(
            api.bridge.tenant, account, "g", OutboxAction.SEND, {"text": "x"}, not_before=later
        )
        await repo.dead_letter(dead.id, "the network refused it")
        status, listed = await api.call("GET", "/v1/outbox")
        assert status == 200 and "dead" in listed["states"]
        assert {entry.id, dead.id} <= {e["outbox_id"] for e in listed["entries"]}
        status, only_dead = await api.call("GET", "/v1/outbox?state=dead")
        assert [e["outbox_id"] for e in only_dead["entries"]] == [dead.id]
        assert only_dead["entries"][0]["error"] == "the network refused it"
        status, _ = await api.call("GET", "/v1/outbox?state=bogus")
        assert status == 422

        status, body = await api.call("DELETE", f"/v1/outbox/{entry.id}")
        assert status == 200 and body["state"] == "cancelled"
        status, body = await api.call("DELETE", f"/v1/outbox/{entry.id}")
        assert status == 409 and body["code"] == "outbox_state"
        status, body = await api.call("POST", f"/v1/outbox/{dead.id}/retry")
        assert status == 200 and body["state"] == "queued"

        async def settled() -> bool:  # the retried entry goes out now: let it finish before the bridge stops
            e = await repo.get(dead.id)
            return e is not None and e.state.value not in ("queued", "sending")

        await wait_until(settled)
        status, missing = await api.call("POST", "/v1/outbox/nope/retry")
        assert status == 404 and missing["code"] == "outbox_entry_not_found"
        reader = await api.token("read:*")
        status, _ = await api.call("DELETE", f"/v1/outbox/{dead.id}", token=reader)
        assert status == 403
        status, report = await api.call("GET", "/v1/audit/verify")
        assert report["ok"]


async def test_tokens_create_list_revoke(start: Start) -> None:
    async with start() as api:
        status, new = await api.call(
            "POST", "/v1/tokens", json={"name": "phone", "scopes": ["read:*"], "ttl_s": 3600}
        )
        assert status == 201 and new["token"].startswith("mb_") and new["scopes"] == ["read:*"]
        assert new["expires_at"] is not None
        status, _ = await api.call("GET", "/v1/accounts", token=new["token"])
        assert status == 200
        status, listed = await api.call("GET", "/v1/tokens")
        assert new["id"] in {t["id"] for t in listed["tokens"]}
        assert all("token" not in t for t in listed["tokens"])
        status, bad = await api.call("POST", "/v1/tokens", json={"name": "x", "scopes": ["fly:*"]})
        assert status == 422 and bad["errors"][0]["field"] == "scopes"
        status, revoked = await api.call("DELETE", f"/v1/tokens/{new['id']}")
        assert status == 200 and revoked["status"] == "revoked"
        status, _ = await api.call("DELETE", "/v1/tokens/tok_missing")
        assert status == 404
        reader = await api.token("read:*")
        status, body = await api.call("GET", "/v1/tokens", token=reader)
        assert status == 403 and body["code"] == "scope_missing"


async def test_audit_verify(start: Start) -> None:
    async with start() as api:
        await api.call("POST", "/v1/tokens", json={"name": "audited", "scopes": ["read:*"]})
        status, report = await api.call("GET", "/v1/audit/verify")
        assert status == 200 and report["ok"] is True and report["rows_checked"] >= 1
        assert report["head"]
