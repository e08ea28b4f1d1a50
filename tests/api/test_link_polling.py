"""``GET /v1/links/{id}`` shows the current QR code of a flow whose code rotates (WhatsApp, Telegram), so a
web page simply polls it; the link answers keep their JSON types; linking needs the ``admin`` scope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from msgr_bridge_loopback import LoopbackConnector, LoopbackNetwork

from msgr_bridge import LinkResult, LinkStep, LinkStepKind
from msgr_bridge import linking as linking_module

from .conftest import Start


class RotatingQrFlow:
    """A QR flow like WhatsApp's: each empty answer shows the current (new) code, or the account once the
    phone scanned it."""

    refresh_on_poll = True

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.codes = 0
        self.scanned = False
        self.answers: list[Mapping[str, Any]] = []

    def _step(self) -> LinkStep:
        self.codes += 1
        return LinkStep(kind=LinkStepKind.QR_CODE, prompt="scan", qr_data=f"code-{self.codes}")

    async def start(self) -> LinkStep:
        return self._step()

    async def submit(self, answers: Mapping[str, Any]) -> LinkStep | LinkResult:
        self.answers.append(dict(answers))
        if not self.scanned:
            return self._step()
        return LinkResult(
            remote_user_id="alice", settings={"network": "api"}, secrets={"password": "pw-alice"}
        )

    async def cancel(self) -> None:
        return None


class FixedQrFlow(RotatingQrFlow):
    """A QR step that needs a real answer (Signal's: the phone number): a GET must not answer it."""

    refresh_on_poll = False


def _connector(flow_cls: type[RotatingQrFlow], flows: list[RotatingQrFlow]) -> type[LoopbackConnector]:
    class Connector(LoopbackConnector):
        @classmethod
        def link_flow(cls, settings: Any) -> Any:
            flows.append(flow_cls(settings))
            return flows[-1]

    return Connector


async def test_polling_a_qr_flow_shows_the_current_code_then_the_account(
    start: Start, net: LoopbackNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    flows: list[RotatingQrFlow] = []
    async with start() as api:
        api.bridge.registry.connectors["loopback"] = _connector(RotatingQrFlow, flows)
        status, flow = await api.call("POST", "/v1/links", json={"network": "loopback"})
        assert status == 201 and flow["step"]["qr_data"] == "code-1"
        first_png = flow["step"]["qr_png_data_uri"]

        status, polled = await api.call("GET", f"/v1/links/{flow['id']}")
        assert status == 200 and polled["step"]["qr_data"] == "code-2", polled
        assert polled["step"]["qr_png_data_uri"] != first_png
        status, again = await api.call("GET", f"/v1/links/{flow['id']}")  # within POLL_EVERY_S: as it is
        assert again["step"]["qr_data"] == "code-2" and flows[0].answers == [{}]

        monkeypatch.setattr(linking_module, "POLL_EVERY_S", 0.0)
        _, polled = await api.call("GET", f"/v1/links/{flow['id']}")
        assert polled["step"]["qr_data"] == "code-3"
        async with api.http.get(api.base + f"/v1/links/{flow['id']}/qr.png", headers=api.h()) as r:
            assert r.status == 200 and r.content_type == "image/png"

        flows[0].scanned = True
        _, done = await api.call("GET", f"/v1/links/{flow['id']}")
        assert done["status"] == "linked" and done["account"]["remote_user_id"] == "alice", done
        _, after = await api.call("GET", f"/v1/links/{flow['id']}")  # finished: no more answers
        assert after["status"] == "linked" and len(flows[0].answers) == 3


async def test_a_qr_step_that_needs_an_answer_is_not_answered_by_a_poll(
    start: Start, net: LoopbackNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    flows: list[RotatingQrFlow] = []
    monkeypatch.setattr(linking_module, "POLL_EVERY_S", 0.0)
    async with start() as api:
        api.bridge.registry.connectors["loopback"] = _connector(FixedQrFlow, flows)
        _, flow = await api.call("POST", "/v1/links", json={"network": "loopback"})
        for _ in range(3):
            _, polled = await api.call("GET", f"/v1/links/{flow['id']}")
            assert polled["step"]["qr_data"] == "code-1" and polled["status"] == "pending"
        assert flows[0].answers == []


class TypedFlow(FixedQrFlow):
    typed_answers = True


async def test_numbers_and_booleans_in_answers_keep_their_type_or_become_text(
    start: Start, net: LoopbackNetwork
) -> None:
    answers = {"port": 6697, "tls": True, "ratio": 0.5, "channels": ["#a", "#b"], "nick": "x"}
    for flow_cls, expected in (
        (TypedFlow, answers),
        (FixedQrFlow, {"port": "6697", "tls": "true", "ratio": "0.5", "channels": "#a,#b", "nick": "x"}),
    ):
        flows: list[RotatingQrFlow] = []
        async with start() as api:
            api.bridge.registry.connectors["loopback"] = _connector(flow_cls, flows)
            _, flow = await api.call("POST", "/v1/links", json={"network": "loopback"})
            status, body = await api.call(
                "POST", f"/v1/links/{flow['id']}/answers", json={"answers": answers}
            )
            assert status == 200 and body["error"] is None, body
            assert flows[0].answers == [expected]


async def test_linking_needs_the_admin_scope(start: Start, net: LoopbackNetwork) -> None:
    async with start() as api:
        for scope in ("read:*", "send:*"):
            token = await api.token(scope)
            status, body = await api.call("POST", "/v1/links", token=token, json={"network": "loopback"})
            assert (status, body["code"], body["scope"]) == (403, "scope_missing", "admin:*")
