"""The runtime end to end on simulated providers, in virtual time."""

from __future__ import annotations

import random
from typing import Any

import cattrs
import pytest
import trio
from support import make_config

import runtime
from actors.adapters.simulated import CallPlan
from actors.errors import FailureKind, ProviderError
from actors.faults import Fault, FaultKind
from actors.provider import ProviderActor
from runtime.embed import open_runtime

REQUEST = runtime.Request(
    prompt="Summarise the quarterly tax report",
    complexity="moderate",
    quality="production",
    budget_usd=0.05,
    max_tokens=500,
    temperature=0.7,
)


async def test_primary_answers_without_fallback(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        reply = await rt.complete(REQUEST)
    assert reply.level == "primary"
    assert reply.provider == "openai"
    assert reply.model == "gpt-4o"
    assert not reply.fallback_used
    assert [a.outcome for a in reply.attempts] == ["ok"]
    assert reply.cost_usd > 0
    assert reply.latency_ms > 0


async def test_primary_outage_falls_back_to_secondary(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        rt.inject_fault("anthropic", Fault(FaultKind.OUTAGE))
        reply = await rt.complete(REQUEST)
        assert reply.level == "secondary"
        assert reply.provider == "gemini"
        assert reply.fallback_used
        assert [(a.provider, a.outcome) for a in reply.attempts] == [
            ("openai", "server_error"),
            ("anthropic", "server_error"),
            ("gemini", "ok"),
        ]
        stats = rt.status().stats
        assert stats.total_requests == 1
        assert stats.fallback_used == 1


async def test_breakers_open_and_traffic_skips_the_primary(autojump_clock: Any) -> None:
    config = make_config(
        providers={
            "openai": {"breaker": {"consecutive_failures": 3}},
            "anthropic": {"breaker": {"consecutive_failures": 3}},
        }
    )
    async with open_runtime(config) as rt:
        rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        rt.inject_fault("anthropic", Fault(FaultKind.OUTAGE))
        for _ in range(3):
            await rt.complete(REQUEST)
        status = {p.name: p for p in rt.status().providers}
        assert status["openai"].breaker == "open"
        assert status["openai"].status == "critical"
        await trio.testing.wait_all_tasks_blocked()  # heartbeats reach the router
        reply = await rt.complete(REQUEST)
        # Both primaries are excluded by their breakers: no failed attempt is paid for them.
        assert [a.provider for a in reply.attempts] == ["gemini"]
        explanation = "\n".join(rt.plan(REQUEST).explain())
        assert "excluded openai: breaker open" in explanation


async def test_hung_provider_is_cancelled_exactly_at_its_level_timeout(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        rt.inject_fault("openai", Fault(FaultKind.HANG))
        rt.inject_fault("anthropic", Fault(FaultKind.HANG))
        start = trio.current_time()
        reply = await rt.complete(REQUEST)
        assert reply.level == "secondary"
        timeouts = [a for a in reply.attempts if a.outcome == "timeout"]
        assert [a.provider for a in timeouts] == ["openai"]
        # The level's 30 s went to the hung first candidate; the second was never reached.
        assert timeouts[0].latency_ms == pytest.approx(30_000)
        assert trio.current_time() - start == pytest.approx(30.0 + 0.08, abs=0.06)


async def test_attempt_timeout_moves_on_within_the_level(autojump_clock: Any) -> None:
    config = make_config(
        levels=[
            {
                "name": "primary",
                "providers": ["openai", "anthropic"],
                "timeout_s": 30,
                "attempt_timeout_s": 4,
            },
            {"name": "last_resort", "providers": ["cache", "templates"], "timeout_s": 5},
        ]
    )
    async with open_runtime(config) as rt:
        rt.inject_fault("openai", Fault(FaultKind.HANG))
        start = trio.current_time()
        reply = await rt.complete(REQUEST)
        assert reply.provider == "anthropic"
        assert [(a.provider, a.outcome) for a in reply.attempts] == [
            ("openai", "timeout"),
            ("anthropic", "ok"),
        ]
        assert reply.attempts[0].latency_ms == pytest.approx(4000)
        assert trio.current_time() - start < 5


async def test_race_strategy_cancels_the_losers(autojump_clock: Any) -> None:
    config = make_config(
        levels=[
            {
                "name": "primary",
                "providers": ["openai", "anthropic"],
                "timeout_s": 30,
                "strategy": "race",
            },
            {"name": "last_resort", "providers": ["cache", "templates"], "timeout_s": 5},
        ]
    )
    async with open_runtime(config) as rt:
        rt.inject_fault("anthropic", Fault(FaultKind.HANG))
        start = trio.current_time()
        reply = await rt.complete(REQUEST)
        assert reply.provider == "openai"
        assert trio.current_time() - start < 1.0
        assert rt.snapshot("anthropic").calls_in_flight == 0


async def test_everything_down_answers_from_cache_then_template_then_fails(
    autojump_clock: Any,
) -> None:
    async with open_runtime(make_config()) as rt:
        first = await rt.complete(REQUEST)
        for name in ("openai", "anthropic", "gemini", "local"):
            rt.inject_fault(name, Fault(FaultKind.OUTAGE))
        cached = await rt.complete(REQUEST)
        assert cached.level == "last_resort"
        assert cached.provider == "cache"
        assert cached.text == first.text

        templated = await rt.complete(runtime.Request(prompt="hello there"))
        assert templated.provider == "templates"
        assert templated.text == "busy, try later"

        with pytest.raises(runtime.AllLevelsFailed) as failed:
            await rt.complete(runtime.Request(prompt="nothing fits this"))
        outcomes = [(a.provider, a.outcome) for a in failed.value.attempts]
        assert ("cache", "no_match") in outcomes
        assert ("templates", "no_match") in outcomes


async def test_all_breakers_open_still_leaves_a_candidate(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        for name in ("openai", "anthropic", "gemini", "local"):
            rt.set_breaker(name, "open")
        rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        await trio.testing.wait_all_tasks_blocked()
        plan = rt.plan(REQUEST)
        # forced-open breakers are the operator's word: nothing panics past them.
        assert all(not level.candidates for level in plan.levels[:3])
        for name in ("openai", "anthropic", "gemini", "local"):
            rt.set_breaker(name, "auto")
    config = make_config(
        providers={
            name: {"breaker": {"consecutive_failures": 1}}
            for name in ("openai", "anthropic", "gemini", "local")
        }
    )
    async with open_runtime(config) as rt:
        for name in ("openai", "anthropic", "gemini", "local"):
            rt.inject_fault(name, Fault(FaultKind.OUTAGE))
        with pytest.raises(runtime.AllLevelsFailed):
            await rt.complete(runtime.Request(prompt="no template for this"))
        await trio.testing.wait_all_tasks_blocked()
        for name in ("openai", "anthropic", "gemini", "local"):
            rt.heal(name)
        plan = rt.plan(REQUEST)
        # The plan does not panic while a last resort could answer...
        assert not any(c.panic for level in plan.levels for c in level.candidates)
        reply = await rt.complete(REQUEST)
        # ...it had nothing for this request: one panic call went to the least-bad provider.
        assert [a.outcome for a in reply.attempts] == ["no_match", "no_match", "ok"]
        assert reply.provider in ("openai", "anthropic", "gemini", "local")
        # The panic call's success ended that breaker's open period: its probes decide now.
        assert rt.snapshot(reply.provider).breaker.state == "half_open"


async def test_client_error_is_returned_at_once_without_fallback(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        backend = rt.fault_target("openai")
        error = ProviderError(FailureKind.CLIENT_ERROR, "temperature: must be <= 2", status=400)
        backend.plan = lambda *args, **kwargs: CallPlan(0.0, error=error)  # type: ignore[attr-defined]
        with pytest.raises(runtime.RequestRejected) as rejected:
            await rt.complete(REQUEST)
        assert rejected.value.provider == "openai"
        assert [a.provider for a in rejected.value.attempts] == ["openai"]
        assert rt.snapshot("openai").breaker.calls_in_window == 0


async def test_crashed_provider_actor_is_restarted_with_its_state(autojump_clock: Any) -> None:
    config = make_config(providers={"openai": {"breaker": {"consecutive_failures": 2}}})
    async with open_runtime(config) as rt:
        rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        await rt.complete(REQUEST)
        await rt.complete(REQUEST)
        assert rt.snapshot("openai").breaker.state == "open"
        with rt.events.subscribe() as events:
            rt.crash("openai")
            seen = []
            async for event in events:
                seen.append(event.event)
                if event.event == "actor_restarted":
                    break
        assert seen[:2] == ["provider_client_closed", "actor_crashed"]
        info = {a.name: a for a in rt.actors()}["openai"]
        assert info.restarts == 1
        assert info.state == "running"
        # The new incarnation took up the breaker where the old one left it.
        assert rt.snapshot("openai").breaker.state == "open"
        assert rt.status().providers[0].restarts == 1


async def test_crash_loop_escalates_and_the_root_contains_it(autojump_clock: Any) -> None:
    config = make_config(supervision={"max_restarts": 2, "period_s": 30})
    async with open_runtime(config) as rt:
        with rt.events.subscribe() as events:
            for _ in range(3):
                rt.crash("openai")
                async for event in events:
                    if event.event in ("actor_restarted", "supervisor_escalated"):
                        break
            async for event in events:
                if event.event == "actor_restarted" and event.fields["actor"] == "providers":
                    break
        # The providers supervisor escalated; root restarted it, and requests are served again.
        assert {a.name: a.restarts for a in rt.actors()}["providers"] == 1
        reply = await rt.complete(REQUEST)
        assert reply.provider == "openai"


async def test_thousand_concurrent_requests_under_random_faults_each_end_once(
    autojump_clock: Any,
) -> None:
    rng = random.Random(7)
    config = make_config(
        providers={
            "openai": {"error_rate": 0.3, "hang_probability": 0.02},
            "anthropic": {"error_rate": 0.3},
            "gemini": {"error_rate": 0.5, "hang_probability": 0.05},
            "local": {"error_rate": 0.5},
        },
        runtime={"deadline_s": 90},
    )
    outcomes: dict[int, list[str]] = {}
    async with open_runtime(config) as rt:

        async def one(i: int) -> None:
            request = runtime.Request(
                prompt=f"question {i % 50}",
                complexity=rng.choice(list(runtime.Complexity)),
                quality=rng.choice(list(runtime.Quality)),
                deadline_s=90,
            )
            start = trio.current_time()
            try:
                reply = await rt.complete(request)
            except runtime.AllLevelsFailed:
                outcomes.setdefault(i, []).append("error")
            else:
                assert reply.text
                outcomes.setdefault(i, []).append("reply")
            assert trio.current_time() - start <= 90.0 + 1e-6

        async def chaos() -> None:
            for _ in range(20):
                await trio.sleep(rng.uniform(0.1, 3))
                name = rng.choice(["openai", "anthropic", "gemini"])
                if rng.random() < 0.5:
                    rt.inject_fault(name, Fault(FaultKind.OUTAGE))
                else:
                    rt.heal(name)
                if rng.random() < 0.2:
                    rt.crash(rng.choice(["openai", "gemini", "router"]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(chaos)
            for i in range(1000):
                nursery.start_soon(one, i)
        stats = rt.status().stats
    assert len(outcomes) == 1000
    assert all(len(v) == 1 for v in outcomes.values())
    assert stats.total_requests == 1000
    # About 980 are answered: before failing, a request asks the providers it has not reached,
    # in panic, waiting for a half-open breaker's room (issue 8 item 1).
    assert sum(v == ["reply"] for v in outcomes.values()) > 900


def _count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def test_no_task_is_left_running_after_the_runtime_closes(autojump_clock: Any) -> None:
    before = _count_tasks()
    async with open_runtime(make_config()) as rt:
        await rt.complete(REQUEST)
        rt.inject_fault("openai", Fault(FaultKind.HANG))
        with trio.move_on_after(1):
            await rt.complete(REQUEST)
        assert len(rt.actors()) == 9
        # root, router, providers and six provider actors each run a task or more.
        assert _count_tasks() > before + 9
    assert _count_tasks() == before
    assert {a.state for a in rt.actors()} == {"stopped"}


async def test_status_is_json_ready(autojump_clock: Any) -> None:
    import json

    async with open_runtime(make_config()) as rt:
        await rt.complete(REQUEST)
        status = rt.status()
    data = cattrs.unstructure(status)
    text = json.dumps(data)
    assert '"openai"' in text
    assert data["recommendations"]
    providers = {p["name"]: p for p in data["providers"]}
    assert providers["openai"]["status"] == "healthy"
    assert providers["openai"]["breaker"] == "closed"


async def test_stream_delivers_text_and_reply_metadata(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        pieces = []
        async with rt.stream(REQUEST) as chunks:
            async for text in chunks:
                pieces.append(text)
        assert chunks.reply is not None
        assert "".join(pieces) == chunks.reply.text
        assert chunks.reply.provider == "anthropic"
        assert chunks.reply.fallback_used


async def test_stream_dropped_mid_way_raises_stream_interrupted(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        rt.inject_fault("openai", Fault(FaultKind.DROP_STREAM, after_chunks=2))
        pieces = []
        with pytest.raises(runtime.StreamInterrupted) as interrupted:
            async with rt.stream(REQUEST) as chunks:
                async for text in chunks:
                    pieces.append(text)
        assert interrupted.value.provider == "openai"
        assert interrupted.value.partial_text == "".join(pieces)
        assert len(pieces) == 2


async def test_bulkhead_queues_a_burst(autojump_clock: Any) -> None:
    config = make_config(
        providers={"openai": {"max_in_flight": 2, "latency_ms": 100, "latency_jitter": 0}}
    )
    peak = 0
    async with open_runtime(config) as rt:
        actor = rt.registry.cell("openai").actor
        assert isinstance(actor, ProviderActor)

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, actor.bulkhead.borrowed_tokens)
                await trio.sleep(0.01)

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            async with trio.open_nursery() as burst:
                for _ in range(10):
                    burst.start_soon(rt.complete, REQUEST)
            nursery.cancel_scope.cancel()
        elapsed = trio.current_time() - start
    assert peak == 2
    assert elapsed == pytest.approx(0.5, abs=0.02)  # five rounds of two calls of 100 ms


async def test_first_chunk_timeout_falls_back(autojump_clock: Any) -> None:
    config = make_config(
        levels=[
            {
                "name": "primary",
                "providers": ["openai"],
                "timeout_s": 30,
                "first_chunk_timeout_s": 2,
            },
            {"name": "secondary", "providers": ["gemini"], "timeout_s": 30},
        ]
    )
    async with open_runtime(config) as rt:
        rt.inject_fault("openai", Fault(FaultKind.SLOW_DRIP, delay_s=5))
        async with rt.stream(REQUEST) as chunks:
            text = "".join([piece async for piece in chunks])
        assert chunks.reply is not None
        assert chunks.reply.provider == "gemini"
        assert text == chunks.reply.text
        first = chunks.reply.attempts[0]
        assert (first.provider, first.outcome) == ("openai", "timeout")
        assert first.latency_ms == pytest.approx(2000, abs=1)


async def test_a_stuck_router_never_blocks_providers(autojump_clock: Any) -> None:
    config = make_config(runtime={"mailbox_size": 8, "heartbeat_interval_s": 0.1})
    async with open_runtime(config) as rt:
        stuck = trio.Event()

        async def handle(message: Any) -> None:
            await stuck.wait()

        router = rt.registry.cell("router").actor
        router.handle = handle  # type: ignore[union-attr,method-assign]
        await trio.sleep(5)  # fifty heartbeat periods: the router's mailbox is long full
        assert rt.registry.cell("router").mailbox_depth == 24  # max(8, 4 x 6 providers)
        replies = [await rt.complete(REQUEST) for _ in range(20)]
        assert all(reply.provider == "openai" for reply in replies)
        stuck.set()


async def test_brownout_moves_traffic_before_slow_calls_finish_and_recovers(
    autojump_clock: Any,
) -> None:
    config = make_config(
        providers={
            "openai": {"latency_ms": 500, "latency_jitter": 0},
            "anthropic": {"latency_ms": 600, "latency_jitter": 0},
        },
        runtime={"heartbeat_interval_s": 0.5},
        routing={"latency_stale_s": 20},
    )
    served: list[tuple[float, str]] = []
    async with open_runtime(config) as rt:

        async def traffic(until: float) -> None:
            async def one() -> None:
                reply = await rt.complete(REQUEST)
                served.append((trio.current_time() - start, reply.provider))

            async with trio.open_nursery() as nursery:
                while trio.current_time() - start < until:
                    nursery.start_soon(one)
                    await trio.sleep(0.25)

        start = trio.current_time()
        await traffic(5)
        assert {p for t, p in served} == {"openai"}
        rt.inject_fault("openai", Fault(FaultKind.LATENCY, factor=40))  # 20 s calls
        await traffic(15)
        # The first 20 s call has not finished when traffic has moved: by t=8 s openai's
        # oldest call in flight outweighs anthropic's measured 600 ms.
        late = [p for t, p in served if 8 <= t < 15]
        assert late and set(late) == {"anthropic"}
        rt.heal("openai")
        await traffic(70)
    # Once openai's slow measurement is stale (20 s after its last slow call finished, ~t=28),
    # one request explores it, finds it fast again, and traffic returns; from then on only
    # anthropic, now the stale one, gets an exploring request (one per stale period).
    explored = [t for t, p in served if 28 <= t < 50 and p == "openai"]
    assert explored and 46 <= explored[0] < 50
    back = [p for t, p in served if 50 <= t < 70]
    assert back.count("openai") >= len(back) - 1


async def test_an_adapter_bug_is_classified_and_falls_back(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        backend = rt.fault_target("openai")

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise KeyError("choices")  # a reply shape nobody foresaw

        backend.plan = broken  # type: ignore[attr-defined]
        with rt.events.subscribe() as events:
            reply = await rt.complete(REQUEST)
            async with rt.stream(REQUEST) as chunks:
                text = "".join([piece async for piece in chunks])
            seen = [
                events.receive_nowait().event
                for _ in range(events.statistics().current_buffer_used)
            ]
        assert reply.provider == "anthropic"
        assert reply.attempts[0].outcome == "malformed"
        assert "KeyError" in reply.attempts[0].detail
        assert chunks.reply is not None and text == chunks.reply.text
        assert chunks.reply.attempts[0].outcome == "malformed"
        assert rt.snapshot("openai").breaker.consecutive_failures == 2
        assert seen.count("adapter_error") == 2


async def _limit_all(rt: Any, retry_after_s: float) -> None:
    """Every model provider answers 429 with this Retry-After once, then is healed."""
    for name in ("openai", "anthropic", "gemini", "local"):
        rt.inject_fault(name, Fault(FaultKind.RATE_LIMIT, retry_after_s=retry_after_s))
    with pytest.raises(runtime.AllLevelsFailed):
        await rt.complete(runtime.Request(prompt="no template fits", deadline_s=1))
    for name in ("openai", "anthropic", "gemini", "local"):
        rt.heal(name)


async def test_a_request_waits_for_a_retry_after_instead_of_failing(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        await _limit_all(rt, retry_after_s=3)
        start = trio.current_time()
        with rt.events.subscribe() as events:
            reply = await rt.complete(runtime.Request(prompt="no template fits either"))
            waited = [e for e in _drain(events) if e.event == "waiting_for_provider"]
        # Every provider was asked to stay away 3 s: rather than settle for the last resort
        # (which has nothing here), the request waited for the first one to be back.
        assert reply.level == "primary"
        assert trio.current_time() - start == pytest.approx(3, abs=0.5)
        assert len(waited) == 1


async def test_recovery_waits_stay_within_budget_and_deadline(autojump_clock: Any) -> None:
    async with open_runtime(make_config(runtime={"recovery_wait_s": 2})) as rt:
        await _limit_all(rt, retry_after_s=3)
        start = trio.current_time()
        with pytest.raises(runtime.AllLevelsFailed):
            await rt.complete(runtime.Request(prompt="no template fits either"))
        assert trio.current_time() - start < 0.1  # 3 s is past the 2 s budget: no wait
    async with open_runtime(make_config()) as rt:
        await _limit_all(rt, retry_after_s=3)
        with pytest.raises(runtime.AllLevelsFailed):
            await rt.complete(runtime.Request(prompt="no template fits either", deadline_s=2))
    async with open_runtime(make_config()) as rt:
        await _limit_all(rt, retry_after_s=3)
        # A template fits, but a real provider is back in 3 s: the request waits for it.
        reply = await rt.complete(runtime.Request(prompt="hello, anyone?"))
        assert reply.level == "primary"


async def test_a_stream_waits_for_a_retry_after_too(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        await _limit_all(rt, retry_after_s=3)
        async with rt.stream(runtime.Request(prompt="no template fits either")) as chunks:
            text = "".join([piece async for piece in chunks])
        assert chunks.reply is not None
        assert chunks.reply.level == "primary"
        assert text == chunks.reply.text


def _drain(channel: Any) -> list[Any]:
    return [channel.receive_nowait() for _ in range(channel.statistics().current_buffer_used)]


def _hedged_config(**level: Any) -> Any:
    return make_config(
        providers={
            "openai": {"latency_ms": 100, "latency_jitter": 0},
            "anthropic": {"latency_ms": 120, "latency_jitter": 0},
        },
        levels=[
            {
                "name": "primary",
                "providers": ["openai", "anthropic"],
                "timeout_s": 30,
                "strategy": "hedge",
                "hedge_after_s": 0.5,
                **level,
            },
            {"name": "last_resort", "providers": ["cache", "templates"], "timeout_s": 5},
        ],
    )


async def test_hedge_starts_the_next_candidate_when_the_first_is_slow(autojump_clock: Any) -> None:
    async with open_runtime(_hedged_config()) as rt:
        fast = await rt.complete(REQUEST)
        assert [(a.provider, a.outcome) for a in fast.attempts] == [("openai", "ok")]
        rt.inject_fault("openai", Fault(FaultKind.LATENCY, factor=100))  # 10 s calls
        start = trio.current_time()
        reply = await rt.complete(REQUEST)
        assert reply.provider == "anthropic"
        assert trio.current_time() - start == pytest.approx(0.5 + 0.12)
        assert sorted((a.provider, a.outcome) for a in reply.attempts) == [
            ("anthropic", "ok"),
            ("openai", "cancelled"),
        ]
        assert rt.cascade.hedges == 1
        assert rt.cascade.hedges_in_flight == 0
        assert rt.snapshot("openai").calls_in_flight == 0


async def test_hedge_moves_on_at_once_when_the_first_fails(autojump_clock: Any) -> None:
    async with open_runtime(_hedged_config()) as rt:
        rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        start = trio.current_time()
        reply = await rt.complete(REQUEST)
        assert [(a.provider, a.outcome) for a in reply.attempts] == [
            ("openai", "server_error"),
            ("anthropic", "ok"),
        ]
        assert trio.current_time() - start == pytest.approx(0.12)
        assert rt.cascade.hedges == 0


async def test_hedges_stay_within_their_budget(autojump_clock: Any) -> None:
    peak = 0
    async with open_runtime(_hedged_config()) as rt:
        rt.inject_fault("openai", Fault(FaultKind.LATENCY, factor=100))

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, rt.cascade.hedges_in_flight)
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            async with trio.open_nursery() as burst:
                for _ in range(100):
                    burst.start_soon(rt.complete, REQUEST)
            nursery.cancel_scope.cancel()
    # 100 requests in flight: at most 20 hedges at once; the rest waited for openai.
    assert peak == 20
