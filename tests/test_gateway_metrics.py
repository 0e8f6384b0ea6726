"""`GET /metrics` and the access log: what each request leaves behind, on loopback against
simulated providers that never fail unless a fault is injected."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from gateway_ops_support import ops_config
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from actors.faults import Fault, FaultKind
from runtime.gateway import GatewayServer, open_gateway

ASK = [{"role": "user", "content": "What is the VAT rate on books?"}]


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayServer]:
    async with open_gateway(ops_config()) as server:
        yield server


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


async def test_requests_are_counted_by_provider_level_and_outcome(gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        ok = await http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": ASK})
        assert ok.status_code == 200
        missing = await http.post("/v1/chat/completions", json={"model": "gpt-9", "messages": ASK})
        assert missing.status_code == 404
        async with http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "claude-sonnet", "messages": ASK, "stream": True},
        ) as streamed:
            assert streamed.status_code == 200
            assert b"[DONE]" in b"".join([chunk async for chunk in streamed.aiter_bytes()])
        found = await scrape(http)
    ok_alpha = dict(tenant="-", level="primary", provider="alpha", outcome="ok")
    assert value(found, "uptax_requests_total", **ok_alpha) == 1
    ok_beta = dict(tenant="-", level="secondary", provider="beta", outcome="ok")
    assert value(found, "uptax_requests_total", **ok_beta) == 1
    refused = dict(tenant="-", level="-", provider="-", outcome="refused")
    assert value(found, "uptax_requests_total", **refused) == 1
    assert value(found, "uptax_request_duration_seconds_count") == 3
    assert value(found, "uptax_provider_call_duration_seconds_count", provider="alpha") == 1
    assert value(found, "uptax_provider_call_duration_seconds_count", provider="beta") == 1
    assert value(found, "uptax_cost_usd_total", tenant="-", provider="alpha") > 0
    assert value(found, "uptax_cost_usd_total", tenant="-", provider="beta") > 0
    assert value(found, "uptax_requests_in_flight") == 0


async def test_a_fallback_is_counted_with_the_failed_attempt(gateway: GatewayServer) -> None:
    gateway.rt.inject_fault("alpha", Fault(FaultKind.OUTAGE))
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        answer = await http.post(
            "/v1/chat/completions", json={"model": "uptax/auto", "messages": ASK}
        )
        assert answer.status_code == 200 and answer.headers["x-uptax-fallback"] == "true"
        found = await scrape(http)
    assert value(found, "uptax_fallbacks_total", tenant="-") == 1
    assert value(found, "uptax_provider_call_duration_seconds_count", provider="alpha") >= 1
    assert value(found, "uptax_provider_call_duration_seconds_count", provider="beta") == 1


async def test_a_client_that_leaves_is_counted_as_cancelled(gateway: GatewayServer) -> None:
    gateway.rt.inject_fault("alpha", Fault(FaultKind.LATENCY, delay_s=60))
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": ASK},
                timeout=httpx.Timeout(60, read=1.0),
            )
        cancelled = dict(tenant="-", level="-", provider="-", outcome="cancelled")
        with trio.fail_after(30):
            for _ in itertools.count():  # the server notices the disconnect on its own time
                found = await scrape(http)
                if value(found, "uptax_requests_total", **cancelled):
                    break
                await trio.sleep(0.1)
    assert value(found, "uptax_requests_in_flight") == 0


async def test_breaker_state_and_health_are_read_at_scrape_time(gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        before = await scrape(http)
        gateway.rt.set_breaker("alpha", "open")
        after = await scrape(http)
    assert value(before, "uptax_breaker_state", provider="alpha", state="closed") == 1
    assert value(after, "uptax_breaker_state", provider="alpha", state="closed") == 0
    assert value(after, "uptax_breaker_state", provider="alpha", state="forced_open") == 1
    assert value(after, "uptax_breaker_state", provider="beta", state="closed") == 1
    for provider in ("alpha", "beta"):
        statuses = [
            value(after, "uptax_provider_health", provider=provider, status=status)
            for status in ("healthy", "degraded", "critical", "offline")
        ]
        assert sorted(statuses) == [0, 0, 0, 1]


async def test_each_gateway_has_its_own_registry() -> None:
    async with (
        open_gateway(ops_config()) as first,
        open_gateway(ops_config()) as second,
        httpx.AsyncClient(timeout=60) as http,
    ):
        await http.post(
            first.base_url + "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": ASK},
        )
        one = samples((await http.get(first.base_url + "/metrics")).text)
        other = samples((await http.get(second.base_url + "/metrics")).text)
    ok_alpha = dict(tenant="-", level="primary", provider="alpha", outcome="ok")
    assert value(one, "uptax_requests_total", **ok_alpha) == 1
    assert value(other, "uptax_requests_total", **ok_alpha) == 0


async def test_one_access_log_event_per_request(
    log_output: io.StringIO, gateway: GatewayServer
) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        with capture_logs() as logs:
            ok = await http.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": ASK},
                headers={"authorization": "Bearer sk-not-to-be-logged"},
            )
            bad = await http.post("/v1/chat/completions", content=b"{nope")
    events = [e for e in logs if e["event"] == "gateway_request"]
    assert len(events) == 2
    first, second = events
    assert first["log_level"] == "info"
    assert first["request_id"] == ok.headers["x-request-id"]
    assert (first["method"], first["path"], first["status"]) == (
        "POST",
        "/v1/chat/completions",
        200,
    )
    assert (first["tenant"], first["provider"], first["model"], first["answer_level"]) == (
        "-",
        "alpha",
        "gpt-4o",
        "primary",
    )
    assert first["fallback"] is False and first["attempts"] == 1
    assert first["duration_ms"] > 0 and first["cost_usd"] > 0
    assert second["status"] == 400 and second["request_id"] == bad.headers["x-request-id"]
    assert second["provider"] == "-" and second["attempts"] == 0
    assert "not valid JSON" in second["error"] and "error" not in first
    assert "sk-not-to-be-logged" not in repr(logs)


async def test_the_access_log_line_is_written_at_info(
    log_output: io.StringIO, gateway: GatewayServer
) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        await http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": ASK})
    lines = [line for line in log_output.getvalue().splitlines() if "gateway_request" in line]
    assert len(lines) == 1
    assert "status=200" in lines[0] and "provider='alpha'" in lines[0]
    assert "level='info'" in lines[0] and "answer_level='primary'" in lines[0]


async def test_provider_calls_are_counted_by_outcome(gateway: GatewayServer) -> None:
    gateway.rt.inject_fault("alpha", Fault(FaultKind.OUTAGE))
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        answer = await http.post(
            "/v1/chat/completions", json={"model": "uptax/auto", "messages": ASK}
        )
        assert answer.status_code == 200 and answer.headers["x-uptax-provider"] == "beta"
        found = await scrape(http)
    failed = value(found, "uptax_provider_calls_total", provider="alpha", outcome="server_error")
    assert failed == int(answer.headers["x-uptax-attempts"]) - 1 >= 1
    assert value(found, "uptax_provider_calls_total", provider="alpha", outcome="ok") == 0
    assert value(found, "uptax_provider_calls_total", provider="beta", outcome="ok") == 1


async def test_requests_that_fail_at_every_level_are_counted_by_kind(
    gateway: GatewayServer,
) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        before = await scrape(http)
        for name in ("alpha", "beta"):
            gateway.rt.inject_fault(name, Fault(FaultKind.OUTAGE))
        failed = await http.post(
            "/v1/chat/completions", json={"model": "uptax/auto", "messages": ASK}
        )
        assert failed.status_code == 502
        after = await scrape(http)
    kinds = ("all_levels_failed", "request_rejected", "stream_interrupted", "cancelled")
    for kind in kinds:  # exposed at 0 from the start, so the first one is an increase
        assert (("uptax_request_errors_total", frozenset({("kind", kind)}))) in before
        assert value(before, "uptax_request_errors_total", kind=kind) == 0
    assert value(after, "uptax_request_errors_total", kind="all_levels_failed") == 1
    assert value(after, "uptax_request_errors_total", kind="request_rejected") == 0
    failed_request = dict(tenant="-", level="-", provider="-", outcome="failed")
    assert value(after, "uptax_requests_total", **failed_request) == 1


async def test_quota_and_latency_against_baseline_are_read_at_scrape_time(
    gateway: GatewayServer,
) -> None:
    """alpha's quota runs out, so beta answers, ten times slower than usual: what the quota and
    latency alerts compare is on the page."""
    gateway.rt.inject_fault("alpha", Fault(FaultKind.QUOTA))
    gateway.rt.inject_fault("beta", Fault(FaultKind.LATENCY, factor=10))
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        before = await scrape(http)
        answer = await http.post(
            "/v1/chat/completions", json={"model": "uptax/auto", "messages": ASK}
        )
        assert answer.headers["x-uptax-provider"] == "beta"
        after = await scrape(http)
    for name in ("alpha", "beta"):
        assert value(before, "uptax_provider_quota_remaining_ratio", provider=name) == 1
        # ops_config's simulated providers answer in 30 ms: their configured baseline.
        assert value(after, "uptax_provider_latency_baseline_seconds", provider=name) == 0.03
    assert value(after, "uptax_provider_quota_remaining_ratio", provider="alpha") == 0
    assert value(after, "uptax_provider_quota_remaining_ratio", provider="beta") == 1
    recent = value(after, "uptax_provider_latency_recent_seconds", provider="beta")
    assert recent > 5 * 0.03
    p50 = value(after, "uptax_provider_latency_seconds", provider="beta", quantile="0.5")
    p95 = value(after, "uptax_provider_latency_seconds", provider="beta", quantile="0.95")
    assert 5 * 0.03 < p50 <= p95
    assert ("uptax_provider_latency_recent_seconds", frozenset({("provider", "alpha")})) not in (
        before
    )  # no call timed yet: no figure rather than a made-up 0
    assert value(after, "uptax_provider_restarts_total", provider="alpha") == 0
