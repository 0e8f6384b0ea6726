"""Tenants at the gateway, with the official openai SDK as the client on loopback against
simulated providers (real sockets, real time: wide timeouts): keys, allowed models and levels,
rate limits and budgets with `Retry-After`, spend that survives a restart, the last-resort
cache scoped per tenant, and the modes without tenants."""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import BASE

from actors.adapters.anthropic import AnthropicWire
from actors.config import Config, parse_config
from actors.errors import ConfigError
from actors.faults import Fault, FaultKind
from runtime.embed import open_runtime
from runtime.gateway import GatewayServer, open_gateway
from runtime.gateway.admin import AdminKey
from runtime.gateway.app import Gateway, _guarded
from runtime.gateway.errors import GatewayError
from runtime.gateway.ledger import seconds_left
from runtime.gateway.policy import open_access
from runtime.gateway.server import main as server_main
from runtime.gateway.tenants import MASTER_KEY_ENV, Authenticator, presented_key

openai = pytest.importorskip("openai")

ACME_KEY = "sk-acme-test-key"
GLOBEX_KEY = "sk-globex-test-key"
ASK = [{"role": "user", "content": "What is the VAT rate on books?"}]


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def tenants_config(ledger: Path | str, **acme: Any) -> Config:
    data = copy.deepcopy(BASE)
    data["gateway"] = {"ledger": str(ledger)}
    data["tenants"] = [
        {"name": "acme", "api_key_sha256": [sha(ACME_KEY)], **acme},
        {"name": "globex", "api_key_sha256": [sha(GLOBEX_KEY)]},
    ]
    return parse_config(data)


def client(server: GatewayServer, key: str = ACME_KEY) -> Any:
    return openai.AsyncOpenAI(
        base_url=server.base_url + "/v1", api_key=key, max_retries=0, timeout=60
    )


async def ask(server: GatewayServer, key: str = ACME_KEY, model: str = "uptax/auto") -> Any:
    return await client(server, key).chat.completions.with_raw_response.create(
        model=model, messages=ASK
    )


@pytest.fixture(autouse=True)
def no_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)


# -- keys --------------------------------------------------------------------------------------


def test_a_key_is_taken_from_bearer_or_x_api_key() -> None:
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"authorization": "bearer  abc "}) == "abc"
    assert presented_key({"x-api-key": "abc"}) == "abc"
    assert presented_key({"authorization": "Basic abc", "x-api-key": "def"}) == "def"
    assert presented_key({"authorization": "Bearer "}) is None
    assert presented_key({}) is None


async def test_a_missing_or_wrong_key_is_a_401(tmp_path: Path) -> None:
    async with open_gateway(tenants_config(tmp_path / "ledger.sqlite3")) as server:
        with pytest.raises(openai.AuthenticationError) as wrong:
            await ask(server, key="sk-not-a-key")
        assert wrong.value.status_code == 401
        assert wrong.value.code == "invalid_api_key"
        assert "sk-not-a-key" not in str(wrong.value.body)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            missing = await http.post("/v1/chat/completions", json={"model": "gpt-4o"})
            assert missing.status_code == 401
            assert missing.json()["error"]["type"] == "authentication_error"
            by_header = await http.post(
                "/v1/chat/completions",
                json={"model": "uptax/auto", "messages": ASK},
                headers={"x-api-key": GLOBEX_KEY},
            )
            assert by_header.status_code == 200


async def test_a_key_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = copy.deepcopy(BASE)
    data["gateway"] = {"ledger": str(tmp_path / "ledger.sqlite3")}
    data["tenants"] = [{"name": "acme", "api_key_env": "ACME_GATEWAY_KEY"}]
    config = parse_config(data)
    with pytest.raises(ConfigError, match=r"tenants\[0\]\.api_key_env: .*ACME_GATEWAY_KEY"):
        Authenticator.from_config(config, "127.0.0.1", {})
    monkeypatch.setenv("ACME_GATEWAY_KEY", "sk-from-env")
    async with open_gateway(config) as server:
        raw = await ask(server, key="sk-from-env")
        assert raw.parse().choices[0].message.content


# -- models and levels -------------------------------------------------------------------------


async def test_a_model_the_tenant_may_not_use_is_a_403(tmp_path: Path) -> None:
    config = tenants_config(tmp_path / "ledger.sqlite3", models=["uptax/auto", "gpt-4o"])
    async with open_gateway(config) as server:
        assert (await ask(server, model="gpt-4o")).headers["x-uptax-model"] == "gpt-4o"
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await ask(server, model="claude-sonnet")
        assert denied.value.code == "model_not_allowed"
        assert "claude-sonnet" in denied.value.message
        with pytest.raises(openai.PermissionDeniedError):
            await client(server).chat.completions.create(
                model="uptax/critical", messages=ASK, stream=True
            )
        # Another tenant's policy is its own.
        assert (await ask(server, GLOBEX_KEY, model="claude-sonnet")).parse().choices


