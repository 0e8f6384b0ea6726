"""The cascade's guarantees under failure (issue 8), in virtual time."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from support import BASE, make_config

import runtime
from actors.adapters.simulated import SimulatedAdapter
from actors.errors import FailureKind, ProviderError
from actors.faults import Fault, FaultKind
from actors.messages import Completion, Request, StreamDone, StreamEvent
from runtime.embed import open_runtime

REQUEST = runtime.Request(
    prompt="Summarise the quarterly tax report",
    complexity="moderate",
    quality="production",
    budget_usd=0.05,
    max_tokens=500,
)


def _drain(channel: Any) -> list[Any]:
    return [channel.receive_nowait() for _ in range(channel.statistics().current_buffer_used)]


def _four_providers() -> runtime.Config:
    def sim(name: str, model: str, error_rate: float, seed: int) -> dict[str, Any]:
        return {
            "name": name,
            "kind": "simulated",
            "models": [model],
            "latency_ms": 100,
            "error_rate": error_rate,
            "seed": seed,
        }

    return runtime.parse_config(
        {
            "runtime": {"deadline_s": 120, "heartbeat_interval_s": 1.0},
            "providers": [
                sim("openai", "gpt-4o", 0.5, 1),
                sim("anthropic", "claude-sonnet", 0.3, 2),
                sim("gemini", "gemini-pro", 0.2, 3),
                sim("mistral", "mistral-large", 0.9, 4),
            ],
            "levels": [
                {"name": "primary", "providers": ["openai", "anthropic"], "timeout_s": 30},
                {"name": "secondary", "providers": ["gemini", "mistral"], "timeout_s": 45},
            ],
            "models": {m: {} for m in ("gpt-4o", "claude-sonnet", "gemini-pro", "mistral-large")},
        }
    )


async def test_open_breakers_never_turn_an_answerable_request_into_a_failure(
    autojump_clock: Any,
) -> None:
    failed = 0
    async with open_runtime(_four_providers()) as rt:

        async def one() -> None:
            nonlocal failed
            try:
                await rt.complete(runtime.Request(prompt="What is the VAT rate for books?"))
            except runtime.AllLevelsFailed:
                failed += 1

        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(one)
    # The independent failure floor is 0.5 x 0.3 x 0.2 x 0.9 = 2.7 %.
    assert failed / 1000 <= 0.04


# -- refusals, empty and filtered replies ------------------------------------------------------


def _answer_from(
    monkeypatch: pytest.MonkeyPatch, provider: str, answer: Completion | ProviderError
) -> None:
    """`provider` (a simulated one) gives `answer` to every whole-reply and stream call."""
    complete, stream = SimulatedAdapter.complete, SimulatedAdapter.stream

    async def fake_complete(self: SimulatedAdapter, request: Request, model: str) -> Completion:
        if self.backend.name != provider:
            return await complete(self, request, model)
        await trio.sleep(0.05)
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    async def fake_stream(
        self: SimulatedAdapter, request: Request, model: str
    ) -> AsyncIterator[StreamEvent]:
        if self.backend.name != provider:
            async for event in stream(self, request, model):
                yield event
            return
        await trio.sleep(0.05)
        if isinstance(answer, ProviderError):
            raise answer
        yield StreamDone(answer)

    monkeypatch.setattr(SimulatedAdapter, "complete", fake_complete)
    monkeypatch.setattr(SimulatedAdapter, "stream", fake_stream)


async def _every_model_provider_down(rt: runtime.Runtime) -> None:
    for name in ("openai", "anthropic", "gemini", "local"):
        rt.inject_fault(name, Fault(FaultKind.OUTAGE))


@pytest.mark.parametrize(
    "answer",
    [
        Completion("", "gpt-4o", refusal="I can't help with that."),
        Completion("", "gpt-4o"),
        Completion("Here is how to", "gpt-4o", finish_reason="content_filter"),
    ],
    ids=["refusal", "empty", "content_filter"],
)
async def test_refusals_empty_and_filtered_replies_never_reach_the_cache(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch, answer: Completion
) -> None:
    _answer_from(monkeypatch, "openai", answer)
    request = runtime.Request(prompt="How do I file a late VAT return?")
    async with open_runtime(make_config()) as rt:
        reply = await rt.complete(request)
        assert reply.provider == "openai"
        assert reply.refusal == answer.refusal
        assert reply.finish_reason == answer.finish_reason
        monkeypatch.undo()
        await _every_model_provider_down(rt)
        # Nothing was cached, and no template fits: the outage is reported, not served as ''.
        with pytest.raises(runtime.AllLevelsFailed):
            await rt.complete(request)


async def test_a_real_reply_is_still_cached(autojump_clock: Any) -> None:
    request = runtime.Request(prompt="How do I file a late VAT return?")
    async with open_runtime(make_config()) as rt:
        first = await rt.complete(request)
        await _every_model_provider_down(rt)
        reply = await rt.complete(request)
        assert reply.provider == "cache"
        assert reply.text == first.text


async def test_a_level_can_fall_back_on_refusals(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer_from(monkeypatch, "openai", Completion("", "gpt-4o", refusal="No."))
    levels = copy.deepcopy(BASE["levels"])
    levels[0]["fallback_on_refusal"] = True
    async with open_runtime(make_config(levels=levels)) as rt:
        reply = await rt.complete(REQUEST)
        assert reply.provider == "anthropic"
        assert reply.refusal is None
        assert [(a.provider, a.outcome) for a in reply.attempts] == [
            ("openai", "refused"),
            ("anthropic", "ok"),
        ]
        assert reply.fallback_used
        async with rt.stream(REQUEST) as chunks:
            text = "".join([piece async for piece in chunks])
        assert chunks.reply is not None and chunks.reply.provider == "anthropic"
        assert text == chunks.reply.text


async def test_an_empty_reply_falls_back(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer_from(monkeypatch, "openai", ProviderError(FailureKind.EMPTY_REPLY, "no text"))
    async with open_runtime(make_config()) as rt:
        reply = await rt.complete(REQUEST)
    assert reply.provider == "anthropic"
    assert reply.attempts[0].outcome == "empty_reply"


# -- what the caller sees ------------------------------------------------------------------------


async def test_a_closed_runtime_says_so(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        await rt.complete(REQUEST)
    with pytest.raises(runtime.RuntimeClosed, match="closed"):
        await rt.complete(REQUEST)
    with pytest.raises(runtime.RuntimeClosed, match="closed"):
        async with rt.stream(REQUEST):
            pass
    assert issubclass(runtime.RuntimeClosed, runtime.FallbackError)
    assert "RuntimeClosed" in runtime.__all__


async def test_a_reply_while_the_first_choice_is_out_is_a_fallback(autojump_clock: Any) -> None:
    config = make_config(providers={"openai": {"breaker": {"consecutive_failures": 1}}})
    async with open_runtime(config) as rt:
        assert not (await rt.complete(REQUEST)).fallback_used
        rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        assert (await rt.complete(REQUEST)).fallback_used
        rt.heal("openai")
        assert rt.snapshot("openai").breaker.state == "open"
        await trio.testing.wait_all_tasks_blocked()  # heartbeats reach the router
        reply = await rt.complete(REQUEST)
        # openai's breaker is open: anthropic answered at the first try, but it is not the
        # request's first choice with every provider healthy.
        assert [a.provider for a in reply.attempts] == ["anthropic"]
        assert reply.fallback_used


# -- streams get what whole replies get ------------------------------------------------------


async def test_a_stream_moves_on_after_attempt_timeout(autojump_clock: Any) -> None:
    levels = copy.deepcopy(BASE["levels"])
    levels[0]["attempt_timeout_s"] = 1
    async with open_runtime(make_config(levels=levels)) as rt:
        rt.inject_fault("openai", Fault(FaultKind.HANG))
        start = trio.current_time()
        async with rt.stream(REQUEST) as chunks:
            text = "".join([piece async for piece in chunks])
        assert chunks.reply is not None and chunks.reply.provider == "anthropic"
        assert text == chunks.reply.text
        assert trio.current_time() - start < 2


async def test_a_failed_stream_reports_request_failed(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:
        await _every_model_provider_down(rt)
        with rt.events.subscribe() as events:
            with pytest.raises(runtime.AllLevelsFailed):
                async with rt.stream(runtime.Request(prompt="no template fits")) as chunks:
                    async for _ in chunks:
                        pass
            names = [e.event for e in _drain(events)]
        assert "request_failed" in names


async def test_a_stream_tries_a_larger_context_model(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = SimulatedAdapter.stream

    async def small_context(
        self: SimulatedAdapter, request: Request, model: str
    ) -> AsyncIterator[StreamEvent]:
        if model == "gpt-4o-mini":
            await trio.lowlevel.checkpoint()
            raise ProviderError(FailureKind.CONTEXT_TOO_LONG, "too long")
        async for event in stream(self, request, model):
            yield event

    monkeypatch.setattr(SimulatedAdapter, "stream", small_context)
    config = make_config(
        models={
            **BASE["models"],
            "gpt-4o-mini": {"context_window": 128_000},
            "gpt-4o": {"context_window": 1_000_000},
        }
    )
    request = runtime.Request(prompt="Summarise this", complexity="trivial", quality="draft")
    async with open_runtime(config) as rt:
        plan = rt.plan(request)
        first = plan.levels[0].candidates[0]
        assert (first.provider, first.model) == ("openai", "gpt-4o-mini")
        assert "gpt-4o" in first.fallback_models
        async with rt.stream(request) as chunks:
            async for _ in chunks:
                pass
        assert chunks.reply is not None
        assert (chunks.reply.provider, chunks.reply.model) == ("openai", "gpt-4o")


# -- found by property tests -------------------------------------------------------------------


async def test_a_rejection_in_a_hedge_level_is_a_request_rejected(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer_from(
        monkeypatch,
        "openai",
        ProviderError(FailureKind.CLIENT_ERROR, "max_tokens too large", status=400),
    )
    levels = copy.deepcopy(BASE["levels"])
    levels[0]["strategy"] = "hedge"
    async with open_runtime(make_config(levels=levels)) as rt:
        with pytest.raises(runtime.RequestRejected) as rejected:
            await rt.complete(REQUEST)
    assert rejected.value.provider == "openai"


async def test_the_last_resort_always_gets_its_turn(autojump_clock: Any) -> None:
    # The README's defaults: levels 30 / 45 / 60 / 5 s inside a 120 s deadline.
    async with open_runtime(make_config()) as rt:
        for name in ("openai", "anthropic", "gemini", "local"):
            rt.inject_fault(name, Fault(FaultKind.HANG))
        start = trio.current_time()
        reply = await rt.complete(runtime.Request(prompt="hello, anyone there?"))
    assert reply.provider == "templates"
    assert trio.current_time() - start <= 120


async def test_a_rewalk_skips_what_already_failed(autojump_clock: Any) -> None:
    config = make_config(
        runtime={"deadline_s": 16, "recovery_wait_s": 0},
        levels=[
            {"name": "primary", "providers": ["openai"], "timeout_s": 10},
            {"name": "secondary", "providers": ["gemini"], "timeout_s": 10},
        ],
    )
    async with open_runtime(config) as rt:
        rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        rt.inject_fault("gemini", Fault(FaultKind.RATE_LIMIT, retry_after_s=5))
        with pytest.raises(runtime.AllLevelsFailed):
            await rt.complete(runtime.Request(prompt="one", deadline_s=1))
        rt.heal("openai")
        rt.heal("gemini")
        rt.inject_fault("openai", Fault(FaultKind.HANG))
        await trio.testing.wait_all_tasks_blocked()  # gemini's Retry-After reaches the router
        assert rt.plan(REQUEST).earliest_available is not None
        reply = await rt.complete(REQUEST)
    assert reply.provider == "gemini"
    assert [a.provider for a in reply.attempts] == ["openai", "gemini"]


async def test_closing_cancels_requests_in_flight_after_a_grace(autojump_clock: Any) -> None:
    ended: list[tuple[float, BaseException]] = []
    config = make_config(supervision={"shutdown_grace_s": 2})
    async with trio.open_nursery() as nursery, open_runtime(config) as rt:
        for name in ("openai", "anthropic", "gemini", "local"):
            rt.inject_fault(name, Fault(FaultKind.HANG))

        async def one() -> None:
            try:
                await rt.complete(REQUEST)
            except runtime.FallbackError as error:
                ended.append((trio.current_time(), error))

        async def streamed() -> None:
            try:
                async with rt.stream(REQUEST) as chunks:
                    async for _ in chunks:
                        pass
            except runtime.FallbackError as error:
                ended.append((trio.current_time(), error))

        nursery.start_soon(one)
        nursery.start_soon(streamed)
        await trio.sleep(1)
        closing = trio.current_time()
    assert [type(error) for _, error in ended] == [runtime.RuntimeClosed] * 2
    assert all(at == pytest.approx(closing + 2) for at, _ in ended)
    assert rt.stats.snapshot().errors_by_kind == {"runtime_closed": 2}


async def test_cancelled_requests_are_counted(autojump_clock: Any) -> None:
    async with open_runtime(make_config()) as rt:

        async def one(index: int) -> None:
            with trio.move_on_after(0.01 if index < 116 else 60):
                await rt.complete(REQUEST)

        async with trio.open_nursery() as nursery:
            for index in range(300):
                nursery.start_soon(one, index)
        stats = rt.status().stats
    assert stats.total_requests == 300
    assert stats.errors_by_kind == {"cancelled": 116}
    assert stats.successes == 184
