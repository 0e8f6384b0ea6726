"""The dashboard's live history in virtual time: request listeners see every request however it
was asked, samples count what ended in their interval (levels, fallbacks, cost against the
scenario report's baseline), the kept events, bounded memory whatever the uptime, and live
subscribers that fall behind or outlive the history."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from gateway_ops_support import ops_config

import actors.cascade
from actors.faults import Fault, FaultKind
from actors.messages import Request
from actors.prices import baseline_cost, baseline_model
from actors.sizing import request_chars
from actors.stats import RequestEnded
from runtime.embed import Runtime, open_runtime
from runtime.gateway.history import (
    EVENTS_KEPT,
    SAMPLES_KEPT,
    SUBSCRIBER_BUFFER,
    LiveHistory,
    LiveItem,
    open_live_history,
)
from runtime.gateway.live import KEEP_ALIVE_S, LiveStreamResponse
from runtime.gateway.streaming import Message

ASK = Request(prompt="What is the VAT rate on books?", max_tokens=64)
WALL0 = 1_800_000_000.0


def wall_clock() -> float:
    """Wall time that moves with trio's (virtual) clock."""
    return WALL0 + trio.current_time()


async def test_listeners_see_replies_and_errors_then_stop_when_removed(autojump_clock: Any) -> None:
    seen: list[RequestEnded] = []
    async with open_runtime(ops_config()) as rt:
        remove = rt.add_request_listener(seen.append)
        reply = await rt.complete(ASK)
        async with rt.stream(ASK) as chunks:
            assert "".join([c async for c in chunks])
        for name in ("alpha", "beta"):
            rt.inject_fault(name, Fault(FaultKind.OUTAGE))
        with pytest.raises(actors.cascade.AllLevelsFailed):
            await rt.complete(ASK)
        remove()
        for name in ("alpha", "beta"):
            rt.heal(name)
        await rt.complete(ASK)
    assert [e.outcome for e in seen] == ["reply", "reply", "all_levels_failed"]
    first = seen[0]
    assert first.reply == reply and first.request == ASK
    assert first.reply is not None and first.reply.usage.output_tokens > 0
    assert first.latency_ms == reply.latency_ms and not first.fallback_used
    failed = seen[2]
    assert failed.reply is None and failed.fallback_used and len(failed.attempts) >= 2
    assert failed.latency_ms >= 0.0


