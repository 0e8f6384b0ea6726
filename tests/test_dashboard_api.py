"""The dashboard's HTTP API on a gateway on loopback: the state at load, the live stream (samples,
status, log events, resume, the stream cap, shutdown), sessions and who may do what, the route
explainer, operator actions, the page's files, and no secret in any answer."""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import re
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from gateway_ops_support import ops_config

import runtime.gateway.dashboard
import runtime.gateway.server
from actors.config import Config, parse_config
from actors.faults import Fault
from runtime.gateway import GatewayServer, open_gateway
from runtime.gateway.admin import ADMIN_KEY_ENV
from runtime.gateway.dashboard import MAX_STREAMS
from runtime.gateway.explain import relative_times
from runtime.gateway.sessions import Sessions
from runtime.gateway.tenants import MASTER_KEY_ENV

KEY = "adm-" + "d" * 28
CHANGE = {"x-uptax-dashboard": "1"}
ASK = {"model": "uptax/auto", "messages": [{"role": "user", "content": "VAT on books?"}]}


@pytest.fixture(autouse=True)
def no_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)


@pytest.fixture
def keyless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADMIN_KEY_ENV, KEY)


@contextlib.asynccontextmanager
async def serve(
    config: Config | None = None,
) -> AsyncIterator[tuple[GatewayServer, httpx.AsyncClient]]:
    limits = httpx.Limits(max_connections=100)
    async with (
        open_gateway(config or ops_config()) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as http,
    ):
        yield server, http


@pytest.fixture
async def open_dash(keyless: None) -> AsyncIterator[tuple[GatewayServer, httpx.AsyncClient]]:
    async with serve() as pair:
        yield pair


@pytest.fixture
async def locked_dash(keyed: None) -> AsyncIterator[tuple[GatewayServer, httpx.AsyncClient]]:
    async with serve() as pair:
        yield pair


async def login(http: httpx.AsyncClient, operator: str = "alice") -> httpx.Response:
    response = await http.post(
        "/dashboard/api/session", json={"key": KEY, "operator": operator}, headers=CHANGE
    )
    assert response.status_code == 204, response.text
    return response


async def wait_for_samples(http: httpx.AsyncClient, count: int) -> dict[str, Any]:
    with trio.fail_after(30):
        while True:
            state = (await http.get("/dashboard/api/state")).json()
            if len(state["samples"]) >= count:
                return state
            await trio.sleep(0.2)


