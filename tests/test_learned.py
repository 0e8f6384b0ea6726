"""Learned selection: the sampler's posteriors, discounting, bounded exploration, what it may never
reorder, determinism, its config, where its estimates show, and what it wins on slow drift."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from support import snap
from test_ranking import DEMO

import runtime
from actors.config import parse_config
from actors.detect import Demotion
from actors.errors import ConfigError
from actors.learned import Learner, LearnerSettings
from actors.messages import BreakerState, ProviderSnapshot, Request
from actors.ranking import Candidate, Fitness, Ranker
from actors.router import RouterActor
from runtime.embed import open_runtime
from runtime.repl.commands import Console
from runtime.scenario.compare import compare, variants_to_compare
from runtime.scenario.format import load_scenario

REQUEST = Request(prompt="hi", complexity="moderate", quality="production")
LEARNED = attrs.evolve(DEMO, routing=attrs.evolve(DEMO.routing, mode="learned"))
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def candidate(provider: str, model: str = "m") -> Candidate:
    return Candidate(provider, model, (), 50.0, Fitness(None, None), 0.0)


def healthy(latencies: dict[str, float]) -> dict[str, ProviderSnapshot]:
    return {
        name: attrs.evolve(snap(name, latency_ms=ms, error_rate=0.01), last_check=0.0)
        for name, ms in latencies.items()
    }


def learned_router(**routing: Any) -> tuple[RouterActor, Learner]:
    config = attrs.evolve(LEARNED, routing=attrs.evolve(LEARNED.routing, **routing))
    learner = Learner(LearnerSettings.of(config))
    return RouterActor(config, Ranker(config), learner=learner), learner


def firsts(router: RouterActor, n: int, request: Request = REQUEST) -> list[str]:
    return [router.plan(request).levels[0].candidates[0].provider for _ in range(n)]


# --- the posterior ---------------------------------------------------------------------------


def test_calls_move_the_estimate_from_the_heartbeat_prior_to_what_they_measured() -> None:
    clock = Clock()
    learner = Learner(LearnerSettings(prior_weight=10.0), clock=clock)
    snaps = healthy({"openai": 800.0})
    c = candidate("openai", "gpt-4o")
    prior = learner.estimate(c, snaps, 30.0)
    assert prior.weight == 0.0
    assert prior.success == pytest.approx((0.5 + 9.9) / 11.0)
    assert 800.0 < prior.latency_ms < 900.0  # the lognormal mean of the heartbeat's 800 ms
    for _ in range(90):
        learner.record("openai", "gpt-4o", 3000.0, ok=True)
    for _ in range(10):
        learner.record("openai", "gpt-4o", 3000.0, ok=False)
    after = learner.estimate(c, snaps, 30.0)
    assert after.weight == pytest.approx(100.0)
    assert after.success == pytest.approx((0.5 + 9.9 + 90) / 111.0)
    # 90 calls at 3 s against 10 prior calls' worth at 800 ms: near 3 s, and worse for both.
    assert 2500.0 < after.latency_ms < 3200.0
    assert after.value_ms > prior.value_ms * 3


def test_a_calls_weight_halves_each_half_life() -> None:
    clock = Clock()
    learner = Learner(LearnerSettings(half_life_s=15.0), clock=clock)
    for _ in range(40):
        learner.record("openai", "gpt-4o", 800.0, ok=True)
    c = candidate("openai", "gpt-4o")
    assert learner.estimate(c, {}, 30.0).weight == pytest.approx(40.0)
    clock.now = 15.0
    assert learner.estimate(c, {}, 30.0).weight == pytest.approx(20.0)
    clock.now = 45.0
    assert learner.estimate(c, {}, 30.0).weight == pytest.approx(5.0)


def test_the_deadline_counts_a_latency_that_would_miss_it_as_a_failure() -> None:
    learner = Learner(LearnerSettings(), clock=Clock())
    for _ in range(50):
        learner.record("local", "llama3", 2500.0, ok=True)
    c = candidate("local", "llama3")
    roomy = learner.estimate(c, {}, 30.0)
    tight = learner.estimate(c, {}, 2.5)  # a good share of its calls would miss it
    assert tight.value_ms > 1.4 * roomy.value_ms


def test_a_slow_call_in_flight_raises_the_estimate_at_once() -> None:
    learner = Learner(LearnerSettings(), clock=Clock())
    snaps = healthy({"openai": 800.0})
    c = candidate("openai", "gpt-4o")
    before = learner.estimate(c, snaps, 30.0).latency_ms
    snaps["openai"] = attrs.evolve(snaps["openai"], oldest_call_s=6.0)
    assert before < 1000.0
    assert learner.estimate(c, snaps, 30.0).latency_ms == 6000.0


# --- ordering and exploration ------------------------------------------------------------------


async def test_the_best_estimate_goes_first_and_exploration_stays_within_its_share(
    autojump_clock: Any,
) -> None:
    router, learner = learned_router(learned_explore_share=0.05)
    # Close enough that samples often disagree with the means.
    router.table.update(healthy({"openai": 800.0, "anthropic": 820.0}))
    plan = router.plan(REQUEST, explore=False)
    assert plan.levels[0].candidates[0].provider == "openai"
    picks = firsts(router, 1000)
    explored = picks.count("anthropic")
    assert learner.explorations == explored
    assert learner.planned == 1000
    assert 0 < explored <= 0.05 * 1000 + 1
    assert explored > 0.03 * 1000  # the share is used, not just allowed


async def test_explaining_a_plan_draws_nothing_and_explores_nothing(autojump_clock: Any) -> None:
    router, learner = learned_router(learned_explore_share=1.0)
    router.table.update(healthy({"openai": 800.0, "anthropic": 800.0}))
    for _ in range(50):
        router.plan(REQUEST, explore=False)
    assert learner.explorations == 0
    assert learner.planned == 0


async def test_no_sample_puts_first_what_the_ranker_excluded_or_demoted(
    autojump_clock: Any,
) -> None:
    router, _ = learned_router(learned_explore_share=1.0)
    now = trio.current_time()
    base = healthy({"openai": 300.0, "anthropic": 900.0})
    cases: list[tuple[dict[str, ProviderSnapshot], Request]] = [
        # openai's breaker is open, or it asked us to wait (Retry-After).
        ({**base, "openai": snap("openai", state=BreakerState.OPEN, open_until=now + 60)}, REQUEST),
        ({**base, "openai": snap("openai", latency_ms=300, retry_after_until=now + 60)}, REQUEST),
        # The request pins a model openai does not offer.
        (base, attrs.evolve(REQUEST, model="claude-sonnet")),
    ]
    for table, request in cases:
        router.table.clear()
        router.table.update(table)
        assert set(firsts(router, 300, request)) == {"anthropic"}


async def test_no_sample_puts_first_a_provider_over_the_budget(autojump_clock: Any) -> None:
    config = parse_config(
        {
            "providers": [
                {"name": "fast", "kind": "simulated", "models": ["pricey"]},
                {"name": "slow", "kind": "simulated", "models": ["cheap"]},
            ],
            "levels": [{"name": "only", "providers": ["fast", "slow"]}],
            "models": {
                "pricey": {"input_usd_per_mtok": 10, "output_usd_per_mtok": 100},
                "cheap": {"input_usd_per_mtok": 0.1, "output_usd_per_mtok": 1},
            },
            "routing": {"mode": "learned", "learned_explore_share": 1.0},
        }
    )
    router = RouterActor(config, Ranker(config), learner=Learner(LearnerSettings.of(config)))
    router.table.update(healthy({"fast": 100.0, "slow": 2000.0}))
    request = Request(prompt="hi", max_tokens=1000, budget_usd=0.01)
    plan = router.plan(request, explore=False)
    assert [e.provider for e in plan.levels[0].exclusions] == ["fast"]
    assert set(firsts(router, 300, request)) == {"slow"}
    assert firsts(router, 300, attrs.evolve(request, budget_usd=None)).count("fast") >= 150


async def test_a_demoted_provider_stays_behind_whatever_the_samples_say(
    autojump_clock: Any,
) -> None:
    now = trio.current_time()
    demotion = Demotion("openai", "latency", "latency +4.0 sd over 40 calls", now, now + 1e6)
    config = attrs.evolve(LEARNED, routing=attrs.evolve(LEARNED.routing, learned_explore_share=1))
    learner = Learner(LearnerSettings.of(config))
    ranker = Ranker(config, demotions=lambda _now: {"openai": demotion})
    router = RouterActor(config, ranker, learner=learner)
    router.table.update(healthy({"openai": 100.0, "anthropic": 900.0}))
    assert set(firsts(router, 300)) == {"anthropic"}


async def test_the_same_seed_gives_the_same_orders_and_another_seed_others(
    autojump_clock: Any,
) -> None:
    def run(seed: int) -> list[str]:
        router, _ = learned_router(learned_explore_share=0.3, learned_seed=seed)
        router.table.update(healthy({"openai": 800.0, "anthropic": 820.0}))
        return firsts(router, 200)

    assert run(1) == run(1)
    assert run(1) != run(2)


# --- config ------------------------------------------------------------------------------------


def _config(routing: dict[str, Any]) -> Any:
    return parse_config(
        {
            "providers": [{"name": "a", "kind": "simulated", "models": ["gpt-4o"]}],
            "levels": [{"name": "only", "providers": ["a"]}],
            "routing": routing,
        }
    )


def test_mode_defaults_to_the_seeds_score_and_accepts_learned() -> None:
    assert _config({}).routing.mode == "score"
    routing = _config({"mode": "learned", "learned_explore_share": 0.1}).routing
    assert (routing.mode, routing.learned_explore_share) == ("learned", 0.1)


@pytest.mark.parametrize(
    ("routing", "names"),
    [
        ({"mode": "bandit"}, ("routing", "mode", "'bandit' is not one of: score, learned")),
        ({"learned_explore_share": 1.5}, ("routing", "learned_explore_share=1.5")),
        ({"learned_half_life_s": 0}, ("routing", "learned_half_life_s")),
        ({"learned_prior_weight": -1}, ("routing", "learned_prior_weight")),
        ({"learned_ms_per_cent": -1}, ("routing", "learned_ms_per_cent")),
    ],
)
def test_a_bad_learned_setting_is_a_config_error_naming_it(
    routing: dict[str, Any], names: Sequence[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        _config(routing)
    for name in names:
        assert name in str(raised.value)


# --- visibility ----------------------------------------------------------------------------------


async def test_estimates_show_in_explain_status_router_snapshot_and_the_console(
    autojump_clock: Any,
) -> None:
    config = attrs.evolve(
        runtime.load_config(runtime.demo.default_config_path()),
        routing=attrs.evolve(DEMO.routing, mode="learned"),
    )
    async with open_runtime(config) as rt:
        for _ in range(20):
            await rt.complete(REQUEST)
        lines = rt.plan(REQUEST).explain()
        primary = [line for line in lines if line.startswith("primary #")]
        assert primary and all(" learned p=" in line for line in primary)
        learned = {(e.provider, e.model): e for e in rt.status().learned}
        assert learned and all(e.weight > 0 for e in learned.values())
        router = rt.snapshot("router")
        assert router.mode == "learned"
        assert {(e.provider, e.model) for e in router.learned} == set(learned)
        written: list[str] = []

        async def write(out: Sequence[str]) -> None:
            written.extend(out)

        console = Console(rt, write)
        await console.run_line("route")
        assert any(" learned p=" in line for line in written)
        written.clear()
        await console.run_line("status")
        assert any("learned" in line for line in written)
        assert any("value_ms" in line for line in written)


async def test_score_mode_shows_and_keeps_nothing_learned(autojump_clock: Any) -> None:
    async with open_runtime(runtime.load_config(runtime.demo.default_config_path())) as rt:
        for _ in range(5):
            await rt.complete(REQUEST)
        assert rt.learner is None
        assert all(" learned " not in line for line in rt.plan(REQUEST).explain())
        assert rt.status().learned == ()
        assert rt.snapshot("router").mode == "score"


# --- the measured claim --------------------------------------------------------------------------


@pytest.mark.seeds
def test_learned_lowers_p95_against_the_seeds_score_on_slow_drift_at_seed_7() -> None:
    scenario = load_scenario(SCENARIOS / "slow-drift.toml")
    variants = [v for v in variants_to_compare(scenario) if v.name in ("baseline", "learned")]
    data = compare(scenario, variants, [7]).data
    (base,), (learned,) = (column["runs"] for column in data["variants"])
    assert learned["p95_ms"] < base["p95_ms"] or learned["paid_requests"] < base["paid_requests"]
    assert learned["availability"] >= base["availability"]
