"""A fleet end to end: runtimes and gateways sharing one `redis-server` of this module's own
through `[state] backend = "redis"` (real sockets, real time, wide margins): a breaker opened
on one instance holds the provider on the other, a tenant's rate limit and budget are the
fleet's, and Redis going away fails no request."""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from redis_support import RedisServer, free_port
from support import BASE

from actors.config import Config, parse_config
from actors.faults import Fault, FaultKind
from runtime import Request
from runtime.embed import Runtime, open_runtime
from runtime.gateway import GatewayServer, open_gateway

ACME_KEY = "sk-acme-fleet-key"
ASK = {"model": "uptax/auto", "messages": [{"role": "user", "content": "VAT on books?"}]}
REQUEST = Request(
    prompt="Summarise the quarterly tax report",
    complexity="moderate",
    quality="production",
    budget_usd=0.05,
    max_tokens=500,
)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()


def fleet_config(
    server: RedisServer, instance: str, prefix: str, open_s: float = 30.0, **extra: Any
) -> Config:
    data = copy.deepcopy(BASE)
    for provider in data["providers"]:
        provider["latency_ms"] = 5
        provider["breaker"] = {"consecutive_failures": 2, "open_s": open_s}
    data["state"] = {
        "backend": "redis",
        "url": server.url,
        "key_prefix": prefix,
        "instance": instance,
        "sync_interval_s": 0.2,
        "command_timeout_s": 2.0,  # a busy machine's event loop must not look like Redis down
    }
    data.update(extra)
    return parse_config(data)


def tenant_config(
    server: RedisServer, instance: str, prefix: str, ledger: Path, **limits: Any
) -> Config:
    acme = {
        "name": "acme",
        "api_key_sha256": [hashlib.sha256(ACME_KEY.encode()).hexdigest()],
        **(limits or {"requests_per_minute": 4}),
    }
    return fleet_config(server, instance, prefix, tenants=[acme], gateway={"ledger": str(ledger)})


async def test_a_breaker_opened_on_one_instance_holds_on_the_other(
    redis_server: RedisServer,
) -> None:
    prefix = f"fleet:{uuid.uuid4().hex[:8]}:"
    async with (
        open_runtime(fleet_config(redis_server, "a", prefix)) as one,
        open_runtime(fleet_config(redis_server, "b", prefix)) as two,
    ):
        one.inject_fault("openai", Fault(FaultKind.OUTAGE))
        one.inject_fault("anthropic", Fault(FaultKind.OUTAGE))
        for _ in range(2):
            await one.complete(REQUEST)
        assert {p.name: p.breaker for p in one.status().providers}["openai"] == "open"
        await trio.sleep(1.0)  # the bound: other instances stop calling within one second
        assert {p.name: p.breaker for p in two.status().providers}["openai"] == "open"
        reply = await two.complete(REQUEST)
        assert "openai" not in [a.provider for a in reply.attempts]
        fleet = two.status().fleet
        assert fleet is not None and sorted(fleet["heartbeats"]) == ["a", "b"]
        assert fleet["heartbeats"]["a"]["openai"] == {"breaker": "open", "available": True}


async def test_the_fleet_closes_when_the_probing_instance_closes(
    redis_server: RedisServer,
) -> None:
    """After the open period (3 s) one instance holds the half-open claim and the other waits;
    the claimant's probes succeed, and the other closes at its next sync (0.2 s), not when the
    claim's lease (3 s more) runs out."""
    prefix = f"fleet:{uuid.uuid4().hex[:8]}:"
    levels = [
        {"name": "primary", "providers": ["openai"], "timeout_s": 30},
        {"name": "secondary", "providers": ["anthropic"], "timeout_s": 30},
    ]
    async with (
        open_runtime(fleet_config(redis_server, "a", prefix, 3.0, levels=levels)) as one,
        open_runtime(fleet_config(redis_server, "b", prefix, 3.0, levels=levels)) as two,
    ):
        for rt in (one, two):
            rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        for _ in range(2):
            await one.complete(REQUEST)
        await trio.sleep(1.0)  # the bound: other instances stop calling within one second
        assert openai_breakers(one, two) == ["open", "open"]
        for rt in (one, two):
            rt.heal("openai")
        await trio.sleep(2.5)  # the open periods are over: one instance claimed the probes
        states = openai_breakers(one, two)
        assert sorted(states) == ["half_open", "open"]
        probing, waiting = (one, two) if states[0] == "half_open" else (two, one)
        for _ in range(3):  # half_open_probes
            reply = await probing.complete(REQUEST)
            assert [a.provider for a in reply.attempts] == ["openai"]
        await trio.sleep(1.0)
        assert openai_breakers(probing, waiting) == ["closed", "closed"]


