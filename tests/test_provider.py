"""The provider actor's admission and bookkeeping, through the runtime, in virtual time."""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from typing import Any

import pytest
import trio
from support import make_config

import runtime
from actors.errors import FailureKind, ProviderError
from actors.messages import BreakerState, Completion, Request
from actors.provider import BILLING_RETRY_S, ProviderActor
from runtime.embed import Runtime, open_runtime

REQUEST = runtime.Request(prompt="Summarise the quarterly tax report", deadline_s=10)


def _actor(rt: Runtime, name: str) -> ProviderActor:
    actor = rt.registry.cell(name).actor
    assert isinstance(actor, ProviderActor)
    return actor


# -- half-open admits no more than half_open_probes ----------------------------------------------


def _half_open_config(seed: int) -> Any:
    """One provider (no last resort, so open breakers bring panic calls), flaky enough to trip
    and recover again and again."""
    return make_config(
        providers={
            "openai": {
                "max_in_flight": 8,
                "latency_ms": 200,
                "error_rate": 0.3,
                "seed": seed,
                "breaker": {
                    "half_open_probes": 1,
                    "minimum_calls": 5,
                    "consecutive_failures": 3,
                    "open_s": 0.5,
                    "open_max_s": 2.0,
                },
            }
        },
        levels=[{"name": "primary", "providers": ["openai"], "timeout_s": 5}],
    )


@pytest.mark.parametrize("seed", range(1, 6))
async def test_half_open_never_lets_out_more_than_its_probes(
    autojump_clock: Any, seed: int
) -> None:
    rng = random.Random(seed)
    # Calls that reached the provider while half-open, by breaker period.
    sends: Counter[int] = Counter()
    async with open_runtime(_half_open_config(seed)) as rt:
        actor = _actor(rt, "openai")
        assert actor.adapter is not None
        real = actor.adapter.complete

        async def spy(request: Request, model: str) -> Completion:
            if actor.breaker.state is BreakerState.HALF_OPEN:
                sends[actor.breaker.period] += 1
            return await real(request, model)

        actor.adapter.complete = spy  # type: ignore[method-assign]

        async def client() -> None:
            end = trio.current_time() + 60
            while trio.current_time() < end:
                with contextlib.suppress(runtime.AllLevelsFailed):
                    await rt.complete(REQUEST)
                await trio.sleep(rng.uniform(0, 0.3))

        async with trio.open_nursery() as nursery:
            for _ in range(24):
                nursery.start_soon(client)
    assert len(sends) >= 10, "the breaker should have gone half-open many times"
    assert max(sends.values()) <= 1, sends


# -- every wait is bounded by the deadline -------------------------------------------------------


def _one_slot_config() -> Any:
    return make_config(
        providers={"openai": {"max_in_flight": 1, "latency_ms": 10_000, "latency_jitter": 0}},
        levels=[{"name": "primary", "providers": ["openai"], "timeout_s": 30}],
    )


async def _occupy_the_slot(rt: Runtime, nursery: trio.Nursery) -> None:
    nursery.start_soon(rt.complete, runtime.Request(prompt="a long one", deadline_s=30))
    await trio.sleep(0.1)
    assert _actor(rt, "openai").bulkhead.borrowed_tokens == 1


async def test_stream_waits_for_a_slot_no_longer_than_its_deadline(autojump_clock: Any) -> None:
    async with open_runtime(_one_slot_config()) as rt, trio.open_nursery() as nursery:
        await _occupy_the_slot(rt, nursery)
        start = trio.current_time()
        with pytest.raises(runtime.AllLevelsFailed) as caught:
            async with rt.stream(runtime.Request(prompt="quick", deadline_s=1)) as chunks:
                async for _ in chunks:
                    pass
        assert trio.current_time() - start == pytest.approx(1.0, abs=0.01)
        assert [a.outcome for a in caught.value.attempts] == ["timeout"]
        nursery.cancel_scope.cancel()


