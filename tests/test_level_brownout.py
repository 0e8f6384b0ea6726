"""Brownouts across levels (`[[levels]] brownout`): the config, the watch's signal, the
cascade's demotion and hedge in virtual time, what the plan explains, and the measured win on
scenarios/level-brownout.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from support import drain, make_config

from actors.brownout import MIN_EXCESS_MS, BrownoutWatch, HedgeBudget
from actors.config import Config
from actors.errors import ConfigError
from actors.faults import Fault, FaultKind
from actors.messages import Request
from actors.stats import AlertKind, PerformanceHistory
from runtime.embed import Runtime, open_runtime
from runtime.scenario.compare import compare, variants_to_compare
from runtime.scenario.format import load_scenario

ROOT = Path(__file__).resolve().parent.parent
ASK = "What is the VAT rate on books?"

pytestmark = pytest.mark.usefixtures("own_logging")


def _config(**primary: Any) -> Config:
    """OpenAI alone on the primary level (100 ms), Gemini (80 ms) on the secondary; every
    level but the primary without a brownout policy."""
    off = {"brownout": "off"}
    return make_config(
        levels=[
            {"name": "primary", "providers": ["openai"], "timeout_s": 30, **primary},
            {"name": "secondary", "providers": ["gemini"], "timeout_s": 45, **off},
            {"name": "emergency", "providers": ["local"], "timeout_s": 60, **off},
            {"name": "last_resort", "providers": ["cache", "templates"], "timeout_s": 5, **off},
        ]
    )


def _level(**keys: Any) -> dict[str, Any]:
    return {"name": "primary", "providers": ["openai"], "timeout_s": 30, **keys}


# --- config ----------------------------------------------------------------------------------


def test_the_policy_is_demote_unless_asked() -> None:
    level = make_config().levels[0]
    assert (level.brownout, level.brownout_factor) == ("demote", 5.0)
    assert (level.brownout_hedge_budget, level.brownout_probe_s) == (0.2, 5.0)
    assert _config(brownout="Off").levels[0].brownout == "off"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"brownout": "skip"}, r"levels\[0\]\.brownout: 'skip' is not one of: off, demote, hedge"),
        ({"brownout_factor": 1.0}, r"levels\[0\]: brownout_factor=1.0 must be > 1.0"),
        ({"brownout_hedge_budget": 1.5}, r"levels\[0\]: brownout_hedge_budget=1.5"),
        ({"brownout_probe_s": 0}, r"levels\[0\]: brownout_probe_s=0"),
    ],
)
def test_a_bad_value_names_its_field(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(levels=[_level(**keys)])


# --- the watch -------------------------------------------------------------------------------


def _watch(events: list[tuple[str, dict[str, Any]]]) -> BrownoutWatch:
    history = PerformanceHistory()
    history.set_baseline("openai", 100.0)
    levels = _config(brownout="demote").levels
    return BrownoutWatch(
        levels, history, emit=lambda name, **kw: events.append((name, kw)), clock=lambda: 7.0
    )


def test_a_brownout_is_the_latency_alert_and_ends_with_the_first_fast_call() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    watch = _watch(events)
    assert watch.threshold_s("openai") == 0.5
    assert watch.threshold_s("gemini") is None  # its level has no policy
    for _ in range(3):
        watch.observe("openai", 100.0)
    watch.observe("openai", 1500.0)  # mean 450 ms: still under 5x
    assert not watch.brownouts()
    watch.observe("openai", 2000.0)
    brownout = watch.brownouts()["openai"]
    assert (brownout.calls, brownout.since) == (5, 7.0)
    assert brownout.note == (
        "browned out: openai latency 760 ms over 5 call(s) is over 5x its baseline 100 ms"
    )
    assert events == [
        (
            "alert_raised",
            {
                "provider": "openai",
                "alert": "brownout",
                "detail": brownout.note,
                "level": "primary",
            },
        )
    ]
    watch.observe("openai", 50.0, lower_bound=True)  # a loser cancelled early: no evidence
    assert watch.brownouts()
    watch.observe("openai", 120.0)
    assert not watch.brownouts()
    assert events[-1][0] == "alert_cleared"
    watch.observe("openai", 400.0)  # the slow calls before the end no longer count
    assert not watch.brownouts()


def test_a_fast_provider_is_not_browned_out_by_a_few_ms() -> None:
    """5x a baseline near 0 is noise: a brownout is also `MIN_EXCESS_MS` over the baseline."""
    events: list[tuple[str, dict[str, Any]]] = []
    watch = _watch(events)
    watch._history.set_baseline("openai", 0.2)
    assert watch.threshold_s("openai") == pytest.approx((0.2 + MIN_EXCESS_MS) / 1000)
    for _ in range(20):
        watch.observe("openai", 3.0)  # 15x the baseline, 2.8 ms over it
    assert not watch.brownouts()
    assert events == []


async def test_a_brownout_is_raised_once_however_many_slow_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A provider answering in 1 ms, under load: a few ms slower is no brownout (the walk and
    the alerts are unchanged); 100 ms slower is one, raised once for its every slow call."""
    config = make_config(
        providers={"openai": {"latency_ms": 1, "latency_jitter": 0}},
        levels=[
            {"name": "primary", "providers": ["openai"], "timeout_s": 30},
            {"name": "secondary", "providers": ["gemini"], "timeout_s": 45},
        ],
    )
    async with open_runtime(config) as rt:
        with rt.events.subscribe() as events:
            rt.inject_fault("openai", Fault(FaultKind.LATENCY, factor=20))  # 20 ms
            for _ in range(30):
                assert (await rt.complete(Request(prompt=ASK))).provider == "openai"
            assert not [e for e in drain(events) if e.event.startswith("alert_")]
            rt.inject_fault("openai", Fault(FaultKind.LATENCY, factor=100))  # 100 ms
            for _ in range(30):
                await rt.complete(Request(prompt=ASK))
            raised = [e.fields for e in drain(events) if e.event == "alert_raised"]
        assert [(f["provider"], f["alert"]) for f in raised] == [("openai", "brownout")]


