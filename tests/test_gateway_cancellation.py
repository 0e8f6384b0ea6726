"""Structured cancellation end to end: a client that leaves the gateway cancels its request, down
to the provider's socket.

The gateway serves one OpenAI-kind provider on the fake provider server (real HTTP on loopback);
the client is httpx, cancelled mid-request. Everything runs in one trio run, so the client's
leaving and the fake provider seeing its connection close are both read from trio's clock.

Why 100 ms holds on a busy machine: nothing on the path sleeps or polls. The client's close
wakes hypercorn's pending read (EOF), which delivers `http.disconnect` to the gateway's
watcher; that cancels the request's scope, trio unwinds the provider call at once, httpx closes
its connection to the provider, and the fake server's own pending read wakes on that EOF. Each
hop is a wakeup of a task already blocked on a socket, so the bound is a few scheduler turns,
not a timer, and it does not grow with the provider's latency (60 s here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing

import runtime
from actors.faults import Fault, FaultKind
from runtime.gateway import GatewayServer, open_gateway
from runtime.testing import FakeProviderServer

KEY = "sk-test-openai-0123456789abcdef"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "VAT on books?"}]}
#: Real sockets on a possibly busy machine: generous, except for the bound under test.
WIDE_S = 30.0


def one_provider(server: FakeProviderServer) -> runtime.Config:
    return runtime.parse_config(
        {
            "runtime": {"deadline_s": 120},
            "providers": [
                {
                    "name": "openai",
                    "kind": "openai",
                    "models": ["gpt-4o"],
                    "base_url": server.url_for("openai"),
                    "read_timeout_s": 120.0,
                    "max_in_flight": 4,
                }
            ],
            "levels": [{"name": "primary", "providers": ["openai"], "timeout_s": 120}],
        }
    )


@pytest.fixture
async def gateway(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GatewayServer]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    async with open_gateway(one_provider(fake_providers)) as server:
        yield server


def in_flight(gateway: GatewayServer) -> tuple[int, int]:
    """Requests the runtime has in flight, and bulkhead slots the provider has lent out."""
    actor = gateway.rt.providers.live("openai")
    assert actor is not None
    return gateway.rt.status().requests_in_flight, int(actor.bulkhead.borrowed_tokens)


async def settled() -> None:
    """Wait until every task in the run is blocked: the gateway has finished unwinding the
    cancelled request (and booked it) by then."""
    with trio.fail_after(WIDE_S):
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)


async def leave_and_time_it(
    fake: FakeProviderServer, cancel: trio.CancelScope, ready: trio.Event
) -> float:
    """Cancel the client once `ready` is set; how long the provider took to see it leave."""
    with trio.fail_after(WIDE_S):
        await ready.wait()
    assert fake.departures("openai") == ()
    left_at = trio.current_time()
    cancel.cancel()
    with trio.fail_after(WIDE_S):
        (departure,) = await fake.wait_for_departures("openai", 1)
    return departure.at - left_at


async def test_a_client_leaving_a_whole_request_cancels_the_provider_call(
    gateway: GatewayServer, fake_providers: FakeProviderServer
) -> None:
    fake_providers.target("openai").inject(Fault(FaultKind.HANG))
    ready, client_scope = trio.Event(), trio.CancelScope()

    async def post(client: httpx.AsyncClient) -> None:
        with client_scope:
            await client.post("/v1/chat/completions", json=BODY)

    async def provider_has_it() -> None:
        await fake_providers.wait_for_requests("openai", 1)
        assert in_flight(gateway) == (1, 1)  # the call holds its bulkhead slot
        ready.set()

    async with (
        httpx.AsyncClient(base_url=gateway.base_url, timeout=WIDE_S * 4) as client,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(provider_has_it)
        nursery.start_soon(post, client)
        gap = await leave_and_time_it(fake_providers, client_scope, ready)
    assert gap < 0.1, f"the provider saw the client leave {gap * 1000:.0f} ms later"
    await settled()
    assert in_flight(gateway) == (0, 0)
    stats = gateway.rt.status().stats
    assert stats.errors_by_kind == {"cancelled": 1} and stats.successes == 0


async def test_a_client_leaving_a_stream_cancels_the_provider_stream(
    gateway: GatewayServer, fake_providers: FakeProviderServer
) -> None:
    # Chunks 0.5 s apart: the client reads the first event, then leaves mid-stream.
    fake_providers.target("openai").inject(Fault(FaultKind.SLOW_DRIP, delay_s=0.5))
    ready, client_scope = trio.Event(), trio.CancelScope()
    first_line = ""

    async def read_first_event(client: httpx.AsyncClient) -> None:
        with client_scope:
            await read(client)

    async def read(client: httpx.AsyncClient) -> None:
        nonlocal first_line
        body = {**BODY, "stream": True}
        async with client.stream("POST", "/v1/chat/completions", json=body) as reply:
            assert reply.status_code == 200
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    first_line = line
                    assert in_flight(gateway) == (1, 1)
                    ready.set()
                    await trio.sleep_forever()

    async with (
        httpx.AsyncClient(base_url=gateway.base_url, timeout=WIDE_S * 4) as client,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(read_first_event, client)
        gap = await leave_and_time_it(fake_providers, client_scope, ready)
    assert first_line.startswith("data: {")
    assert gap < 0.1, f"the provider saw the client leave {gap * 1000:.0f} ms later"
    await settled()
    assert in_flight(gateway) == (0, 0)
    stats = gateway.rt.status().stats
    assert stats.errors_by_kind == {"cancelled": 1} and stats.successes == 0
