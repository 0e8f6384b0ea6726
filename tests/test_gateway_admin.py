"""`/admin/*`: off without `UPTAX_ADMIN_KEY` (404), 401 without the key, and with it the status,
breaker commands and faults, each logged with who gave it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_ops_support import ops_config
from structlog.testing import capture_logs

from runtime.gateway import GatewayServer, open_gateway
from runtime.gateway.admin import ADMIN_KEY_ENV

KEY = "adm-" + "k" * 28
AUTH = {"authorization": f"Bearer {KEY}", "x-uptax-operator": "ops-alice"}
ASK = [{"role": "user", "content": "What is the VAT rate on books?"}]


@pytest.fixture
async def gateway(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[GatewayServer]:
    monkeypatch.setenv(ADMIN_KEY_ENV, KEY)
    async with open_gateway(ops_config()) as server:
        yield server


@pytest.fixture
async def admin(gateway: GatewayServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        yield http


async def test_without_an_admin_key_configured_the_admin_api_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    async with (
        open_gateway(ops_config()) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=60) as http,
    ):
        for method, path in [
            ("GET", "/admin/status"),
            ("POST", "/admin/breakers/alpha"),
            ("PUT", "/admin/faults/alpha"),
            ("DELETE", "/admin/faults/alpha"),
        ]:
            response = await http.request(method, path, headers=AUTH, json={"action": "open"})
            assert response.status_code == 404, (method, path)
        assert server.rt.status().providers[0].breaker == "closed"


async def test_a_missing_or_wrong_key_is_refused(admin: httpx.AsyncClient) -> None:
    assert (await admin.get("/admin/status")).status_code == 401
    wrong = await admin.get("/admin/status", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert KEY not in wrong.text
    basic = await admin.get("/admin/status", headers={"authorization": f"Basic {KEY}"})
    assert basic.status_code == 401


async def test_status_is_the_runtime_s_status_as_json(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/admin/status", headers=AUTH)
    assert response.status_code == 200
    status = response.json()
    assert [p["name"] for p in status["providers"]] == ["alpha", "beta"]
    assert status["providers"][0]["breaker"] == "closed"
    assert status["requests_in_flight"] == 0


async def test_breaker_commands_are_applied_and_logged(
    gateway: GatewayServer, admin: httpx.AsyncClient
) -> None:
    with capture_logs() as logs:
        opened = await admin.post("/admin/breakers/alpha", headers=AUTH, json={"action": "open"})
    assert opened.status_code == 200 and opened.json()["provider"] == "alpha"
    assert gateway.rt.status().providers[0].breaker == "forced_open"
    answer = await admin.post("/v1/chat/completions", json={"model": "uptax/auto", "messages": ASK})
    assert answer.headers["x-uptax-provider"] == "beta"
    auto = await admin.post("/admin/breakers/alpha", headers=AUTH, json={"action": "auto"})
    assert auto.status_code == 200
    assert gateway.rt.status().providers[0].breaker == "closed"
    [event] = [e for e in logs if e["event"] == "gateway_admin_action"]
    assert event["action"] == "breaker open" and event["provider"] == "alpha"
    assert event["operator"] == "ops-alice" and event["client"].startswith("127.0.0.1:")
    assert KEY not in repr(logs)


async def test_bad_breaker_commands_name_what_is_wrong(admin: httpx.AsyncClient) -> None:
    bad = await admin.post("/admin/breakers/alpha", headers=AUTH, json={"action": "explode"})
    assert bad.status_code == 400 and "action" in bad.json()["error"]["message"]
    disable = await admin.post("/admin/breakers/alpha", headers=AUTH, json={"action": "disable"})
    assert disable.status_code == 400
    unknown = await admin.post("/admin/breakers/omega", headers=AUTH, json={"action": "open"})
    assert unknown.status_code == 404 and "omega" in unknown.json()["error"]["message"]
    broken = await admin.post("/admin/breakers/alpha", headers=AUTH, content=b"{")
    assert broken.status_code == 400


async def test_faults_are_injected_and_healed(
    gateway: GatewayServer, admin: httpx.AsyncClient
) -> None:
    with capture_logs() as logs:
        put = await admin.put(
            "/admin/faults/alpha", headers=AUTH, json={"kind": "outage", "status": 503}
        )
        assert put.status_code == 200
        assert put.json()["fault"]["kind"] == "outage"
        answer = await admin.post(
            "/v1/chat/completions", json={"model": "uptax/auto", "messages": ASK}
        )
        assert answer.headers["x-uptax-provider"] == "beta"
        assert answer.headers["x-uptax-fallback"] == "true"
        healed = await admin.delete("/admin/faults/alpha", headers=AUTH)
        assert healed.status_code == 200
    actions = [e["action"] for e in logs if e["event"] == "gateway_admin_action"]
    assert actions == ["fault", "heal"]
    bad = await admin.put("/admin/faults/alpha", headers=AUTH, json={"kind": "gremlins"})
    assert bad.status_code == 400 and "kind" in bad.json()["error"]["message"]
    field = await admin.put(
        "/admin/faults/alpha", headers=AUTH, json={"kind": "errors", "rate": "x"}
    )
    assert field.status_code == 400 and "rate" in field.json()["error"]["message"]
    unknown = await admin.delete("/admin/faults/omega", headers=AUTH)
    assert unknown.status_code == 404


async def test_a_bug_is_logged_and_answered_in_the_apis_error_shape(
    gateway: GatewayServer, admin: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception is no bare "Internal Server Error" with nothing in the log: the
    operator sees it, with its traceback, and the caller gets the API's error shape."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(gateway.rt, "set_breaker", broken)
    monkeypatch.setattr(gateway.rt, "complete", broken)
    with capture_logs() as logs:
        breaker = await admin.post("/admin/breakers/alpha", headers=AUTH, json={"action": "open"})
        chat = await admin.post(
            "/v1/messages", json={"model": "m", "max_tokens": 5, "messages": ASK}
        )
    assert breaker.status_code == 500
    assert breaker.json()["error"]["type"] == "server_error"
    assert chat.status_code == 500 and chat.json()["error"]["type"] == "api_error"
    errors = [log for log in logs if log["event"] == "gateway_error"]
    assert [(e["log_level"], e["path"], e["error"]) for e in errors] == [
        ("error", "/admin/breakers/alpha", "RuntimeError"),
        ("error", "/v1/messages", "RuntimeError"),
    ]
    assert all(isinstance(e["exc_info"], Exception) for e in errors)  # the traceback's