def test_the_hedge_budget_is_a_share_of_requests() -> None:
    budget = HedgeBudget(0.25)
    allowed = []
    for _ in range(12):
        budget.deposit()
        allowed.append(budget.withdraw())
    assert allowed == [False, False, False, True] * 3


# --- the cascade -----------------------------------------------------------------------------


async def _warm(rt: Runtime, calls: int = 3) -> None:
    for _ in range(calls):
        assert (await rt.complete(Request(prompt=ASK))).provider == "openai"


async def test_demote_walks_the_next_level_first_and_probes_the_demoted_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(_config(brownout="demote")) as rt:
        await _warm(rt)
        rt.inject_fault("openai", Fault(FaultKind.LATENCY, factor=20))
        slow = await rt.complete(Request(prompt=ASK))  # nothing is browned out yet: it waits
        assert (slow.provider, slow.latency_ms > 1500) == ("openai", True)
        # The stats' latency alert and the brownout are the same signal, raised together.
        alerts = {a.kind: a.message for a in rt.status().alerts if a.provider == "openai"}
        assert set(alerts) == {AlertKind.LATENCY, AlertKind.BROWNOUT}
        assert alerts[AlertKind.BROWNOUT].startswith("primary browned out: openai latency")
        explain = rt.plan(Request(prompt=ASK)).explain()
        assert any(
            line.startswith("primary brownout demote: tried after secondary, browned out: openai")
            for line in explain
        ), explain
        with rt.events.subscribe() as events:
            # The first request is the probe: OpenAI first, hedged into the secondary at 0.5 s.
            probe = await rt.complete(Request(prompt=ASK))
            assert probe.provider == "gemini"
            # The winner's attempt is recorded first: the loser ends when it is cancelled.
            assert [(a.provider, a.outcome) for a in probe.attempts] == [
                ("gemini", "ok"),
                ("openai", "cancelled"),
            ]
            # The hedge started at 0.5 s (5x OpenAI's 100 ms): OpenAI ran that, then Gemini's call.
            hedged_at = probe.attempts[1].latency_ms - probe.attempts[0].latency_ms
            assert hedged_at == pytest.approx(500, abs=1)
            # The others within brownout_probe_s go to the secondary first, and only there.
            demoted = await rt.complete(Request(prompt=ASK))
            assert [a.provider for a in demoted.attempts] == ["gemini"]
            assert demoted.fallback_used  # served by a later level than configured
            names = [event.event for event in drain(events)]
        assert names.count("level_hedged") == 1
        assert names.count("level_demoted") == 1
        assert _calls_in_flight(rt, "openai") == 0  # the loser is gone
        rt.heal("openai")
        await trio.sleep(5)
        back = await rt.complete(Request(prompt=ASK))  # the next probe: OpenAI answers fast
        assert back.provider == "openai"
        assert rt.brownout_watch is not None and not rt.brownout_watch.brownouts()
        assert (await rt.complete(Request(prompt=ASK))).provider == "openai"


