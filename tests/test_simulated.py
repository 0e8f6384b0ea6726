"""The simulated provider: seeded behaviour, fault classification, rate limiting, streams."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import pytest
import trio
import trio.testing

from actors.adapters.base import ADAPTER_KINDS
from actors.adapters.simulated import (
    _FILLER,
    SimulatedAdapter,
    SimulatedBackend,
    _filler,
    _lognormal,
    simulated_adapter,
)
from actors.config import Config, LevelConfig, ProviderConfig
from actors.errors import FailureKind, ProviderError
from actors.faults import Fault, FaultKind
from actors.messages import Completion, Request, StreamDone, StreamEvent, TextDelta

REQUEST = Request(prompt="Explain circuit breakers in two short paragraphs please", max_tokens=200)


class SharedObjects:
    """A minimal AdapterContext: one object per (provider, kind), like the runtime's."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.objects: dict[tuple[str, str], Any] = {}

    def shared(self, provider: str, kind: str, factory: Callable[[], Any]) -> Any:
        key = (provider, kind)
        if key not in self.objects:
            self.objects[key] = factory()
        return self.objects[key]


def provider(**overrides: Any) -> ProviderConfig:
    settings: dict[str, Any] = {
        "name": "sim",
        "kind": "simulated",
        "models": ("m1",),
        "latency_ms": 100.0,
        "seed": 7,
    }
    settings.update(overrides)
    return ProviderConfig(**settings)


def adapter(**overrides: Any) -> SimulatedAdapter:
    return SimulatedAdapter(SimulatedBackend(provider(**overrides)))


async def timed_calls(sim: SimulatedAdapter, count: int) -> list[tuple[float, str]]:
    results = []
    for _ in range(count):
        start = trio.current_time()
        completion = await sim.complete(REQUEST, "m1")
        results.append((round(trio.current_time() - start, 9), completion.text))
    return results


async def failure(sim: SimulatedAdapter, request: Request = REQUEST) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await sim.complete(request, "m1")
    return info.value


async def collect(sim: SimulatedAdapter) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    async with aclosing(sim.stream(REQUEST, "m1")) as stream:  # type: ignore[type-var]
        async for event in stream:
            events.append(event)
    return events


def test_kind_is_registered() -> None:
    assert ADAPTER_KINDS["simulated"] is simulated_adapter


async def test_same_seed_same_latencies_and_texts(autojump_clock: trio.testing.MockClock) -> None:
    first = await timed_calls(adapter(), 20)
    second = await timed_calls(adapter(), 20)
    other_seed = await timed_calls(adapter(seed=8), 20)
    assert first == second
    assert first != other_seed
    assert len({latency for latency, _ in first}) > 1  # jitter really varies


async def test_latency_is_spread_around_latency_ms(autojump_clock: trio.testing.MockClock) -> None:
    latencies = sorted(latency for latency, _ in await timed_calls(adapter(), 201))
    median = latencies[100]
    assert 0.085 < median < 0.115
    assert latencies[0] < 0.09 and latencies[-1] > 0.11


async def test_zero_latency_takes_no_time_but_checkpoints(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = adapter(latency_ms=0.0)
    start = trio.current_time()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await sim.complete(REQUEST, "m1")
    completion = await sim.complete(REQUEST, "m1")
    assert trio.current_time() == start
    assert completion.model == "m1"


async def test_completion_usage_and_text() -> None:
    sim = adapter(latency_ms=0.0)
    completion = await sim.complete(REQUEST, "m1")
    assert completion.usage.input_tokens == len(REQUEST.last_user_text) // 4
    assert 0 < completion.usage.output_tokens <= REQUEST.max_tokens
    assert "Explain circuit breakers" in completion.text
    assert completion.finish_reason == "stop"
    short = await sim.complete(Request(prompt="hi", max_tokens=3), "m1")
    assert short.usage.output_tokens == len(short.text.split()) == 3
    assert short.finish_reason == "length"


@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [
        (Fault(FaultKind.OUTAGE), FailureKind.SERVER_ERROR, 503),
        (Fault(FaultKind.ERRORS, rate=1.0, status=502), FailureKind.SERVER_ERROR, 502),
        (Fault(FaultKind.RATE_LIMIT, retry_after_s=7.0), FailureKind.RATE_LIMITED, 429),
        (Fault(FaultKind.QUOTA), FailureKind.RATE_LIMITED, 429),
        (Fault(FaultKind.MALFORMED), FailureKind.MALFORMED, None),
    ],
)
async def test_fault_classification(
    fault: Fault, kind: FailureKind, status: int | None, autojump_clock: trio.testing.MockClock
) -> None:
    sim = adapter()
    sim.backend.inject(fault)
    error = await failure(sim)
    assert error.kind is kind
    assert error.status == status
    if fault.kind is FaultKind.RATE_LIMIT:
        assert error.retry_after_s == 7.0
    if fault.kind is FaultKind.QUOTA:
        assert error.quota_remaining == 0.0
    sim.backend.heal()
    assert isinstance(await sim.complete(REQUEST, "m1"), Completion)