async def test_complete_waits_for_a_slot_no_longer_than_its_deadline(autojump_clock: Any) -> None:
    async with open_runtime(_one_slot_config()) as rt, trio.open_nursery() as nursery:
        await _occupy_the_slot(rt, nursery)
        start = trio.current_time()
        with pytest.raises(runtime.AllLevelsFailed):
            await rt.complete(runtime.Request(prompt="quick", deadline_s=1))
        assert trio.current_time() - start == pytest.approx(1.0, abs=0.01)
        # No call went out: the provider is not blamed for our own queue.
        assert _actor(rt, "openai").breaker.snapshot().calls_in_window == 0
        nursery.cancel_scope.cancel()


# -- what a failure says about the provider -------------------------------------------------------


def _fail_with(actor: ProviderActor, kind: FailureKind, message: str) -> list[float]:
    """Make every call to `actor` fail as `kind`; returns the times calls reached it."""
    calls: list[float] = []

    async def failing(request: Request, model: str) -> Completion:
        calls.append(trio.current_time())
        raise ProviderError(kind, message, status=429)

    actor.adapter.complete = failing  # type: ignore[method-assign,union-attr]
    return calls


async def test_a_spent_account_holds_the_provider_out_with_its_reason(autojump_clock: Any) -> None:
    message = "openai: You exceeded your current quota (insufficient_quota)"
    async with open_runtime(make_config()) as rt:
        actor = _actor(rt, "openai")
        calls = _fail_with(actor, FailureKind.BILLING, message)
        with rt.events.subscribe() as receive:
            reply = await rt.complete(REQUEST)
            events = [
                receive.receive_nowait() for _ in range(receive.statistics().current_buffer_used)
            ]
        assert reply.provider == "anthropic"
        assert [a.outcome for a in reply.attempts] == ["billing", "ok"]
        assert "provider_billing_failed" in [e.event for e in events]
        snapshot = actor.snapshot()
        assert not snapshot.available
        assert snapshot.reason == message
        status = {p.name: p for p in rt.status().providers}["openai"]
        assert (status.available, status.reason, status.status) == (False, message, "offline")
        # Not retried every second: held out until the billing wait is over.
        for _ in range(20):
            await trio.sleep(5)
            assert (await rt.complete(REQUEST)).provider == "anthropic"
        assert len(calls) == 1
        assert "excluded openai: unavailable" in "\n".join(rt.plan(REQUEST).explain())
        await trio.sleep(BILLING_RETRY_S)
        # The wait is over: one call may try the account again.
        assert actor.snapshot().available
        assert "excluded openai" not in "\n".join(rt.plan(REQUEST).explain())
        # A billing failure is no sign of ill health: the breaker never counted it.
        assert actor.breaker.snapshot().calls_in_window == 0


@pytest.mark.parametrize(
    "kind", [FailureKind.UNSUPPORTED, FailureKind.EMPTY_REPLY, FailureKind.REFUSED]
)
async def test_failures_of_the_reply_say_nothing_about_the_provider(
    autojump_clock: Any, kind: FailureKind
) -> None:
    config = make_config(
        levels=[
            {"name": "primary", "providers": ["openai"], "timeout_s": 30},
            {"name": "secondary", "providers": ["anthropic"], "timeout_s": 30},
        ]
    )
    async with open_runtime(config) as rt:
        actor = _actor(rt, "openai")
        calls = _fail_with(actor, kind, f"openai: {kind.value}")
        for _ in range(20):
            # Whether such a reply falls back is the cascade's call, not the provider's.
            with contextlib.suppress(runtime.FallbackError):
                await rt.complete(REQUEST)
            await trio.sleep(0.5)
        snapshot = actor.snapshot()
    assert len(calls) == 20, "the provider was held out"
    assert snapshot.available
    assert snapshot.breaker.state is BreakerState.CLOSED
    assert snapshot.breaker.calls_in_window == 0
    assert (snapshot.consecutive_failures, snapshot.error_rate) == (0, 0.0)
    assert snapshot.status.value == "healthy"