def openai_breakers(*runtimes: Runtime) -> list[str]:
    return [{p.name: p.breaker for p in rt.status().providers}["openai"] for rt in runtimes]


def _client() -> httpx.AsyncClient:
    """One client per test (a new client loads the CA bundle: ~0.1 s each, unless unverified;
    the gateways here are plain HTTP)."""
    return httpx.AsyncClient(timeout=30, verify=False)


async def _ask(http: httpx.AsyncClient, server: GatewayServer, **body: Any) -> int:
    answer = await http.post(
        server.base_url + "/v1/chat/completions",
        json={**ASK, **body},
        headers={"authorization": f"Bearer {ACME_KEY}"},
    )
    return answer.status_code


async def test_gateways_share_a_rate_limit_and_carry_on_without_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = f"fleet:{uuid.uuid4().hex[:8]}:"
    async with (
        _client() as http,
        open_gateway(tenant_config(redis_server, "a", prefix, tmp_path / "a.db")) as one,
        open_gateway(tenant_config(redis_server, "b", prefix, tmp_path / "b.db")) as two,
    ):
        codes = [await _ask(http, server) for server in (one, two, one, two, one, two)]
        assert codes == [200] * 4 + [429] * 2  # 4 a minute for the fleet, not per instance
        assert one.rt.fleet is not None
        # Each instance sees the other at its next sync (every 0.5 s): on a busy machine that
        # can be after the requests above, so wait for it (the 1/N share below needs N = 2).
        for _ in range(100):
            ready = (await http.get(one.base_url + "/readyz")).json()
            if ready["state"]["fleet_size"] == 2:
                break
            await trio.sleep(0.1)
        metrics = (await http.get(one.base_url + "/metrics")).text
        assert ready["state"]["up"] is True and ready["state"]["fleet_size"] == 2
        assert 'uptax_state_store_up{instance="a"} 1.0' in metrics
        redis_server.stop()
        for _ in range(100):  # a sync finds it gone
            if not one.rt.fleet.up:
                break
            await trio.sleep(0.1)
        # Degraded: each instance has its share of the minute left on its own (none here,
        # the bucket is new and holds 4 / 2); never a failed request.
        assert [await _ask(http, one) for _ in range(3)] == [200, 200, 429]
        ready = (await http.get(one.base_url + "/readyz")).json()
        metrics = (await http.get(one.base_url + "/metrics")).text
        assert ready["status"] == "ready" and ready["state"]["up"] is False
        assert 'uptax_state_store_up{instance="a"} 0.0' in metrics
        redis_server.start()
        for _ in range(50):  # a sync, then the ledger read that seeds the empty store's counters
            if one.rt.fleet.up:
                break
            await trio.sleep(0.1)
        assert one.rt.fleet.up


async def test_the_last_resort_cache_answers_what_another_instance_saw(
    redis_server: RedisServer,
) -> None:
    prefix = f"fleet:{uuid.uuid4().hex[:8]}:"
    async with (
        open_runtime(fleet_config(redis_server, "a", prefix)) as one,
        open_runtime(fleet_config(redis_server, "b", prefix)) as two,
    ):
        first = await one.complete(REQUEST)
        for name in ("openai", "anthropic", "gemini", "local"):
            two.inject_fault(name, Fault(FaultKind.OUTAGE))
        await trio.sleep(0.3)  # shared in the background
        reply = await two.complete(REQUEST)
    assert reply.provider == "cache" and reply.text == first.text