class Events:
    """Server-sent events read off a streamed response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()
        self.retry: int | None = None
        self.comments: list[str] = []

    async def next(self) -> dict[str, Any]:
        event: dict[str, Any] = {}
        async for line in self.lines:
            if not line:
                if "data" in event:
                    event["data"] = json.loads(event["data"])
                    return event
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                self.comments.append(value)
            elif name == "retry":
                self.retry = int(value)
            else:
                event[name] = value
        raise EOFError

    async def until(self, kind: str, **fields: Any) -> dict[str, Any]:
        with trio.fail_after(20):
            while True:
                event = await self.next()
                if event.get("event") == kind and all(
                    event["data"].get(k) == v for k, v in fields.items()
                ):
                    return event


# -- the state and the live stream --------------------------------------------------------------


async def test_state_has_everything_the_page_needs(open_dash: Any) -> None:
    _, http = open_dash
    state = await wait_for_samples(http, 1)
    assert set(state) == {
        "instance", "interval_s", "levels", "providers", "actions", "operator",
        "samples", "events", "status",
    }  # fmt: skip
    assert state["levels"] == ["primary", "secondary"] and state["interval_s"] == 1.0
    assert state["providers"] == [
        {"name": "alpha", "kind": "simulated", "level": "primary", "models": ["gpt-4o"]},
        {"name": "beta", "kind": "simulated", "level": "secondary", "models": ["claude-sonnet"]},
    ]
    assert state["actions"] is False and state["operator"] is None
    assert abs(state["instance"]["started_at"] - time.time()) < 120
    assert state["instance"]["version"] == "0.1.0"
    sample = state["samples"][-1]
    assert set(sample) == {"seq", "t", "providers", "traffic", "cost"}
    assert set(sample["providers"]["alpha"]) == {
        "status", "breaker", "half_open_in_s", "latency_p50_ms", "latency_p95_ms",
        "error_rate", "quota_remaining", "in_flight", "concurrency_limit", "restarts", "available",
    }  # fmt: skip
    assert set(state["status"]) == {"alerts", "recommendations", "totals", "tenants"}
    assert state["status"]["tenants"] == []


async def test_samples_show_the_levels_and_the_fallback_after_a_forced_open_primary(
    open_dash: Any,
) -> None:
    server, http = open_dash
    for _ in range(3):
        assert (await http.post("/v1/chat/completions", json=ASK)).status_code == 200
    server.rt.set_breaker("alpha", "open")
    for _ in range(2):
        answer = await http.post("/v1/chat/completions", json=ASK)
        assert answer.headers["x-uptax-provider"] == "beta"
    with trio.fail_after(30):
        while True:
            state = (await http.get("/dashboard/api/state")).json()
            if state["status"]["totals"]["requests"] == 5:
                break
            await trio.sleep(0.2)
    levels: dict[str, int] = {}
    for sample in state["samples"]:
        for level, count in sample["traffic"]["by_level"].items():
            levels[level] = levels.get(level, 0) + count
    assert levels == {"primary": 3, "secondary": 2}
    assert sum(s["traffic"]["fallbacks"] for s in state["samples"]) == 2
    assert state["samples"][-1]["providers"]["alpha"]["breaker"] == "forced_open"
    totals = state["status"]["totals"]
    assert totals["fallback_rate"] == pytest.approx(0.4) and totals["cost_usd"] > 0
    assert "breaker_overridden" in [e["event"] for e in state["events"]]


async def test_live_sends_samples_status_and_log_events(open_dash: Any) -> None:
    server, http = open_dash
    async with http.stream("GET", "/dashboard/api/live") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = Events(response)
        sample = await events.until("sample")
        assert events.retry == 2000
        assert int(sample["id"]) == sample["data"]["seq"]
        status = await events.until("status")
        assert "totals" in status["data"] and "id" not in status
        server.rt.set_breaker("alpha", "open")
        log = await events.until("log", event="breaker_overridden")
        assert log["data"]["level"] == "warning" and "id" not in log
        assert log["data"]["fields"]["provider"] == "alpha"


async def test_a_resumed_stream_repeats_nothing_and_skips_nothing(open_dash: Any) -> None:
    _, http = open_dash
    async with http.stream("GET", "/dashboard/api/live") as response:
        events = Events(response)
        first = int((await events.until("sample"))["id"])
        second = int((await events.until("sample"))["id"])
    assert second == first + 1
    await trio.sleep(2.5)  # samples go on while the client is away
    headers = {"last-event-id": str(second)}
    async with http.stream("GET", "/dashboard/api/live", headers=headers) as response:
        events = Events(response)
        ids = [int((await events.until("sample"))["id"]) for _ in range(4)]
    assert ids == list(range(second + 1, second + 5))
    async with http.stream("GET", f"/dashboard/api/live?after={ids[-1]}") as response:
        events = Events(response)
        assert int((await events.until("sample"))["id"]) == ids[-1] + 1
    # A resume point from before a restart (the seqs started again): everything held is sent.
    restarted = {"last-event-id": "99999"}
    async with http.stream("GET", "/dashboard/api/live", headers=restarted) as response:
        events = Events(response)
        assert int((await events.until("sample"))["id"]) == 1


async def test_at_most_32_live_streams(open_dash: Any) -> None:
    _, http = open_dash
    async with trio.open_nursery() as nursery:
        opened = trio.Semaphore(0)
        release = trio.Event()

        async def hold() -> None:
            async with http.stream("GET", "/dashboard/api/live") as response:
                assert response.status_code == 200
                opened.release()
                await release.wait()

        for _ in range(MAX_STREAMS):
            nursery.start_soon(hold)
        for _ in range(MAX_STREAMS):
            await opened.acquire()
        refused = await http.get("/dashboard/api/live")
        assert refused.status_code == 503 and "retry-after" in refused.headers
        release.set()
    with trio.fail_after(20):  # the streams' ends are counted once their clients have left
        while True:
            async with http.stream("GET", "/dashboard/api/live") as again:
                if again.status_code == 200:
                    break
            await trio.sleep(0.2)


async def test_a_live_stream_ends_promptly_when_the_gateway_stops(keyless: None) -> None:
    config = ops_config()
    ended: list[float] = []
    async with trio.open_nursery() as nursery:
        async with open_gateway(config) as server:
            opened = trio.Event()

            async def read() -> None:
                async with (
                    httpx.AsyncClient(base_url=server.base_url, timeout=30) as http,
                    http.stream("GET", "/dashboard/api/live") as response,
                ):
                    opened.set()
                    async for _ in response.aiter_lines():
                        pass
                ended.append(trio.current_time())

            nursery.start_soon(read)
            await opened.wait()
            stopping = trio.current_time()
        stopped = trio.current_time()
    # Held by the stream, hypercorn would wait its whole graceful timeout (grace + 3 s).
    assert stopped - stopping < config.supervision.shutdown_grace_s + 1.0
    assert ended and ended[0] - stopping < config.supervision.shutdown_grace_s + 1.0


# -- who may do what -------------------------------------------------------------------------------


async def test_with_the_admin_key_the_api_needs_a_session(locked_dash: Any) -> None:
    _, http = locked_dash
    for method, path in [
        ("GET", "/dashboard/api/state"),
        ("GET", "/dashboard/api/live"),
        ("POST", "/dashboard/api/explain"),
        ("POST", "/dashboard/api/breakers/alpha"),
    ]:
        response = await http.request(method, path, headers=CHANGE, json={})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["type"] == "authentication_error"
    wrong = await http.post(
        "/dashboard/api/session", json={"key": "not-the-key"}, headers=CHANGE
    )
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    no_header = await http.post("/dashboard/api/session", json={"key": KEY})
    assert no_header.status_code == 403 and "set-cookie" not in no_header.headers
    cookie = (await login(http)).headers["set-cookie"]
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 32 and KEY not in cookie
    flags = [part.strip() for part in cookie.split(";")[1:]]
    assert {"HttpOnly", "SameSite=Strict", "Path=/dashboard"} <= set(flags)
    state = (await http.get("/dashboard/api/state")).json()
    assert state["actions"] is True and state["operator"] == "alice"
    out = await http.delete("/dashboard/api/session", headers=CHANGE)
    assert out.status_code == 204
    http.cookies.clear()
    http.cookies.set("uptax_session", token)
    stale = await http.get("/dashboard/api/state")
    assert stale.status_code == 401


async def test_sessions_expire_and_the_oldest_is_dropped_past_the_limit() -> None:
    now = [0.0]
    sessions = Sessions(ttl_s=100.0, limit=3, clock=lambda: now[0])
    first = sessions.open("alice")
    assert sessions.get(first) is not None and sessions.get("forged") is None
    now[0] = 99.0
    assert sessions.get(first) is not None
    now[0] = 100.0
    assert sessions.get(first) is None and len(sessions) == 0
    tokens = [sessions.open(f"op{n}") for n in range(4)]
    assert sessions.get(tokens[0]) is None
    live = [sessions.get(t) for t in tokens[1:]]
    assert [s.operator if s else None for s in live] == ["op1", "op2", "op3"]


async def test_an_expired_session_is_refused(locked_dash: Any) -> None:
    server, http = locked_dash
    await login(http)
    assert (await http.get("/dashboard/api/state")).status_code == 200
    # 12 h on: move the sessions' clock instead of waiting.
    assert server.dashboard is not None
    server.dashboard.sessions._clock = lambda: trio.current_time() + 12 * 3600.0
    assert (await http.get("/dashboard/api/state")).status_code == 401


async def test_changes_need_the_dashboard_header(locked_dash: Any) -> None:
    server, http = locked_dash
    await login(http)
    for method, path, body in [
        ("POST", "/dashboard/api/explain", {}),
        ("POST", "/dashboard/api/breakers/alpha", {"action": "open"}),
        ("PUT", "/dashboard/api/faults/alpha", {"kind": "outage"}),
        ("DELETE", "/dashboard/api/faults/alpha", None),
        ("DELETE", "/dashboard/api/session", None),
    ]:
        response = await http.request(method, path, json=body)
        assert response.status_code == 403, (method, path)
    assert server.rt.status().providers[0].breaker == "closed"
    assert (await http.get("/dashboard/api/state")).status_code == 200  # still logged in


async def test_without_an_admin_key_loopback_reads_and_actions_are_absent(open_dash: Any) -> None:
    server, http = open_dash
    assert (await http.get("/dashboard/api/state")).status_code == 200
    explained = await http.post("/dashboard/api/explain", json={}, headers=CHANGE)
    assert explained.status_code == 200
    for method, path, body in [
        ("POST", "/dashboard/api/breakers/alpha", {"action": "open"}),
        ("PUT", "/dashboard/api/faults/alpha", {"kind": "outage"}),
        ("DELETE", "/dashboard/api/faults/alpha", None),
        ("POST", "/dashboard/api/session", {"key": "anything"}),
    ]:
        response = await http.request(method, path, json=body, headers=CHANGE)
        assert response.status_code == 404, (method, path)
    assert server.rt.status().providers[0].breaker == "closed"


async def test_without_an_admin_key_off_loopback_the_dashboard_is_absent(
    keyless: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>uptax</title>")
    monkeypatch.setattr(runtime.gateway.dashboard, "static_dir", lambda: tmp_path)
    # Served on 127.0.0.1 for the test, but as the gateway would be on a public address.
    monkeypatch.setattr(runtime.gateway.server, "is_loopback", lambda host: False)
    async with serve() as (_, http):
        for path in ["/dashboard", "/dashboard/static/index.html", "/dashboard/api/state"]:
            assert (await http.get(path)).status_code == 404, path
        assert (await http.post("/v1/chat/completions", json=ASK)).status_code == 200


async def test_the_page_and_its_files_need_no_login(
    keyed: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>uptax</title>")
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "VERSION").write_text("1.6.31\n")
    monkeypatch.setattr(runtime.gateway.dashboard, "static_dir", lambda: tmp_path)
    async with serve() as (_, http):
        page = await http.get("/dashboard")
        assert page.status_code == 200 and "<title>uptax</title>" in page.text
        assert page.headers["content-type"].startswith("text/html")
        assert (await http.get("/dashboard/static/vendor/VERSION")).text == "1.6.31\n"
        assert (await http.get("/dashboard/static/missing.js")).status_code == 404
        assert (await http.get("/dashboard/static/../server.py")).status_code == 404

        css = await http.get("/dashboard/static/vendor/VERSION")
        again = await http.get(
            "/dashboard/static/vendor/VERSION", headers={"if-none-match": css.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""
        head = await http.head("/dashboard")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == len(page.content)


async def test_an_idle_connection_that_loaded_the_page_is_closed_at_its_keep_alive_timeout(
    keyless: None,
) -> None:
    """hypercorn never closed an idle connection that had carried a file response, and every
    shutdown then waited out its whole grace for it: the page's files are plain responses."""
    async with serve() as (server, _):
        for path in ["/dashboard", "/dashboard/static/dashboard.css"]:
            stream = await trio.open_tcp_stream(server.host, server.port)
            request = f"GET {path} HTTP/1.1\r\nhost: uptax\r\n\r\n"
            await stream.send_all(request.encode())
            received = b""
            with trio.fail_after(30):  # the keep-alive timeout is 5 s
                while chunk := await stream.receive_some():
                    received += chunk
            assert received.startswith(b"HTTP/1.1 200"), path
            await stream.aclose()