async def test_error_rate_knob_fails_as_server_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = adapter(error_rate=1.0)
    error = await failure(sim)
    assert (error.kind, error.status) == (FailureKind.SERVER_ERROR, 503)
    assert error.counts_against_breaker


async def test_partial_error_rate_is_seeded(autojump_clock: trio.testing.MockClock) -> None:
    async def outcomes(seed: int) -> list[bool]:
        sim = adapter(error_rate=0.3, seed=seed)
        result = []
        for _ in range(100):
            try:
                await sim.complete(REQUEST, "m1")
                result.append(True)
            except ProviderError:
                result.append(False)
        return result

    first = await outcomes(3)
    assert first == await outcomes(3)
    assert 15 <= first.count(False) <= 45


async def test_latency_fault_multiplies(autojump_clock: trio.testing.MockClock) -> None:
    plain = await timed_calls(adapter(latency_jitter=0.0), 1)
    sim = adapter(latency_jitter=0.0)
    sim.backend.inject(Fault(FaultKind.LATENCY, factor=10.0))
    slowed = await timed_calls(sim, 1)
    assert plain[0][0] == pytest.approx(0.1)
    assert slowed[0][0] == pytest.approx(1.0)
    # As on the fake provider server: latency x factor + delay_s.
    sim.backend.inject(Fault(FaultKind.LATENCY, factor=2.0, delay_s=0.5))
    assert (await timed_calls(sim, 1))[0][0] == pytest.approx(0.7)


def test_fault_delay_defaults_by_kind() -> None:
    assert Fault(FaultKind.SLOW_DRIP).delay_s == 0.5
    assert Fault(FaultKind.LATENCY).delay_s == 0.0
    assert Fault(FaultKind.LATENCY, delay_s=2).delay_s == 2


@pytest.mark.parametrize("how", ["fault", "knob"])
async def test_hang_is_cancellable(how: str, autojump_clock: trio.testing.MockClock) -> None:
    sim = adapter(hang_probability=1.0 if how == "knob" else 0.0)
    if how == "fault":
        sim.backend.inject(Fault(FaultKind.HANG))
    start = trio.current_time()
    with trio.move_on_after(30) as scope:
        await sim.complete(REQUEST, "m1")
    assert scope.cancelled_caught
    assert trio.current_time() - start == pytest.approx(30)


async def test_hang_in_stream_is_cancellable(autojump_clock: trio.testing.MockClock) -> None:
    sim = adapter()
    sim.backend.inject(Fault(FaultKind.HANG))
    with trio.move_on_after(5) as scope:
        await collect(sim)
    assert scope.cancelled_caught


async def test_rate_limit_token_bucket_in_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = adapter(latency_ms=0.0, rate_limit_rps=2.0)
    first = await sim.complete(REQUEST, "m1")
    second = await sim.complete(REQUEST, "m1")
    assert first.quota_remaining == 0.5 and second.quota_remaining == 0.0
    error = await failure(sim)
    assert error.kind is FailureKind.RATE_LIMITED and error.status == 429
    assert error.retry_after_s == pytest.approx(0.5)
    await trio.sleep(0.25)
    assert (await failure(sim)).retry_after_s == pytest.approx(0.25)
    await trio.sleep(0.25)
    assert isinstance(await sim.complete(REQUEST, "m1"), Completion)
    await failure(sim)


