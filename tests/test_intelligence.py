"""Issue 13's done-when, one claim a test, on seed 7 through the public compare API (each
variant's numbers are its own `uptax scenario run` report's): what each adaptive mechanism wins
on its library scenario. `bench/intelligence.py` prints the same tables for seeds 1-10."""

from __future__ import annotations

import statistics
import tomllib
from pathlib import Path
from typing import Any

import pytest

from runtime.scenario.compare import Comparison, compare, variants_to_compare
from runtime.scenario.format import BASELINE, Variant, load_scenario, parse_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

pytestmark = pytest.mark.usefixtures("own_logging")


def compared(name: str, seed: int = 7, *, only: str | None = None) -> dict[str, dict[str, Any]]:
    """Each variant's numbers for the library scenario `name` at `seed`, by variant name (only
    the variant `only`, when given: a soak run takes minutes)."""
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    variants = [v for v in variants_to_compare(scenario) if only in (None, v.name)]
    comparison = compare(scenario, variants, [seed])
    return numbers(comparison)


def numbers(comparison: Comparison) -> dict[str, dict[str, Any]]:
    return {result.variant.name: result.runs[0] for result in comparison.results}


def without_tiers(name: str) -> dict[str, Any]:
    """The library scenario's own config at seed 7 with no cost tier on its mix."""
    data = tomllib.loads((SCENARIOS / f"{name}.toml").read_text())
    for entry in data["load"]["mix"]:
        entry.pop("cost", None)
    data.pop("variants", None)
    plain = parse_scenario(data, source=f"{name}.toml")
    own = Variant(BASELINE, plain.config, plain.http_kinds, "no cost tier", plain.path)
    return compare(plain, [own], [7]).results[0].runs[0]


def test_probing_brings_a_recovered_primary_back_within_3_s_for_at_most_10_wasted_calls() -> None:
    runs = compared("recovery")
    probed, unprobed = runs["baseline"], runs["no-probe"]
    # Measured at seed 7: back 1.98 s after recovering with probes, 16.27 s without; 5 and 7
    # calls wasted (the run of failures that opens the breaker, and, without probes, two
    # half-open trials while it was still down).
    assert probed["passed"], probed["failed"]
    assert probed["wasted_calls"] <= 10 and probed["recovery_s"] <= 3
    assert unprobed["recovery_s"] > 10 and unprobed["wasted_calls"] > probed["wasted_calls"]
    assert probed["availability"] == unprobed["availability"] == 1.0


@pytest.mark.seeds
def test_predictive_detection_cuts_the_failed_calls_of_a_ramping_failure() -> None:
    """Seeds 1-10, not seed 7 alone: at seeds 3, 7 and 8 the score itself moves the draft
    traffic off OpenAI early in the ramp (see the baseline's higher cost there), so there is
    nothing left for a prediction to save, and predict wastes a few calls more (133 against
    123 at seed 7). Over the ten: 135 failed calls to OpenAI (median) against 186 with its
    breaker alone, fewer at 7 seeds; compare's paid requests are 0 for both, as a ramp from
    0 % reaches its MTTR in its first seconds."""
    scenario = load_scenario(SCENARIOS / "ramping-failure.toml")
    comparison = compare(scenario, variants_to_compare(scenario), list(range(1, 11)))
    runs = {result.variant.name: result.runs for result in comparison.results}
    breaker_only, predict = runs["baseline"], runs["predict"]
    wasted = [
        (b["wasted_calls"], p["wasted_calls"]) for b, p in zip(breaker_only, predict, strict=True)
    ]
    assert statistics.median(p for _, p in wasted) < 0.8 * statistics.median(b for b, _ in wasted)
    assert sum(p < b for b, p in wasted) >= 6
    assert all(run["availability"] == 1.0 and run["passed"] for run in breaker_only + predict)


@pytest.mark.seeds
def test_a_low_cost_tier_saves_15_to_25_percent_on_the_flagship() -> None:
    runs = compared("flagship", only=BASELINE)
    tiered = runs["baseline"]
    # Measured at seed 7: 19.29 % against openai/gpt-4o for everything (9.3-10.8 % without the
    # tier at seeds 1-10), availability 100 % with and without it.
    assert tiered["passed"], tiered["failed"]
    assert 0.15 <= tiered["savings"] <= 0.25
    assert tiered["availability"] == without_tiers("flagship")["availability"] == 1.0


@pytest.mark.seeds
def test_the_soak_saves_15_to_25_percent_against_a_single_provider() -> None:
    runs = compared("soak", only=BASELINE)
    # Measured at seed 7 without a cost tier (its mix asks for none): 18.24 %, availability 100 %
    # (17.7 % at its own seed, 24; with `low` on every mix entry 27.3 % there, past the band).
    assert runs["baseline"]["passed"], runs["baseline"]["failed"]
    assert 0.15 <= runs["baseline"]["savings"] <= 0.25
    assert runs["baseline"]["availability"] >= 0.999