# -- explain and actions -----------------------------------------------------------------------


async def test_explain_plans_the_request_and_names_a_bad_field(open_dash: Any) -> None:
    server, http = open_dash
    server.rt.set_breaker("alpha", "open")
    plan = await http.post(
        "/dashboard/api/explain",
        json={"complexity": "complex", "quality": "production", "budget_usd": 0.5,
              "model": None, "prompt": "Summarise the tax report", "max_tokens": 256},
        headers=CHANGE,
    )  # fmt: skip
    assert plan.status_code == 200, plan.text
    body = plan.json()
    assert "complexity=complex" in body["summary"] and body["lines"][0] == body["summary"]
    primary, secondary = body["levels"]
    assert primary["level"] == "primary" and primary["candidates"] == []
    [excluded] = primary["exclusions"]
    assert excluded["provider"] == "alpha" and excluded["cause"] == "forced_open"
    assert excluded["reason"]
    [candidate] = secondary["candidates"]
    assert candidate["provider"] == "beta" and candidate["model"] == "claude-sonnet"
    assert set(candidate) == {"provider", "model", "score", "estimated_cost_usd", "reason", "notes"}
    for body_, field in [
        ({"complexity": "x"}, "complexity"),
        ({"quality": "perfect"}, "quality"),
        ({"max_tokens": "lots"}, "max_tokens"),
        ({"budget_usd": -1}, "budget_usd"),
        ({"temperature": 0.2}, "temperature"),
    ]:
        bad = await http.post("/dashboard/api/explain", json=body_, headers=CHANGE)
        assert bad.status_code == 400, body_
        error = bad.json()["error"]
        assert error["param"] == field and error["message"].startswith(f"{field}: ")
    unknown = await http.post("/dashboard/api/explain", json={"model": "nope"}, headers=CHANGE)
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "model"
    blank = {"prompt": "", "model": ""}
    empty = await http.post("/dashboard/api/explain", json=blank, headers=CHANGE)
    assert empty.status_code == 200


