"""The problem middleware: a database outage is a 503 the client retries, never a 500 with a traceback."""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.exc import OperationalError, ProgrammingError

from msgr_bridge.api.problems import problem_middleware


async def _client(error: Exception) -> TestClient[web.Request, web.Application]:
    async def fail(request: web.Request) -> web.Response:
        raise error

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/fail", fail)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_an_unreachable_database_is_a_503_with_retry_after_and_no_traceback() -> None:
    refused = OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "Connection refused"))
    client = await _client(refused)
    try:
        with structlog.testing.capture_logs() as logs:
            response = await client.get("/fail")
            body = await response.json(content_type=None)
        assert response.status == 503 and body["code"] == "database_unavailable"
        assert response.headers["Retry-After"] == "5"
        assert not [e for e in logs if e["event"] == "api.unhandled"]
    finally:
        await client.close()


async def test_a_refused_statement_is_still_an_internal_error_logged_once() -> None:
    client = await _client(ProgrammingError("SELECT nope", {}, Exception("syntax error")))
    try:
        with structlog.testing.capture_logs() as logs:
            response = await client.get("/fail")
        assert response.status == 500
        assert [e["event"] for e in logs] == ["api.unhandled"]
    finally:
        await client.close()
