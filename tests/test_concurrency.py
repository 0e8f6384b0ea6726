"""Adaptive concurrency (`max_in_flight = "auto"`): the controller, its config, the provider
that obeys it, where it shows, and what it wins on the hidden rate limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from support import make_config

import runtime
from actors.concurrency import LONG_WINDOW, PROBE_ROUNDS, AdaptiveLimit
from actors.config import parse_config
from actors.errors import ConfigError
from actors.provider import ProviderActor
from runtime.embed import Runtime, open_runtime
from runtime.gateway.metrics import GatewayMetrics
from runtime.repl.commands import Console
from runtime.scenario.compare import variants_to_compare
from runtime.scenario.format import load_scenario
from runtime.scenario.measure import clean_replies, wasted_calls
from runtime.scenario.recorder import Recorder
from runtime.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent
Changes = list[tuple[int, int, str]]


def _limit(floor: int = 1, ceiling: int = 64) -> tuple[AdaptiveLimit, Changes]:
    changes: Changes = []
    limit = AdaptiveLimit(floor, ceiling, on_change=lambda *c: changes.append(c))
    return limit, changes


def _used_up_round(limit: AdaptiveLimit, rtt_s: float = 1.0) -> None:
    limit.saturated()
    for _ in range(limit.limit):
        limit.on_latency(rtt_s)


# --- the controller -----------------------------------------------------------------------------


async def test_the_limit_doubles_in_slow_start_and_only_when_used_up(autojump_clock: Any) -> None:
    limit, changes = _limit()
    for _ in range(5):
        limit.on_latency(1.0)  # rounds that never found the limit used up
    assert limit.limit == 1
    for _ in range(3):
        _used_up_round(limit)
    assert limit.limit == 8
    assert changes == [(1, 2, "saturated"), (2, 4, "saturated"), (4, 8, "saturated")]


async def test_a_429_cuts_by_a_quarter_once_per_round_then_growth_is_additive(
    autojump_clock: Any,
) -> None:
    limit, changes = _limit()
    for _ in range(4):
        _used_up_round(limit)
    assert limit.limit == 16
    sent_before = trio.current_time()
    await trio.sleep(1)
    limit.on_rate_limited(trio.current_time())
    assert limit.limit == 12 and not limit.slow_start
    # Calls sent before the cut were answered for by it.
    limit.on_rate_limited(sent_before)
    assert limit.limit == 12
    _used_up_round(limit)
    assert limit.limit == 13
    assert changes[-2:] == [(16, 12, "rate_limited"), (12, 13, "saturated")]


async def test_past_the_limit_a_429_came_at_only_after_probe_rounds(autojump_clock: Any) -> None:
    limit, _ = _limit()
    for _ in range(2):
        _used_up_round(limit)
    limit.on_rate_limited(trio.current_time())  # 4 -> 3
    assert limit.limit == 3
    _used_up_round(limit)  # back to 4, where the 429 came, at once
    assert limit.limit == 4
    for _ in range(PROBE_ROUNDS - 1):
        _used_up_round(limit)
    assert limit.limit == 4
    _used_up_round(limit)
    assert limit.limit == 5


async def test_latency_over_the_long_term_cuts_by_the_gradient_at_most_by_half(
    autojump_clock: Any,
) -> None:
    limit, changes = _limit()
    for _ in range(4):
        _used_up_round(limit)
    for _ in range(LONG_WINDOW // 16 * 16):  # whole rounds at the long-term latency
        limit.on_latency(1.0)
    assert limit.limit == 16
    # Three times the long term: cut by the ratio (1.5 times the long term over the short).
    for _ in range(16):
        limit.on_latency(3.0)
    old, new, reason = changes[-1]
    assert reason == "latency" and old == 16 and 8 < new < 16
    assert limit.long_rtt_s is not None
    assert new == int(16 * 1.5 * limit.long_rtt_s / 3.0)
    # Fifty times: half at most.
    for _ in range(new):
        limit.on_latency(50.0)
    assert changes[-1] == (new, new // 2, "latency")
    # Within the tolerance: no cut, and growth again when used up.
    cut = limit.limit
    _used_up_round(limit, rtt_s=limit.long_rtt_s)
    assert limit.limit == cut + 1


async def test_the_limit_stays_an_integer_within_floor_and_ceiling(autojump_clock: Any) -> None:
    limit, changes = _limit(floor=2, ceiling=5)
    assert limit.limit == 2
    for _ in range(6):
        _used_up_round(limit)
    assert limit.limit == 5
    for _ in range(6):
        await trio.sleep(1)
        limit.on_rate_limited(trio.current_time())
    assert limit.limit == 2
    for _ in range(50):
        limit.on_latency(100.0)
    assert limit.limit == 2
    assert all(isinstance(new, int) and 2 <= new <= 5 for _, new, _ in changes)
    with pytest.raises(ValueError, match="floor"):
        AdaptiveLimit(3, 2)


# --- config -------------------------------------------------------------------------------------


def _provider(**keys: Any) -> dict[str, Any]:
    return {"name": "openai", "kind": "simulated", "models": ["gpt-4o"], **keys}


def _parse(**keys: Any) -> Any:
    return parse_config(
        {
            "providers": [_provider(**keys)],
            "levels": [{"name": "primary", "providers": ["openai"]}],
        }
    )


def test_max_in_flight_takes_auto_with_a_floor_and_ceiling() -> None:
    auto = _parse(max_in_flight="auto", max_in_flight_min=2, max_in_flight_max=10)
    provider = auto.provider("openai")
    assert provider.adaptive_concurrency and provider.in_flight_ceiling == 10
    fixed = _parse(max_in_flight=7).provider("openai")
    assert not fixed.adaptive_concurrency and fixed.in_flight_ceiling == 7
    assert _parse().provider("openai").max_in_flight == 64


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"max_in_flight": "lots"}, r"max_in_flight.*'lots' is not an integer or 'auto'"),
        ({"max_in_flight": 0}, r"max_in_flight.*must be >= 1"),
        ({"max_in_flight": 2.5}, r"max_in_flight.*not an integer or 'auto'"),
        ({"max_in_flight_min": 0}, r"max_in_flight_min.*must be >= 1"),
        (
            {"max_in_flight": "auto", "max_in_flight_min": 8, "max_in_flight_max": 4},
            r"max_in_flight_max.*4 must be >= max_in_flight_min=8",
        ),
    ],
)
def test_a_bad_limit_is_an_error_naming_the_field(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _parse(**keys)


# --- the provider -------------------------------------------------------------------------------


def _auto_config() -> Any:
    return make_config(
        providers={
            "openai": {
                "max_in_flight": "auto",
                "max_in_flight_max": 8,
                "latency_ms": 1000,
                "latency_jitter": 0,
                "error_rate": 0,
            }
        },
    )


def _actor(rt: Runtime, name: str) -> ProviderActor:
    actor = rt.registry.cell(name).actor
    assert isinstance(actor, ProviderActor)
    return actor


async def test_calls_beyond_a_shrunk_limit_are_not_sent(autojump_clock: Any) -> None:
    sent: list[float] = []
    async with open_runtime(_auto_config()) as rt:
        actor = _actor(rt, "openai")
        assert actor.concurrency is not None and actor.adapter is not None
        real = actor.adapter.complete

        async def spy(request: runtime.Request, model: str) -> Any:
            sent.append(trio.current_time())
            return await real(request, model)

        actor.adapter.complete = spy  # type: ignore[method-assign]
        actor.concurrency.on_rate_limited(trio.current_time())  # stays at the floor, 1
        assert actor.bulkhead.total_tokens == 1
        replies: list[str] = []

        async def ask() -> None:
            reply = await rt.complete(runtime.Request(prompt="hello", deadline_s=10))
            replies.append(reply.provider)

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(ask)
    assert len(sent) == 1, "one slot: the other three went on to the next candidate"
    assert replies.count("openai") == 1 and len(replies) == 4


async def test_status_metrics_and_the_repl_show_the_limit(autojump_clock: Any) -> None:
    async with open_runtime(_auto_config()) as rt:
        await rt.complete(runtime.Request(prompt="hello", deadline_s=10))
        await trio.sleep(2)  # a heartbeat
        (status,) = [p for p in rt.status().providers if p.name == "openai"]
        assert (status.concurrency_limit, status.concurrency_bounds) == (1, (1, 8))
        (fixed,) = [p for p in rt.status().providers if p.name == "anthropic"]
        assert fixed.concurrency_bounds is None and fixed.concurrency_limit > 1
        metrics = GatewayMetrics(rt)
        samples = {
            sample.labels["provider"]: sample.value
            for family in metrics.registry.collect()
            if family.name == "uptax_provider_concurrency_limit"
            for sample in family.samples
        }
        assert samples["openai"] == 1 and samples["anthropic"] == fixed.concurrency_limit
        lines: list[str] = []

        async def write(written: Any) -> None:
            lines.extend(written)

        console = Console(rt, write)
        await console.cmd_status([], "status")
    text = "\n".join(lines)
    assert "concurrency_limit" in text and "concurrency_bounds" in text


# --- the scenario -------------------------------------------------------------------------------


@pytest.mark.seeds
def test_auto_answers_more_without_a_429_on_the_hidden_rate_limit() -> None:
    """At seed 7: 429s from OpenAI 372 -> 158, requests answered without a wasted call
    3,246 -> 3,461 (of 3,600). OpenAI's own replies do not rise with it (1,024 -> 1,068 here,
    but higher at 4 of seeds 1-10 only, see scenarios/hidden-rate-limit.toml): not asserted."""
    scenario = load_scenario(ROOT / "scenarios" / "hidden-rate-limit.toml")
    runs: dict[str, tuple[dict[str, Any], int, int]] = {}
    for variant in variants_to_compare(scenario):
        recorders: list[Recorder] = []
        report = run_scenario(scenario.under(variant), seed=7, on_recorder=recorders.append)
        (openai,) = [p for p in report.data["providers"] if p["name"] == "openai"]
        assert report.data["availability"] == 1.0 and report.passed
        runs[variant.name] = (openai, wasted_calls(recorders[0]), clean_replies(recorders[0]))
    (fixed, fixed_wasted, fixed_clean), (auto, auto_wasted, auto_clean) = (
        runs["baseline"],
        runs["auto-limit"],
    )
    assert auto["failures"]["rate_limited"] * 2 < fixed["failures"]["rate_limited"]
    assert auto_wasted * 2 < fixed_wasted
    assert auto_clean > fixed_clean + 150