async def test_explain_says_how_long_a_breaker_stays_open_not_when_on_the_runtimes_clock(
    open_dash: Any,
) -> None:
    server, http = open_dash
    server.rt.inject_fault("alpha", Fault(kind="outage"))
    for _ in range(40):  # trip alpha's breaker the way traffic would
        provider = server.rt.provider_snapshot("alpha")
        if provider is not None and provider.breaker.state.value == "open":
            break
        await http.post("/v1/chat/completions", json=ASK)
    plan = (await http.post("/dashboard/api/explain", json={}, headers=CHANGE)).json()
    text = json.dumps(plan)
    assert not re.search(r"\bt=\d", text), text
    [excluded] = plan["levels"][0]["exclusions"]
    assert excluded["cause"] == "breaker_open"
    assert re.fullmatch(r"breaker open for another \d+\.\d s", excluded["reason"])


def test_relative_times_in_a_plans_text() -> None:
    assert relative_times("breaker open until t=1012.5s", 1000.0) == (
        "breaker open for another 12.5 s"
    )
    assert relative_times("earliest half-open at t=1012.5s", 1000.0) == (
        "earliest half-open in 12.5 s"
    )
    assert relative_times("open until t=990.0s", 1000.0) == "open for another 0.0 s"


async def test_each_action_takes_effect_and_is_on_the_event_bus(locked_dash: Any) -> None:
    server, http = locked_dash
    rt = server.rt
    await login(http, "alice")
    with rt.events.subscribe() as bus:
        opened = await http.post(
            "/dashboard/api/breakers/alpha", json={"action": "open"}, headers=CHANGE
        )
        assert opened.status_code == 200 and opened.json()["provider"] == "alpha"
        assert rt.status().providers[0].breaker == "forced_open"
        reset = await http.post(
            "/dashboard/api/breakers/alpha", json={"action": "auto"}, headers=CHANGE
        )
        assert reset.status_code == 200 and rt.status().providers[0].breaker == "closed"
        fault = await http.put(
            "/dashboard/api/faults/alpha", json={"kind": "outage", "status": 503}, headers=CHANGE
        )
        assert fault.status_code == 200 and fault.json()["fault"]["kind"] == "outage"
        answer = await http.post("/v1/chat/completions", json=ASK)
        assert answer.headers["x-uptax-provider"] == "beta"
        healed = await http.delete("/dashboard/api/faults/alpha", headers=CHANGE)
        assert healed.status_code == 200 and healed.json()["healed"] is True
        admin = await http.post(
            "/admin/breakers/beta",
            json={"action": "open"},
            headers={"authorization": f"Bearer {KEY}", "x-uptax-operator": "bob"},
        )
        assert admin.status_code == 200
        bad = await http.post(
            "/dashboard/api/breakers/alpha", json={"action": "explode"}, headers=CHANGE
        )
        unknown = await http.put(
            "/dashboard/api/faults/omega", json={"kind": "outage"}, headers=CHANGE
        )
        assert bad.status_code == 400 and unknown.status_code == 404
        actions = []
        while True:
            try:
                event = bus.receive_nowait()
            except trio.WouldBlock:
                break
            if event.event == "operator_action":
                actions.append(event.fields)
    assert [(a["action"], a["provider"], a["operator"]) for a in actions] == [
        ("breaker open", "alpha", "alice"),
        ("breaker auto", "alpha", "alice"),
        ("fault", "alpha", "alice"),
        ("heal", "alpha", "alice"),
        ("breaker open", "beta", "bob"),
    ]
    assert all(a["client"].startswith("127.0.0.1:") for a in actions)
    assert rt.events.level("operator_action") == "warning"