async def test_knobs_changed_while_running_take_effect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = provider(latency_jitter=0.0)
    context = SharedObjects(Config(providers=(config,), levels=(LevelConfig("l", ("sim",), 1.0),)))
    sim = simulated_adapter(config, context)
    backend = sim.backend
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def call_in_flight() -> None:
            await sim.complete(REQUEST, "m1")
            done.set()

        nursery.start_soon(call_in_flight)
        await trio.sleep(0.05)
        backend.configure(error_rate=1.0)  # does not touch the call already decided
        await done.wait()
    assert (await failure(sim)).kind is FailureKind.SERVER_ERROR
    backend.configure(error_rate=0.0, latency_ms=2000.0)
    assert (await timed_calls(sim, 1))[0][0] == pytest.approx(2.0)
    backend.configure(latency_ms=0.0, rate_limit_rps=1.0)
    await sim.complete(REQUEST, "m1")
    assert (await failure(sim)).kind is FailureKind.RATE_LIMITED
    backend.configure(rate_limit_rps=None)
    await sim.complete(REQUEST, "m1")
    # A restarted actor builds a new adapter on the same backend: the knobs and faults persist.
    backend.inject(Fault(FaultKind.OUTAGE))
    rebuilt = simulated_adapter(config, context)
    assert rebuilt.backend is backend
    assert (await failure(rebuilt)).status == 503


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"latency": 1.0}, "unknown knob 'latency'"),
        ({"error_rate": 1.5}, "error_rate=1.5 must be between 0.0 and 1.0"),
        ({"latency_ms": -1.0}, "latency_ms=-1.0 must be >= 0.0"),
        ({"rate_limit_rps": 0.0}, "rate_limit_rps=0.0 must be > 0.0"),
        ({"hang_probability": "x"}, "hang_probability='x' is not a number"),
        ({"latency_ms": None}, "latency_ms=None is not allowed"),
    ],
)
def test_bad_knob_names_the_knob(knobs: dict[str, Any], message: str) -> None:
    backend = SimulatedBackend(provider())
    with pytest.raises(ValueError, match=message):
        backend.configure(**knobs)
    assert backend.knobs()["error_rate"] == 0.0


def test_inject_replaces_same_kind_and_lift_removes() -> None:
    backend = SimulatedBackend(provider())
    backend.inject(Fault(FaultKind.ERRORS, rate=0.5))
    backend.inject(Fault(FaultKind.ERRORS, rate=0.9))
    backend.inject(Fault(FaultKind.LATENCY, factor=3))
    assert backend.faults() == (Fault(FaultKind.ERRORS, rate=0.9), Fault("latency", factor=3))
    backend.lift("errors")
    assert [fault.kind for fault in backend.faults()] == [FaultKind.LATENCY]
    backend.heal()
    assert backend.faults() == ()


async def test_stream_yields_words_spread_over_latency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim = adapter(latency_jitter=0.0)
    start = trio.current_time()
    events = await collect(sim)
    assert trio.current_time() - start == pytest.approx(0.1)
    *deltas, done = events
    assert isinstance(done, StreamDone)
    assert all(isinstance(delta, TextDelta) for delta in deltas)
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == done.completion.text
    assert len(deltas) == done.completion.usage.output_tokens


@pytest.mark.parametrize("after", [0, 1, 3])
async def test_drop_stream_after_n_chunks(
    after: int, autojump_clock: trio.testing.MockClock
) -> None:
    sim = adapter()
    sim.backend.inject(Fault(FaultKind.DROP_STREAM, after_chunks=after))
    received: list[StreamEvent] = []
    with pytest.raises(ProviderError) as info:
        async with aclosing(sim.stream(REQUEST, "m1")) as stream:  # type: ignore[type-var]
            async for event in stream:
                received.append(event)
    assert info.value.kind is FailureKind.CONNECTION
    assert len(received) == after
    assert all(isinstance(event, TextDelta) for event in received)