async def test_without_listeners_nothing_is_built(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("a RequestEnded was built with nobody listening")

    monkeypatch.setattr(actors.cascade, "RequestEnded", refuse)
    async with open_runtime(ops_config()) as rt:
        assert not rt.stats.listening
        await rt.complete(ASK)
        rt.inject_fault("alpha", Fault(FaultKind.OUTAGE))
        rt.inject_fault("beta", Fault(FaultKind.OUTAGE))
        with pytest.raises(actors.cascade.AllLevelsFailed):
            await rt.complete(ASK)


async def test_a_failing_listener_does_not_fail_the_request(autojump_clock: Any) -> None:
    def broken(ended: RequestEnded) -> None:
        raise RuntimeError("observer bug")

    async with open_runtime(ops_config()) as rt:
        rt.add_request_listener(broken)
        reply = await rt.complete(ASK)
    assert reply.provider == "alpha"


async def _settle(history: LiveHistory) -> None:
    """Wait past the next sample."""
    seq = history.samples[-1]["seq"] if history.samples else 0
    while True:
        if history.samples and history.samples[-1]["seq"] != seq:
            return
        await trio.sleep(0.1)


async def test_samples_count_levels_fallbacks_and_cost(autojump_clock: Any) -> None:
    async with (
        open_runtime(ops_config()) as rt,
        open_live_history(rt, wall=wall_clock) as history,
    ):
        replies = [await rt.complete(ASK) for _ in range(3)]
        await _settle(history)
        calm = history.samples[-1]
        rt.set_breaker("alpha", "open")
        replies += [await rt.complete(ASK) for _ in range(2)]
        await _settle(history)
        outage = history.samples[-1]
        status = history.status
    assert calm["traffic"]["requests"] == 3 and calm["traffic"]["by_level"] == {"primary": 3}
    assert calm["traffic"]["fallbacks"] == 0 and calm["traffic"]["errors"] == 0
    assert calm["traffic"]["p50_ms"] is not None and calm["traffic"]["rps"] == 3.0
    assert outage["traffic"]["by_level"] == {"secondary": 2}
    assert outage["traffic"]["fallbacks"] == 2
    assert outage["providers"]["alpha"]["breaker"] == "forced_open"
    assert outage["providers"]["beta"]["breaker"] == "closed"
    assert outage["t"] == pytest.approx(WALL0 + 2.0, abs=0.5)
    # Cost and its baseline as the scenario report computes them.
    _, model = baseline_model(rt.config)
    price = rt.config.model_info(model)
    chars = rt.config.routing.chars_per_token
    baseline = sum(
        baseline_cost(r, price, prompt_chars=request_chars(ASK), chars_per_token=chars)
        for r in replies
    )
    totals = status["totals"]
    assert totals["requests"] == 5 and totals["fallback_rate"] == pytest.approx(0.4)
    assert totals["cost_usd"] == pytest.approx(sum(r.cost_usd for r in replies), abs=1e-7)
    assert totals["baseline_usd"] == pytest.approx(baseline, abs=1e-7)
    assert set(totals["by_provider_usd"]) == {"alpha", "beta"}
    assert outage["cost"]["by_provider"].keys() == {"beta"}
    assert status["tenants"] == [] and status["recommendations"]


async def test_an_open_breaker_counts_down_to_half_open(autojump_clock: Any) -> None:
    async with (
        open_runtime(ops_config()) as rt,
        open_live_history(rt, wall=wall_clock) as history,
    ):
        rt.inject_fault("alpha", Fault(FaultKind.OUTAGE))
        for _ in range(12):
            await rt.complete(ASK)
        await _settle(history)
        alpha = history.samples[-1]["providers"]["alpha"]
    assert alpha["breaker"] == "open"
    assert alpha["half_open_in_s"] is not None and alpha["half_open_in_s"] > 0


async def test_kept_events_are_logged_with_scalar_fields(autojump_clock: Any) -> None:
    async with (
        open_runtime(ops_config()) as rt,
        open_live_history(rt, wall=wall_clock) as history,
    ):
        rt.set_breaker("alpha", "open")
        await rt.complete(ASK)  # fallback_used: info, not kept
        rt.inject_fault("beta", Fault(FaultKind.ERRORS, rate=0.5))
        rt.events.emit("operator_action", action="heal", provider="beta", operator="a", client="c")
        rt.events.emit("something_odd", detail={"nested": [1, 2]}, missing=None)
        await trio.sleep(0.5)
        events = list(history.events)
    names = [e["event"] for e in events]
    assert "breaker_overridden" in names and "fault_injected" in names
    assert "operator_action" in names and "fallback_used" not in names
    assert "something_odd" not in names  # an info event not in the kept list
    for event in events:
        assert event["level"] in ("debug", "info", "warning", "error", "critical")
        assert all(isinstance(v, str | int | float | bool) for v in event["fields"].values())
        assert WALL0 <= event["t"] <= WALL0 + 10
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_memory_stays_bounded_over_2000_intervals(autojump_clock: Any) -> None:
    async with (
        open_runtime(ops_config()) as rt,
        open_live_history(rt, wall=wall_clock) as history,
    ):
        for _ in range(2000):
            await _settle(history)
        for index in range(EVENTS_KEPT + 50):
            rt.events.emit("operator_action", action="x", provider="alpha", index=index)
        await trio.sleep(0.5)
        assert len(history.samples) == SAMPLES_KEPT
        assert history.samples[-1]["seq"] >= 2000
        assert history.samples[0]["seq"] == history.samples[-1]["seq"] - SAMPLES_KEPT + 1
        assert len(history.events) == EVENTS_KEPT
        assert history.samples_after(history.samples[-1]["seq"] - 3)[0]["seq"] == (
            history.samples[-1]["seq"] - 2
        )


async def test_a_subscriber_that_falls_behind_is_dropped(autojump_clock: Any) -> None:
    async with (
        open_runtime(ops_config()) as rt,
        open_live_history(rt, wall=wall_clock) as history,
    ):
        with history.subscribe(buffer=4) as slow, history.subscribe(buffer=100) as keeping_up:
            assert history.subscribers == 2
            for _ in range(4):  # two items a sample: a sample and the status
                await _settle(history)
            got: list[LiveItem] = [item async for item in slow]  # ends: it was dropped
            assert len(got) == 4 and history.subscribers == 1
            assert keeping_up.statistics().current_buffer_used == 8


async def test_closing_ends_every_stream(autojump_clock: Any) -> None:
    ended = trio.Event()
    rt_ref: list[Runtime] = []

    async def listen(history: LiveHistory) -> None:
        with history.subscribe() as items:
            async for _ in items:
                pass
        ended.set()

    async with open_runtime(ops_config()) as rt:
        rt_ref.append(rt)
        async with open_live_history(rt) as history, trio.open_nursery() as nursery:
            nursery.start_soon(listen, history)
            await _settle(history)
            history.close()
            with trio.fail_after(1):
                await ended.wait()
            with history.subscribe() as late:
                assert [item async for item in late] == []
        assert not rt.stats.listening


async def test_a_stream_whose_client_stops_reading_is_dropped(autojump_clock: Any) -> None:
    sent: list[Message] = []
    reading = trio.Event()

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) == 2:  # the client reads the headers and the first frame, then stops
            await reading.wait()

    async def receive() -> Message:
        await trio.sleep_forever()
        raise AssertionError

    async with (
        open_runtime(ops_config()) as rt,
        open_live_history(rt, wall=wall_clock) as history,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(LiveStreamResponse(history, 0), {"type": "http"}, receive, send)
        await trio.sleep(1.5)
        assert history.subscribers == 1
        # Two items a sample: the buffer fills in SUBSCRIBER_BUFFER / 2 seconds.
        await trio.sleep(SUBSCRIBER_BUFFER / 2 + 2)
        assert history.subscribers == 0
        reading.set()
    # Once the client read again, what was buffered went out, then the stream ended.
    frames = [m["body"] for m in sent if m["type"] == "http.response.body"]
    assert frames[-1] == b"" and sent[-1]["more_body"] is False
    assert sum(frame.startswith(b"event: sample") for frame in frames) == SUBSCRIBER_BUFFER // 2


async def test_an_idle_stream_sends_keep_alives(autojump_clock: Any) -> None:
    sent: list[bytes] = []

    async def send(message: Message) -> None:
        sent.append(message.get("body", b""))

    async def receive() -> Message:
        await trio.sleep_forever()
        raise AssertionError

    async with (
        open_runtime(ops_config()) as rt,
        open_live_history(rt, interval_s=1000.0) as history,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(LiveStreamResponse(history, 0), {"type": "http"}, receive, send)
        await trio.sleep(KEEP_ALIVE_S * 2 + 1)
        history.close()
    assert sent[1] == b"retry: 2000\n\n"
    assert sent.count(b": keep-alive\n\n") == 2
    assert sent[-1] == b""