async def test_no_secret_in_any_dashboard_answer(
    keyed: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider_key = "sk-" + "p" * 40
    tenant_key = "sk-tenant-" + "t" * 30
    monkeypatch.setenv("DASH_PROVIDER_KEY", provider_key)
    monkeypatch.setenv("DASH_TENANT_KEY", tenant_key)
    data: dict[str, Any] = {
        "providers": [
            {"name": "alpha", "kind": "simulated", "models": ["gpt-4o"], "error_rate": 0.0,
             "latency_ms": 20, "api_key_env": "DASH_PROVIDER_KEY"},
        ],
        "levels": [{"name": "primary", "providers": ["alpha"]}],
        "tenants": [{"name": "team-a", "api_key_env": "DASH_TENANT_KEY",
                     "budget_usd_per_day": 10.0}],
        "gateway": {"ledger": str(tmp_path / "ledger.sqlite3")},
    }  # fmt: skip
    texts: list[str] = []
    async with serve(parse_config(data, source="secrets-test")) as (_, http):
        texts.append((await login(http)).headers["set-cookie"])
        answer = await http.post(
            "/v1/chat/completions", json=ASK, headers={"authorization": f"Bearer {tenant_key}"}
        )
        assert answer.status_code == 200
        state = await wait_for_samples(http, 1)
        with trio.fail_after(30):
            while state["status"]["tenants"][0]["spend_day_usd"] == 0:
                await trio.sleep(0.2)
                state = (await http.get("/dashboard/api/state")).json()
        [tenant] = state["status"]["tenants"]
        assert tenant["name"] == "team-a" and tenant["budget_day_usd"] == 10.0
        assert tenant["spend_month_usd"] >= tenant["spend_day_usd"] > 0
        assert tenant["budget_month_usd"] is None
        texts.append(json.dumps(state))
        for method, path, body in [
            ("POST", "/dashboard/api/explain", {"prompt": provider_key}),
            ("POST", "/dashboard/api/session", {"key": "wrong"}),
        ]:
            texts.append((await http.request(method, path, json=body, headers=CHANGE)).text)
        async with http.stream("GET", "/dashboard/api/live?after=0") as response:
            events = Events(response)
            texts.append(json.dumps(await events.until("sample")))
            opened = await http.post(
                "/dashboard/api/breakers/alpha", json={"action": "open"}, headers=CHANGE
            )
            texts.append(opened.text)
            log = await events.until("log", event="operator_action")
            texts.append(json.dumps(log))
    for text in texts:
        for secret in (KEY, provider_key, tenant_key):
            assert secret not in text


def test_every_file_of_the_page_is_package_data() -> None:
    """A non-editable install ships what `[tool.setuptools.package-data]` globs match: every
    file under static/dashboard must be matched (uPlot's LICENSE and VERSION included)."""
    root = Path(runtime.gateway.dashboard.__file__).parents[1]
    project = tomllib.loads((root.parent / "pyproject.toml").read_text(encoding="utf-8"))
    globs = project["tool"]["setuptools"]["package-data"]["runtime"]
    shipped = {
        Path(found)
        for pattern in globs
        for found in glob.glob(pattern, root_dir=root, recursive=True)
        if (root / found).is_file()
    }
    static = runtime.gateway.dashboard.static_dir()
    files = {p.relative_to(root) for p in static.rglob("*") if p.is_file()}
    assert files <= shipped
    probe = Path("gateway/static/dashboard/vendor/uplot/LICENSE")
    assert any(fnmatch.fnmatch(str(probe), pattern) for pattern in globs)