def _calls_in_flight(rt: Runtime, name: str) -> int:
    actor = rt.providers.live(name)
    assert actor is not None
    return actor.bulkhead.borrowed_tokens


async def test_hedge_starts_the_next_level_within_its_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = _config(brownout="hedge", brownout_hedge_budget=0.5)
    async with open_runtime(config) as rt:
        await _warm(rt)
        explain = rt.plan(Request(prompt=ASK)).explain()
        assert (
            "primary brownout hedge: a call over 5x its provider's baseline latency starts "
            "secondary beside it, within 50% of requests" in explain
        )
        rt.inject_fault("openai", Fault(FaultKind.LATENCY, factor=20))
        served = []
        for _ in range(6):
            reply = await rt.complete(Request(prompt=ASK))
            served.append(reply.provider)
            two = len(reply.attempts) == 2
            assert [a.outcome for a in reply.attempts] == (["ok", "cancelled"] if two else ["ok"])
        # Each request deposits half a hedge: the warm-up's three saved 1.5, then one in two.
        assert served == ["gemini", "gemini", "gemini", "openai", "gemini", "openai"]
        assert rt.cascade.in_flight == 0
        assert _calls_in_flight(rt, "openai") == 0
        # The cost of a request is what its answering call cost; the loser was cancelled before
        # it answered, so it reported no usage to pay for.
        hedged = await rt.complete(Request(prompt=ASK))
        assert hedged.provider == "gemini"
        assert hedged.cost_usd == pytest.approx(
            hedged.usage.input_tokens * 1.25e-6 + hedged.usage.output_tokens * 5e-6
        )


async def test_a_stream_walks_the_demoted_order_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(_config(brownout="demote", brownout_probe_s=60)) as rt:
        await _warm(rt)
        rt.inject_fault("openai", Fault(FaultKind.LATENCY, factor=20))
        await rt.complete(Request(prompt=ASK))  # slow: the brownout starts
        await rt.complete(Request(prompt=ASK))  # the probe
        async with rt.stream(Request(prompt=ASK)) as stream:
            text = "".join([chunk async for chunk in stream])
        assert text
        assert stream.reply is not None
        assert [a.provider for a in stream.reply.attempts] == ["gemini"]


async def test_off_leaves_the_walk_alone(autojump_clock: trio.testing.MockClock) -> None:
    async with open_runtime(_config(brownout="off")) as rt:
        await _warm(rt)
        assert rt.brownout_watch is None
        assert not any("brownout" in line for line in rt.plan(Request(prompt=ASK)).explain())
        rt.inject_fault("openai", Fault(FaultKind.LATENCY, factor=20))
        for _ in range(3):
            assert (await rt.complete(Request(prompt=ASK))).provider == "openai"


# --- measured --------------------------------------------------------------------------------


@pytest.mark.seeds  # two 300 s runs: about 20 s
def test_demote_keeps_the_brownout_p50_within_twice_the_healthy_one() -> None:
    """scenarios/level-brownout.toml at seed 7: with demote the p50 stays within twice OpenAI's
    healthy latency (800 ms) through three minutes of a x10 brownout, and beats off's."""
    scenario = load_scenario(ROOT / "scenarios" / "level-brownout.toml")
    # The scenario's own config is demote; its "off" variant is the walk before the policy.
    variants = [v for v in variants_to_compare(scenario) if v.name in ("baseline", "off")]
    runs = {
        column["name"]: column["runs"][0]
        for column in compare(scenario, variants, [7]).data["variants"]
    }
    healthy_ms = scenario.config.provider("openai").latency_ms
    off, demote = runs["off"], runs["baseline"]
    assert off["p50_ms"] > 5 * healthy_ms  # nothing moved: the brownout was the p50
    assert demote["p50_ms"] <= 2 * healthy_ms
    assert demote["paid_requests"] < off["paid_requests"] / 10
    assert demote["availability"] == off["availability"] == 1.0