async def test_levels_the_tenant_may_use(tmp_path: Path) -> None:
    config = tenants_config(tmp_path / "ledger.sqlite3", levels=["secondary", "last_resort"])
    async with open_gateway(config) as server:
        raw = await ask(server)
        assert (raw.headers["x-uptax-level"], raw.headers["x-uptax-provider"]) == (
            "secondary",
            "gemini",
        )
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await ask(server, model="gpt-4o")  # served at the primary level only
        assert denied.value.code == "level_not_allowed"


async def test_a_requests_budget_is_capped(tmp_path: Path) -> None:
    """A cap that no model fits sends the request to the free model (llama3, emergency)."""
    config = tenants_config(tmp_path / "ledger.sqlite3", max_budget_usd_per_request=0.0)
    async with open_gateway(config) as server:
        raw = await client(server).chat.completions.with_raw_response.create(
            model="uptax/auto", messages=ASK, extra_headers={"x-uptax-budget-usd": "10"}
        )
        assert raw.headers["x-uptax-model"] == "llama3"
        assert (await ask(server, GLOBEX_KEY)).headers["x-uptax-level"] == "primary"


# -- rate limits and budgets -------------------------------------------------------------------


async def test_over_the_rate_limit_is_a_429_with_retry_after(tmp_path: Path) -> None:
    config = tenants_config(tmp_path / "ledger.sqlite3", requests_per_minute=2)
    async with open_gateway(config) as server:
        await ask(server)
        await ask(server)
        with pytest.raises(openai.RateLimitError) as limited:
            await ask(server)
        assert limited.value.code == "rate_limit_exceeded"
        assert 1 <= int(limited.value.response.headers["retry-after"]) <= 30
        await ask(server, GLOBEX_KEY)  # the other tenant is not limited


async def test_a_spent_budget_is_a_429_until_the_day_ends_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    config = tenants_config(ledger, budget_usd_per_day=0.000001)
    async with open_gateway(config) as server:
        first = await ask(server)
        assert float(first.headers["x-uptax-cost-usd"]) > 0.000001
        await _budget_refused(server)
        await ask(server, GLOBEX_KEY)
        stream = await client(server, GLOBEX_KEY).chat.completions.create(
            model="uptax/auto", messages=ASK, stream=True
        )
        async for _ in stream:
            pass
    async with open_gateway(config) as server:  # the same ledger file: the spend is kept
        await _budget_refused(server)
    async with open_access(config, "127.0.0.1") as access:
        assert access.ledger is not None
        assert access.ledger.spent("acme").requests_today == 1
        assert access.ledger.spent("globex").requests_today == 2
        assert access.ledger.spent("globex").day_usd > 0


async def _budget_refused(server: GatewayServer) -> None:
    with pytest.raises(openai.RateLimitError) as refused:
        await ask(server)
    assert refused.value.code == "budget_exceeded"
    day_left, _ = seconds_left(time.time())
    assert abs(int(refused.value.response.headers["retry-after"]) - day_left) < 60


# -- the cache scope ---------------------------------------------------------------------------


async def test_the_last_resort_cache_is_scoped_per_tenant(tmp_path: Path) -> None:
    async with open_gateway(tenants_config(tmp_path / "ledger.sqlite3")) as server:
        first = (await ask(server)).parse().choices[0].message.content
        for name in ("openai", "anthropic", "gemini", "local"):
            server.rt.inject_fault(name, Fault(FaultKind.OUTAGE))
        cached = await ask(server)
        assert cached.headers["x-uptax-level"] == "last_resort"
        assert cached.parse().choices[0].message.content == first
        with pytest.raises(openai.APIStatusError) as failed:
            await ask(server, GLOBEX_KEY)  # the same question, another tenant: not acme's
        assert failed.value.status_code == 502


async def test_a_tenant_without_the_last_resort_gets_no_cached_answer(tmp_path: Path) -> None:
    config = tenants_config(tmp_path / "ledger.sqlite3", last_resort=False)
    async with open_gateway(config) as server:
        await ask(server)
        for name in ("openai", "anthropic", "gemini", "local"):
            server.rt.inject_fault(name, Fault(FaultKind.OUTAGE))
        with pytest.raises(openai.APIStatusError) as failed:
            await ask(server)
        assert failed.value.status_code == 502
        assert "cache" not in failed.value.message


