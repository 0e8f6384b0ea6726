"""The router's ranking: formula, matrix fitness, exclusions, budget, context, panic, determinism."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import snap

from actors.config import Config, LevelConfig, load_config, parse_config
from actors.messages import (
    BreakerState,
    ProviderSnapshot,
    Request,
)
from actors.ranking import Candidate, ExclusionCause, Fitness, LevelPlan, Ranker
from runtime.demo import default_config_path

# The seed's score exactly: latency reaches 0 at 1000 ms (the demo config spreads it wider).
DEMO = attrs.evolve(
    load_config(default_config_path()),
    routing=attrs.evolve(load_config(default_config_path()).routing, latency_zero_ms=1000.0),
)
NON_LAST_RESORT = ("openai", "anthropic", "gemini", "mistral", "huggingface", "local")
RANKER = Ranker(DEMO)


def make_config(
    providers: list[dict[str, Any]],
    *,
    models: dict[str, dict[str, Any]] | None = None,
    routing: dict[str, Any] | None = None,
) -> Config:
    data: dict[str, Any] = {
        "providers": providers,
        "levels": [{"name": "only", "providers": [p["name"] for p in providers], "timeout_s": 10}],
        "models": models or {},
    }
    if routing is not None:
        data["routing"] = routing
    return parse_config(data)


def level(config: Config, name: str) -> LevelConfig:
    return next(lv for lv in config.levels if lv.name == name)


def order(candidates: tuple[Candidate, ...]) -> list[str]:
    return [c.provider for c in candidates]


def primary(ranker: Ranker, request: Request, snapshots: dict[str, ProviderSnapshot]) -> LevelPlan:
    return ranker.rank(request, level(DEMO, "primary"), snapshots, 0.0)


# --- the score formula ---------------------------------------------------------------------


def test_order_follows_the_seed_formula_with_exact_scores() -> None:
    config = make_config(
        [
            {"name": "a", "kind": "simulated", "models": ["m-a"]},
            {"name": "b", "kind": "simulated", "models": ["m-b"]},
            {"name": "c", "kind": "simulated", "models": ["m-c"]},
        ]
    )
    ranker = Ranker(config)
    snapshots = {
        # 80*0.3 + 90*0.5 + 50*0.2 = 24 + 45 + 10
        "a": snap("a", latency_ms=200, error_rate=0.1, quota=0.5),
        # 100*0.3 + 100*0.5 + 100*0.2
        "b": snap("b", latency_ms=0, error_rate=0.0, quota=1.0),
        # latency score floors at 0: 0 + 100*0.5 + 100*0.2
        "c": snap("c", latency_ms=1500, error_rate=0.0, quota=1.0),
    }
    plan = ranker.rank(Request(prompt="hi"), config.levels[0], snapshots, 0.0)
    assert order(plan.candidates) == ["b", "a", "c"]
    assert [c.score for c in plan.candidates] == pytest.approx([100.0, 79.0, 70.0])
    assert plan.exclusions == ()


def test_weights_come_from_the_config() -> None:
    config = make_config(
        [
            {"name": "fast", "kind": "simulated", "models": ["m1"]},
            {"name": "reliable", "kind": "simulated", "models": ["m2"]},
        ],
        routing={"weights": {"latency": 1.0, "reliability": 0.0, "quota": 0.0}},
    )
    snapshots = {
        "fast": snap("fast", latency_ms=0, error_rate=0.5),
        "reliable": snap("reliable", latency_ms=500, error_rate=0.0),
    }
    plan = Ranker(config).rank(Request(prompt="hi"), config.levels[0], snapshots, 0.0)
    assert order(plan.candidates) == ["fast", "reliable"]
    assert [c.score for c in plan.candidates] == pytest.approx([100.0, 50.0])


# --- matrix fitness ------------------------------------------------------------------------


def test_score_beats_matrix_position_within_a_fitness_tier() -> None:
    ranker = Ranker(DEMO)
    request = Request(prompt="hi", complexity="moderate", quality="production")
    snapshots = {
        "openai": snap("openai", latency_ms=900, error_rate=0.3, quota=0.1),
        "anthropic": snap("anthropic", latency_ms=0),
    }
    plan = primary(ranker, request, snapshots)
    # Both named by both matrices (gpt-4o first in both rows, claude-sonnet second): the
    # healthier provider goes first.
    assert [(c.provider, c.model) for c in plan.candidates] == [
        ("anthropic", "claude-sonnet"),
        ("openai", "gpt-4o"),
    ]
    assert plan.candidates[1].fitness == Fitness(0, 0)
    assert plan.candidates[0].fitness == Fitness(1, 1)
    # Equal scores: matrix position breaks the tie.
    even = {"openai": snap("openai"), "anthropic": snap("anthropic")}
    assert order(primary(ranker, request, even).candidates) == ["openai", "anthropic"]


def test_fitness_tier_beats_score() -> None:
    ranker = Ranker(DEMO)
    # trivial/draft: gpt-4o-mini is named by both rows; anthropic's best (claude-haiku) by none.
    request = Request(prompt="hi", complexity="trivial", quality="draft")
    snapshots = {
        "openai": snap("openai", latency_ms=900, error_rate=0.3, quota=0.1),
        "anthropic": snap("anthropic", latency_ms=0),
    }
    plan = primary(ranker, request, snapshots)
    assert order(plan.candidates) == ["openai", "anthropic"]
    assert plan.candidates[0].score < plan.candidates[1].score


def test_each_provider_gets_its_fittest_model() -> None:
    ranker = Ranker(DEMO)
    expert = primary(ranker, Request(prompt="hi", complexity="expert", quality="critical"), {})
    assert [(c.provider, c.model) for c in expert.candidates] == [
        ("openai", "o1-preview"),
        ("anthropic", "claude-opus"),
    ]
    trivial = primary(ranker, Request(prompt="hi", complexity="trivial", quality="draft"), {})
    assert trivial.candidates[0].model == "gpt-4o-mini"
    assert trivial.candidates[0].fitness.label == "complexity+quality"


def test_one_matrix_beats_none_and_an_unlisted_provider_is_still_a_candidate() -> None:
    ranker = Ranker(DEMO)
    snapshots = {
        "gemini": snap("gemini", latency_ms=1000, error_rate=0.2, quota=0.1),
        "mistral": snap("mistral", latency_ms=0),
    }
    request = Request(prompt="hi", complexity="moderate", quality="production")
    plan = ranker.rank(request, level(DEMO, "secondary"), snapshots, 0.0)
    assert [(c.provider, c.model, c.fitness.label) for c in plan.candidates] == [
        ("gemini", "gemini-pro", "complexity"),
        ("mistral", "mistral-large", "none"),  # no mistral model in any matrix: config order
    ]


def test_equal_fitness_and_score_order_by_name() -> None:
    config = make_config(
        [
            {"name": "zeta", "kind": "simulated", "models": ["z"]},
            {"name": "alpha", "kind": "simulated", "models": ["a"]},
        ]
    )
    snapshots = {"zeta": snap("zeta"), "alpha": snap("alpha")}
    plan = Ranker(config).rank(Request(prompt="hi"), config.levels[0], snapshots, 0.0)
    assert order(plan.candidates) == ["alpha", "zeta"]


# --- exclusions, each with its explanation line ---------------------------------------------


def test_unavailable_is_excluded_with_its_reason() -> None:
    snapshots = {"openai": snap("openai", available=False, reason="OPENAI_API_KEY not set")}
    plan = primary(Ranker(DEMO), Request(prompt="hi"), snapshots)
    assert order(plan.candidates) == ["anthropic"]
    (exclusion,) = plan.exclusions
    assert exclusion.cause is ExclusionCause.UNAVAILABLE
    assert "primary excluded openai: unavailable: OPENAI_API_KEY not set" in plan.explain()


def test_open_breaker_is_excluded_until_its_half_open_time() -> None:
    snapshots = {"anthropic": snap("anthropic", state=BreakerState.OPEN, open_until=12.0)}
    plan = primary(Ranker(DEMO), Request(prompt="hi"), snapshots)
    assert order(plan.candidates) == ["openai"]
    assert plan.exclusions[0].cause is ExclusionCause.BREAKER_OPEN
    assert plan.exclusions[0].open_until == 12.0
    assert "primary excluded anthropic: breaker open until t=12.0s" in plan.explain()


def test_forced_open_breaker_is_excluded() -> None:
    snapshots = {"openai": snap("openai", state=BreakerState.FORCED_OPEN)}
    plan = primary(Ranker(DEMO), Request(prompt="hi"), snapshots)
    assert order(plan.candidates) == ["anthropic"]
    assert plan.exclusions[0].cause is ExclusionCause.FORCED_OPEN
    assert "primary excluded openai: breaker forced open" in plan.explain()


def test_half_open_breaker_stays_a_candidate_and_says_so() -> None:
    snapshots = {"openai": snap("openai", state=BreakerState.HALF_OPEN)}
    plan = primary(Ranker(DEMO), Request(prompt="hi"), snapshots)
    assert order(plan.candidates) == ["openai", "anthropic"]
    assert plan.candidates[0].reason == "breaker half-open, 2 probes left"


def test_rate_limited_until_later_is_excluded_and_an_expired_window_is_not() -> None:
    ranker = Ranker(DEMO)
    snapshots = {"openai": snap("openai", retry_after_until=5.0)}
    during = ranker.rank(Request(prompt="hi"), level(DEMO, "primary"), snapshots, 4.0)
    assert order(during.candidates) == ["anthropic"]
    assert during.exclusions[0].cause is ExclusionCause.RATE_LIMITED
    assert "primary excluded openai: rate-limited until t=5.0s" in during.explain()
    after = ranker.rank(Request(prompt="hi"), level(DEMO, "primary"), snapshots, 5.0)
    assert order(after.candidates) == ["openai", "anthropic"]


def test_over_budget_names_the_cheapest_estimate_and_the_budget() -> None:
    # 400 chars = 100 prompt tokens; claude-haiku, the cheapest anthropic model:
    # 100 * 0.8e-6 + 500 * 4e-6 = 0.00208 > 0.001; gpt-4o-mini fits.
    request = Request(prompt="x" * 400, max_tokens=500, budget_usd=0.001)
    plan = primary(Ranker(DEMO), request, {})
    assert order(plan.candidates) == ["openai"]
    assert plan.exclusions[0].cause is ExclusionCause.OVER_BUDGET
    assert (
        "primary excluded anthropic: over budget: cheapest estimate $0.0021 (claude-haiku) "
        "> budget $0.0010"
    ) in plan.explain()


def test_context_too_long_names_the_largest_window() -> None:
    # 8000 prompt tokens + 500 > hf-small's and llama-3-70b's 8000-token windows.
    request = Request(prompt="x" * 32_000, max_tokens=500)
    plan = Ranker(DEMO).rank(request, level(DEMO, "emergency"), {}, 0.0)
    assert plan.candidates == ()
    assert [e.cause for e in plan.exclusions] == [ExclusionCause.CONTEXT_TOO_LONG] * 2
    assert plan.explain()[0] == (
        "emergency excluded huggingface: context too long: ~8500 tokens (prompt + max_tokens) "
        "> largest window 8000 (hf-small)"
    )


def test_missing_heartbeat_is_a_candidate_with_a_neutral_score() -> None:
    snapshots = {"openai": snap("openai", latency_ms=0)}
    plan = primary(Ranker(DEMO), Request(prompt="hi"), snapshots)
    assert order(plan.candidates) == ["openai", "anthropic"]
    anthropic = plan.candidates[1]
    assert anthropic.score == pytest.approx(50.0)
    assert anthropic.reason == "no heartbeat yet: assumed available, neutral score"
    assert plan.explain()[1].endswith("(no heartbeat yet: assumed available, neutral score)")


def test_explain_line_format() -> None:
    snapshots = {"openai": snap("openai", latency_ms=80, error_rate=0.02, quota=0.8)}
    request = Request(prompt="x" * 400, max_tokens=500, budget_usd=0.05)
    plan = Ranker(DEMO).plan(request, DEMO.levels, snapshots, 0.0)
    # 92*0.3 + 98*0.5 + 80*0.2 = 27.6 + 49 + 16; 100*2.5e-6 + 500*10e-6 = 0.00525
    assert plan.explain()[:2] == [
        "request complexity=moderate quality=production budget=$0.0500 prompt~100tok "
        "max_tokens=500",
        "primary #1 openai gpt-4o score=92.6 fit=complexity+quality est=$0.0053",
    ]
    assert "x" * 10 not in "\n".join(plan.explain())  # the prompt is never echoed


# --- budget and context within a provider --------------------------------------------------


def test_estimate_cost_uses_prompt_system_and_max_tokens() -> None:
    ranker = Ranker(DEMO)
    request = Request(prompt="x" * 300, system="y" * 100, max_tokens=500)
    assert ranker.estimate_cost(request, "gpt-4o") == pytest.approx((100 * 2.5 + 500 * 10.0) / 1e6)
    assert ranker.estimate_cost(request, "unpriced-model") == 0.0


def test_budget_picks_a_cheaper_model_of_the_same_provider() -> None:
    ranker = Ranker(DEMO)
    rich = primary(ranker, Request(prompt="x" * 400, budget_usd=0.01), {})
    assert rich.candidates[0].model == "gpt-4o"
    # gpt-4o would cost 0.00525; gpt-4o-mini 100*0.15e-6 + 500*0.6e-6 = 0.000315.
    poor = primary(ranker, Request(prompt="x" * 400, budget_usd=0.001), {})
    (openai,) = poor.candidates
    assert (openai.model, openai.fitness.label) == ("gpt-4o-mini", "none")
    assert openai.estimated_cost_usd == pytest.approx(0.000315)


CONTEXT_CONFIG = make_config(
    [{"name": "p", "kind": "simulated", "models": ["big", "mid", "small"]}],
    models={
        "small": {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 1.0, "context_window": 1000},
        "mid": {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 1.0, "context_window": 4000},
        "big": {"input_usd_per_mtok": 100.0, "output_usd_per_mtok": 100.0, "context_window": 9000},
    },
    routing={"complexity": {"moderate": ["small", "mid", "big"]}},
)


def test_candidate_carries_larger_window_fallback_models_in_preference_order() -> None:
    ranker = Ranker(CONTEXT_CONFIG)
    only = CONTEXT_CONFIG.levels[0]
    short = ranker.rank(Request(prompt="x" * 400, max_tokens=100), only, {}, 0.0)
    assert (short.candidates[0].model, short.candidates[0].fallback_models) == (
        "small",
        ("mid", "big"),
    )
    # 2000 prompt tokens + 100 no longer fit small's 1000-token window.
    long = ranker.rank(Request(prompt="x" * 8000, max_tokens=100), only, {}, 0.0)
    assert (long.candidates[0].model, long.candidates[0].fallback_models) == ("mid", ("big",))


def test_fallback_models_respect_the_budget() -> None:
    ranker = Ranker(CONTEXT_CONFIG)
    # big would cost (100 + 100) * 100e-6 = 0.02.
    request = Request(prompt="x" * 400, max_tokens=100, budget_usd=0.01)
    plan = ranker.rank(request, CONTEXT_CONFIG.levels[0], {}, 0.0)
    assert plan.candidates[0].fallback_models == ("mid",)
    assert "fallbacks=mid" in plan.explain()[0]


def test_last_resort_providers_are_candidates_without_a_model() -> None:
    plan = Ranker(DEMO).rank(Request(prompt="hi"), level(DEMO, "last_resort"), {}, 0.0)
    assert [(c.provider, c.model, c.estimated_cost_usd) for c in plan.candidates] == [
        ("cache", "", 0.0),
        ("templates", "", 0.0),
    ]


def test_a_level_naming_an_unknown_provider_is_a_clear_error() -> None:
    bogus = LevelConfig(name="bogus", providers=("nobody",), timeout_s=1.0)
    with pytest.raises(ValueError, match="level 'bogus' names unknown provider 'nobody'"):
        Ranker(DEMO).rank(Request(prompt="hi"), bogus, {}, 0.0)


# --- panic ----------------------------------------------------------------------------------


#: Panic applies only when no last resort can answer: these tests rank the levels before it.
MODEL_LEVELS = tuple(lv for lv in DEMO.levels if lv.name != "last_resort")


def all_open(open_until: dict[str, float], error_rate: float = 0.5) -> dict[str, ProviderSnapshot]:
    return {
        name: snap(name, state=BreakerState.OPEN, open_until=until, error_rate=error_rate)
        for name, until in open_until.items()
    }


def test_all_breakers_open_adds_the_least_bad_as_a_panic_candidate() -> None:
    until = {"openai": 30.0, "anthropic": 20.0, "gemini": 12.0, "mistral": 40.0,
             "huggingface": 15.0, "local": 25.0}  # fmt: skip
    plan = Ranker(DEMO).plan(Request(prompt="hi"), MODEL_LEVELS, all_open(until), 10.0)
    panics = [c for lv in plan.levels for c in lv.candidates if c.panic]
    assert [(c.provider, c.model) for c in panics] == [("gemini", "gemini-pro")]
    secondary = plan.level("secondary")
    assert secondary.candidates[0] is panics[0]
    assert [e.provider for e in secondary.exclusions] == ["mistral"]  # gemini's is replaced
    assert plan.level("primary").candidates == ()
    assert plan.earliest_half_open == 12.0
    line = next(line for line in plan.explain() if "PANIC" in line)
    assert line.startswith("secondary #1 gemini gemini-pro ")
    assert "half-open at t=12.0s, error rate 50%" in line


def test_no_panic_while_a_last_resort_can_answer() -> None:
    until = {name: 20.0 for name in NON_LAST_RESORT}
    plan = Ranker(DEMO).plan(Request(prompt="hi"), DEMO.levels, all_open(until), 10.0)
    assert not any(c.panic for lv in plan.levels for c in lv.candidates)
    assert order(plan.level("last_resort").candidates) == ["cache", "templates"]
    assert plan.earliest_half_open == 20.0


def test_a_breaker_whose_open_period_has_ended_is_not_excluded() -> None:
    # The heartbeat saying it is half-open may not have arrived yet: it is a candidate again.
    snapshots = {"openai": snap("openai", state=BreakerState.OPEN, open_until=5.0)}
    plan = Ranker(DEMO).plan(Request(prompt="hi"), DEMO.levels, snapshots, 5.0)
    assert "openai" in order(plan.level("primary").candidates)


def test_panic_ties_on_open_time_go_to_the_lowest_error_rate() -> None:
    snapshots = all_open({name: 20.0 for name in NON_LAST_RESORT}, error_rate=0.6)
    snapshots["local"] = snap("local", state=BreakerState.OPEN, open_until=20.0, error_rate=0.2)
    plan = Ranker(DEMO).plan(Request(prompt="hi"), MODEL_LEVELS, snapshots, 0.0)
    (panic,) = [c for lv in plan.levels for c in lv.candidates if c.panic]
    assert panic.provider == "local"


def test_no_panic_while_any_provider_is_usable_but_earliest_half_open_is_reported() -> None:
    until = {name: 50.0 for name in NON_LAST_RESORT if name != "local"}
    until["anthropic"] = 7.0
    plan = Ranker(DEMO).plan(Request(prompt="hi"), MODEL_LEVELS, all_open(until), 0.0)
    assert not any(c.panic for lv in plan.levels for c in lv.candidates)
    assert order(plan.level("emergency").candidates) == ["local"]
    assert plan.earliest_half_open == 7.0


def test_panic_never_overrides_an_operator_forced_open_or_a_failing_model_check() -> None:
    snapshots = {name: snap(name, state=BreakerState.FORCED_OPEN) for name in NON_LAST_RESORT}
    plan = Ranker(DEMO).plan(Request(prompt="hi"), MODEL_LEVELS, snapshots, 0.0)
    assert not any(c.panic for lv in plan.levels for c in lv.candidates)
    assert plan.earliest_half_open is None
    # Open, but over budget anyway: waiting for it or panicking into it cannot help.
    budget_snaps = all_open({name: 5.0 for name in NON_LAST_RESORT})
    broke = Request(prompt="hi", max_tokens=500, budget_usd=0.0)
    plan = Ranker(DEMO).plan(broke, MODEL_LEVELS, budget_snaps, 0.0)
    panics = [c for lv in plan.levels for c in lv.candidates if c.panic]
    assert [c.provider for c in panics] == ["local"]  # the one free model (llama3)


def test_panic_when_the_others_are_unavailable() -> None:
    snapshots = {name: snap(name, available=False, reason="no key") for name in NON_LAST_RESORT}
    snapshots["mistral"] = snap("mistral", state=BreakerState.OPEN, open_until=3.0)
    plan = Ranker(DEMO).plan(Request(prompt="hi"), MODEL_LEVELS, snapshots, 0.0)
    (panic,) = [c for lv in plan.levels for c in lv.candidates if c.panic]
    assert panic.provider == "mistral"


BREAKER_STATES = st.sampled_from(
    [BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.FORCED_CLOSED]
)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            name: st.tuples(
                BREAKER_STATES,
                st.floats(0.0, 100.0, exclude_min=True),
                st.floats(0.0, 1.0),
                st.floats(0.0, 5000.0),
            )
            for name in NON_LAST_RESORT
        }
    )
)
def test_open_breakers_alone_never_leave_zero_candidates(states: dict[str, Any]) -> None:
    snapshots = {
        name: snap(
            name,
            state=state,
            open_until=until if state is BreakerState.OPEN else None,
            error_rate=error_rate,
            latency_ms=latency,
        )
        for name, (state, until, error_rate, latency) in states.items()
    }
    plan = RANKER.plan(Request(prompt="hi"), MODEL_LEVELS, snapshots, 0.0)
    usable = [c for lv in plan.levels for c in lv.candidates if c.provider in NON_LAST_RESORT]
    assert usable
    assert sum(c.panic for c in usable) <= 1
    opens = [until for state, until, _, _ in states.values() if state is BreakerState.OPEN]
    assert plan.earliest_half_open == (min(opens) if opens else None)


# --- determinism -----------------------------------------------------------------------------


def test_the_same_inputs_give_the_same_plan_whatever_the_snapshot_order() -> None:
    base = {
        "openai": snap("openai", latency_ms=300, error_rate=0.1),
        "anthropic": snap("anthropic", state=BreakerState.OPEN, open_until=9.0),
        "gemini": snap("gemini", latency_ms=300, error_rate=0.1),
        "mistral": snap("mistral", latency_ms=300, error_rate=0.1),
        "local": snap("local", retry_after_until=99.0),
    }
    reversed_order = dict(reversed(list(base.items())))
    request = Request(prompt="tell me", budget_usd=0.02)
    ranker = Ranker(DEMO)
    first = ranker.plan(request, DEMO.levels, base, 1.0)
    second = Ranker(DEMO).plan(request, DEMO.levels, reversed_order, 1.0)
    assert first == second
    assert first.explain() == second.explain()
    assert first == ranker.plan(request, DEMO.levels, base, 1.0)


def test_plans_are_frozen() -> None:
    plan = Ranker(DEMO).plan(Request(prompt="hi"), DEMO.levels, {}, 0.0)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        plan.levels[0].candidates[0].score = 0.0  # type: ignore[misc]


def test_a_provider_never_called_gets_a_neutral_latency_not_a_perfect_one() -> None:
    ranker = Ranker(DEMO)
    idle = attrs.evolve(snap("anthropic", latency_ms=0.0), last_check=None)
    working = snap("openai", latency_ms=300.0)
    assert ranker.score(idle) == pytest.approx(50 * 0.3 + 100 * 0.5 + 100 * 0.2)
    assert ranker.score(working) == pytest.approx(70 * 0.3 + 100 * 0.5 + 100 * 0.2)
    request = Request(prompt="hi", complexity="moderate", quality="production")
    plan = primary(ranker, request, {"openai": working, "anthropic": idle})
    assert order(plan.candidates) == ["openai", "anthropic"]


def test_a_call_in_flight_for_long_lowers_the_latency_score() -> None:
    ranker = Ranker(DEMO)
    fast_but_stuck = attrs.evolve(snap("openai", latency_ms=100.0), oldest_call_s=0.8)
    assert ranker.score(fast_but_stuck) == pytest.approx(20 * 0.3 + 100 * 0.5 + 100 * 0.2)
    # In-flight age only ever lowers a score: a quick call in flight changes nothing.
    quick = attrs.evolve(snap("openai", latency_ms=100.0), oldest_call_s=0.01)
    assert ranker.score(quick) == ranker.score(snap("openai", latency_ms=100.0))


def test_latency_zero_point_is_configurable() -> None:
    wide = Ranker(attrs.evolve(DEMO, routing=attrs.evolve(DEMO.routing, latency_zero_ms=10_000.0)))
    assert wide.score(snap("openai", latency_ms=8000)) == pytest.approx(20 * 0.3 + 50 + 20)
    assert RANKER.score(snap("openai", latency_ms=8000)) == pytest.approx(0 * 0.3 + 50 + 20)


def test_earliest_available_is_the_first_retry_after_to_end_not_a_breaker() -> None:
    snapshots = {
        "openai": snap("openai", retry_after_until=12.0),
        "anthropic": snap("anthropic", state=BreakerState.OPEN, open_until=5.0),
    }
    plan = RANKER.plan(Request(prompt="hi"), DEMO.levels, snapshots, 0.0)
    assert plan.earliest_available == 12.0
    assert plan.earliest_half_open == 5.0
    assert "earliest Retry-After ends at t=12.0s" in plan.explain()
    assert RANKER.plan(Request(prompt="hi"), DEMO.levels, {}, 0.0).earliest_available is None