@pytest.mark.parametrize("after", [0, 2])
async def test_stream_error_breaks_off_after_n_chunks_as_a_server_error(
    after: int, autojump_clock: trio.testing.MockClock
) -> None:
    sim = adapter()
    sim.backend.inject(Fault(FaultKind.STREAM_ERROR, after_chunks=after, status=529))
    received: list[StreamEvent] = []
    with pytest.raises(ProviderError) as info:
        async with aclosing(sim.stream(REQUEST, "m1")) as stream:  # type: ignore[type-var]
            async for event in stream:
                received.append(event)
    assert (info.value.kind, info.value.status) == (FailureKind.SERVER_ERROR, 529)
    assert len(received) == after
    assert all(isinstance(event, TextDelta) for event in received)
    with pytest.raises(ProviderError) as whole:  # a whole reply fails as a server error
        await sim.complete(REQUEST, "m1")
    assert (whole.value.kind, whole.value.status) == (FailureKind.SERVER_ERROR, 529)


async def test_slow_drip_spaces_chunks(autojump_clock: trio.testing.MockClock) -> None:
    sim = adapter(latency_ms=0.0)
    sim.backend.inject(Fault(FaultKind.SLOW_DRIP, delay_s=0.5))
    start = trio.current_time()
    events = await collect(sim)
    deltas = len(events) - 1
    assert trio.current_time() - start == pytest.approx(0.5 * deltas)


async def test_stream_error_before_first_chunk(autojump_clock: trio.testing.MockClock) -> None:
    sim = adapter()
    sim.backend.inject(Fault(FaultKind.OUTAGE))
    with pytest.raises(ProviderError) as info:
        await collect(sim)
    assert info.value.kind is FailureKind.SERVER_ERROR


async def test_aclose_is_idempotent() -> None:
    sim = adapter()
    await sim.aclose()
    await sim.aclose()


def test_draws_match_the_standard_library_calls_they_replace() -> None:
    """The filler words and the jittered latency draw what `random.choices`/`randint` and
    `lognormvariate` would: the same values, and the generator left in the same state, so a
    seed gives the same run as it always did."""
    for seed in range(200):
        ours, theirs = random.Random(seed), random.Random(seed)
        assert _filler(ours) == theirs.choices(_FILLER, k=theirs.randint(8, 32))
        mu, sigma = math.log(50.0 + seed), 0.05 * (seed % 7)
        assert _lognormal(ours, mu, sigma) == theirs.lognormvariate(mu, sigma)
        assert ours.getstate() == theirs.getstate()


def _reference_text(rng: random.Random, request: Request, sender: str) -> tuple[str, int, str]:
    """A completion's text, output tokens and finish reason as the simulator defines them."""
    words = [sender, *request.last_user_text.split()[:8], "--"]
    words += rng.choices(_FILLER, k=rng.randint(8, 32))
    if len(words) > request.max_tokens:
        words = words[: request.max_tokens]
        return " ".join(words), len(words), "length"
    return " ".join(words), len(words), "stop"


@pytest.mark.parametrize(
    "request_",
    [
        REQUEST,
        Request(prompt="  one\ttwo  three four five six seven eight nine ten  ", max_tokens=40),
        Request(prompt="few words", system="be brief", max_tokens=6),
        Request(prompt="x " * 500, max_tokens=14),
        Request(
            messages=[
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": "and a follow-up with more than eight words in it"},
            ],
            max_tokens=300,
        ),
    ],
)
def test_completion_text_echoes_the_prompt_then_seeded_filler(request_: Request) -> None:
    backend = SimulatedBackend(provider(latency_jitter=0.0))
    reference = random.Random(7)
    for _ in range(30):
        completion = backend.plan(request_, "m1").completion
        assert completion is not None
        text, tokens, finish_reason = _reference_text(reference, request_, "[sim/m1]")
        assert (completion.text, completion.usage.output_tokens) == (text, tokens)
        assert completion.finish_reason == finish_reason
    assert backend.rng.getstate() == reference.getstate()