# -- without tenants ---------------------------------------------------------------------------


async def test_without_tenants_loopback_takes_no_key() -> None:
    config = parse_config(copy.deepcopy(BASE))
    assert Authenticator.from_config(config, "127.0.0.1", {}).mode == "open"
    async with open_gateway(config) as server:
        assert (await ask(server, key="anything")).parse().choices
    with pytest.raises(ConfigError, match=MASTER_KEY_ENV):
        Authenticator.from_config(config, "0.0.0.0", {})


def test_serve_refuses_to_start_open_on_a_public_address(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert server_main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert "would answer anyone" in capsys.readouterr().err


def test_the_start_up_event_says_who_may_call() -> None:
    config = parse_config(copy.deepcopy(BASE))
    assert "loopback only" in Authenticator.from_config(config, "::1", {}).describe()
    master = Authenticator.from_config(config, "0.0.0.0", {MASTER_KEY_ENV: "sk-m"})
    assert MASTER_KEY_ENV in master.describe() and "sk-m" not in master.describe()
    with_tenants = Authenticator.from_config(
        tenants_config(Path("unused")), "0.0.0.0", {}
    ).describe()
    assert with_tenants == "API keys of 2 tenant(s): acme, globex"


async def test_without_tenants_the_master_key_is_required_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse_config(copy.deepcopy(BASE))
    assert Authenticator.from_config(config, "0.0.0.0", {MASTER_KEY_ENV: "m"}).mode == "master_key"
    monkeypatch.setenv(MASTER_KEY_ENV, "sk-master")
    async with open_gateway(config) as server:
        assert (await ask(server, key="sk-master")).parse().choices
        with pytest.raises(openai.AuthenticationError):
            await ask(server, key="sk-other")


# -- the Anthropic dialect ---------------------------------------------------------------------


async def _messages(gateway: Gateway, http: HTTPRequest, request_id: str) -> Response:
    body = await gateway.body(http)
    request = gateway.route(AnthropicWire().read_request(body), http, has_limit=True)
    reply = await gateway.complete(http, request)
    assert reply is not None
    return JSONResponse({"id": request_id, "content": [{"type": "text", "text": reply.text}]})


@pytest.fixture
async def anthropic_app(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = tenants_config(
        tmp_path / "ledger.sqlite3", models=["claude-haiku"], requests_per_minute=2
    )
    async with open_access(config, "127.0.0.1") as access, open_runtime(config) as rt:
        endpoint = _guarded("anthropic", "msg_", _messages)
        app = Starlette(routes=[Route("/v1/messages", endpoint, methods=["POST"])])
        app.state.gateway = Gateway(rt, access)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield http


async def test_refusals_come_in_the_anthropic_shape(anthropic_app: httpx.AsyncClient) -> None:
    body = {"model": "claude-haiku", "max_tokens": 50, "messages": ASK}
    missing = await anthropic_app.post("/v1/messages", json=body)
    assert missing.status_code == 401
    assert missing.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": missing.json()["error"]["message"]},
    }
    headers = {"x-api-key": ACME_KEY}
    denied = await anthropic_app.post(
        "/v1/messages", json={**body, "model": "claude-sonnet"}, headers=headers
    )
    assert (denied.status_code, denied.json()["error"]["type"]) == (403, "permission_error")
    ok = await anthropic_app.post("/v1/messages", json=body, headers=headers)
    assert ok.status_code == 200 and ok.json()["content"][0]["text"]
    limited = await anthropic_app.post("/v1/messages", json=body, headers=headers)
    assert (limited.status_code, limited.json()["error"]["type"]) == (429, "rate_limit_error")
    assert int(limited.headers["retry-after"]) >= 1


def test_the_admin_key_is_its_own_and_a_tenant_key_is_not_it() -> None:
    closed = AdminKey.from_environ("UPTAX_ADMIN_KEY", {})
    assert closed.digest is None  # the admin API is off: its paths answer 404
    guard = AdminKey.from_environ("OPS_KEY", {"OPS_KEY": "sk-admin"})
    for headers in ({}, {"authorization": f"Bearer {ACME_KEY}"}):
        with pytest.raises(GatewayError) as wrong:
            guard.check(stand_in(headers))
        assert wrong.value.status == 401
    guard.check(stand_in({"authorization": "Bearer sk-admin"}))


def stand_in(headers: dict[str, str]) -> Any:
    """What `AdminKey.check` reads of a request."""
    return SimpleNamespace(headers=headers, url=SimpleNamespace(path="/admin/status"))