async def test_a_tenants_budget_holds_across_gateways(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Concurrent clients on two gateways: each request reserves its most cost
    (`max_budget_usd_per_request`) before it runs, so the pair overshoots the day's budget by at
    most one reservation (each gateway on its own would spend the budget twice)."""
    prefix = f"fleet:{uuid.uuid4().hex[:8]}:"
    limits = {"budget_usd_per_day": 0.0002, "max_budget_usd_per_request": 0.00002}
    configs = [
        tenant_config(redis_server, name, prefix, tmp_path / f"{name}.db", **limits)
        for name in ("a", "b")
    ]
    codes: list[int] = []
    async with (
        _client() as http,
        open_gateway(configs[0]) as one,
        open_gateway(configs[1]) as two,
    ):

        async def client(server: GatewayServer) -> None:
            for _ in range(50):
                codes.append(await _ask(http, server, max_tokens=30))
                if codes[-1] != 200:
                    return

        async with trio.open_nursery() as nursery:
            for server in (one, two, one, two):
                nursery.start_soon(client, server)
        assert one.rt.fleet is not None
        day, _ = await one.rt.fleet.spent("acme")
    assert codes.count(429) == 4 and codes.count(200) >= 5, codes
    assert 0.0002 <= day <= 0.0002 + 0.00002, day


async def test_budgets_are_rebuilt_from_the_ledger_after_a_redis_restart(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A restarted Redis has lost every spend counter: they are seeded again from the ledger
    (set only where missing), so a spent budget stays spent; another gateway's dashboard shows
    the fleet's spend, not its own."""
    prefix = f"fleet:{uuid.uuid4().hex[:8]}:"
    limits = {"budget_usd_per_day": 0.00005, "max_budget_usd_per_request": 0.00002}
    configs = [
        tenant_config(redis_server, name, prefix, tmp_path / "ledger.db", **limits)
        for name in ("a", "b")
    ]
    async with _client() as http, open_gateway(configs[0]) as one, open_gateway(configs[1]) as two:
        assert one.rt.fleet is not None and two.rt.fleet is not None
        codes = [await _ask(http, one, max_tokens=30) for _ in range(20)]
        spent, _ = await one.rt.fleet.spent("acme")
        await trio.sleep(1.2)  # b reads the fleet's spend at a sync, its dashboard each second
        seen = two.rt.fleet.seen_spend("acme")
        shown = (await http.get(two.base_url + "/dashboard/api/state")).json()["status"]
        redis_server.stop()
        redis_server.start()  # empty: no counters, no marker
        await _ask(http, one)  # the dead connection: degraded (answered all the same)
        await trio.sleep(1.0)  # a sync restores the store (the marker is back)
        after = [await _ask(http, server) for server in (one, two)]
        day, _ = await two.rt.fleet.spent("acme")
    assert 200 in codes and codes[-1] == 429, codes
    assert seen is not None and seen[0] == pytest.approx(spent)
    assert shown["tenants"][0]["spend_day_usd"] == pytest.approx(spent)
    assert shown["fleet"]["up"] is True and shown["fleet"]["instance"] == "b"
    assert sorted(shown["fleet"]["last_heartbeat_s"]) == ["a", "b"]
    assert after == [429, 429] and one.rt.fleet.up and two.rt.fleet.up
    assert day >= 0.00005


async def test_a_stream_that_fails_after_it_began_gives_its_reservation_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The response had begun (200, events sent) when every provider cut the stream: nothing
    to charge, and the request's reservation goes back to the fleet's counters."""
    prefix = f"fleet:{uuid.uuid4().hex[:8]}:"
    limits = {
        "budget_usd_per_day": 1.0,
        "max_budget_usd_per_request": 0.25,
        "last_resort": False,
    }
    config = tenant_config(redis_server, "a", prefix, tmp_path / "a.db", **limits)
    async with _client() as http, open_gateway(config) as server:
        for name in ("openai", "anthropic", "gemini", "local"):
            server.rt.inject_fault(name, Fault(FaultKind.DROP_STREAM, after_chunks=1))
        async with http.stream(
            "POST",
            server.base_url + "/v1/chat/completions",
            json={**ASK, "stream": True},
            headers={"authorization": f"Bearer {ACME_KEY}"},
        ) as answer:
            body = (await answer.aread()).decode()
        assert answer.status_code == 200 and '"error"' in body, body
        assert server.rt.fleet is not None
        for _ in range(200):  # released after the response's last byte: up to 10 s
            if await server.rt.fleet.spent("acme") == (0.0, 0.0):
                break
            await trio.sleep(0.05)
        assert await server.rt.fleet.spent("acme") == (0.0, 0.0)
