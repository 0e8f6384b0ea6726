"""One scenario under several variants, side by side: `uptax scenario compare`.

Every variant runs the same scenario from the same seed, so it sees the same arrivals, the same
requests and the same fault timeline; only the runtime's config differs. Each (variant, seed) is
its own virtual-time run, one after another in this process, exactly as `run` would do it: the
numbers of a column are those of that variant's `run` report (plus the calls wasted on failing
providers, which a report leaves out), and with several seeds each is the median across them.

The comparison's `data` is plain JSON that depends only on the scenario, the variants and the
seeds, so the same command gives the same bytes.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from runtime.scenario.fleet_measure import fleet_recovery
from runtime.scenario.format import BASELINE, Scenario, ScenarioError, Variant
from runtime.scenario.measure import clean_replies, wasted_calls, worst
from runtime.scenario.recorder import Recorder
from runtime.scenario.report import Report
from runtime.scenario.runner import ProgressLine, run_scenario

__all__ = [
    "DEFINITIONS",
    "METRICS",
    "Comparison",
    "Metric",
    "compare",
    "run_numbers",
    "variants_to_compare",
]


@attrs.frozen
class Metric:
    """One row of the table."""

    key: str
    label: str
    #: "lower" or "higher" where that is clearly better; None where it depends (a higher
    #: fallback rate can be the runtime moving traffic off a failing provider sooner).
    better: str | None
    #: How the value reads: "pct" (a fraction), "ms", "s", "usd" or "count".
    unit: str
    #: Measured only around faults: left out for a scenario without any.
    faults_only: bool = False
    #: Measured only over a ``[fleet]``'s instances: left out for a single runtime.
    fleet_only: bool = False


METRICS = (
    Metric("availability", "availability", "higher", "pct"),
    Metric("fallback_rate", "fallback rate", None, "pct"),
    Metric("p50_ms", "p50 ms", "lower", "ms"),
    Metric("p95_ms", "p95 ms", "lower", "ms"),
    Metric("p99_ms", "p99 ms", "lower", "ms"),
    Metric("paid_requests", "paid requests", "lower", "count", faults_only=True),
    Metric("mttr_s", "MTTR s", "lower", "s", faults_only=True),
    Metric("recovery_s", "back in rotation s", "lower", "s", faults_only=True),
    Metric(
        "fleet_recovery_s",
        "fleet back in rotation s",
        "lower",
        "s",
        faults_only=True,
        fleet_only=True,
    ),
    Metric("cost_usd", "cost", "lower", "usd"),
    Metric("savings", "saving", "higher", "pct"),
    Metric("wasted_calls", "wasted calls", "lower", "count", faults_only=True),
    Metric("clean_replies", "clean replies", "higher", "count", faults_only=True),
)

#: What the rows mean, for the terminal, the page and the JSON.
DEFINITIONS = {
    "paid_requests": "requests that paid for a fault before traffic moved: from each fault's "
    "start until its MTTR, those that failed, made a failed call to the faulted provider, or "
    "were served by it slower than the clean latency (run's faults table, summed over faults: "
    "a request that paid for two faults at once counts twice)",
    "mttr_s": "the worst fault's time from its start until requests were answered without "
    "paying (as [expect] mttr_s_max measures it; never: not within the run)",
    "recovery_s": "the worst fault's time from its end until the provider completed a call "
    "again (as [expect] recovery_s_max measures it)",
    "fleet_recovery_s": "the worst fault's time from its end until the provider had completed "
    "a call again through every instance of the fleet: the last instance back (as [expect] "
    "fleet_recovery_s_max measures it)",
    "savings": "cost saved against the same replies on the first model of the first provider "
    "of the first level",
    "wasted_calls": "failed calls sent to a provider during one of its fault windows",
    "clean_replies": "the goodput: requests answered without a wasted call on the way",
}

#: Digits a value is compared at when picking the better one: those it is shown with.
_DIGITS = {"pct": 4, "ms": 1, "s": 2, "usd": 4, "count": 1}


def variants_to_compare(scenario: Scenario, extra: Sequence[Variant] = ()) -> list[Variant]:
    """The scenario's ``[[variants]]`` then `extra` (from config files), after the implicit
    baseline, the scenario's own config, unless a variant is named "baseline"."""
    variants = list(scenario.variants)
    for variant in extra:
        if any(v.name == variant.name for v in variants):
            raise ScenarioError(
                f"--variant {variant.name}: {scenario.path} already has a variant of that name"
            )
        variants.append(variant)
    if all(v.name != BASELINE for v in variants):
        own = Variant(
            BASELINE,
            scenario.config,
            scenario.http_kinds,
            "the scenario's own config",
            scenario.path,
        )
        variants.insert(0, own)
    if len(variants) < 2:
        raise ScenarioError(
            f"{scenario.path}: nothing to compare the baseline with: add [[variants]] tables "
            "to the file, or --variant NAME=CONFIG.toml"
        )
    return variants


def run_numbers(data: Mapping[str, Any], recorder: Recorder) -> dict[str, Any]:
    """A run report's numbers for the table, by metric key (the report's own values, plus the
    wasted calls and clean replies its recorder holds; a fleet's last instance back in
    rotation only for a fleet)."""
    faults = data["faults"]
    latency = data["latency_ms"]
    back = [fault["recovery_s"] for fault in faults if fault["in_rotation_before"]]
    fleet = {"fleet_recovery_s": fleet_recovery(data["fleet"])} if "fleet" in data else {}
    return {
        "availability": data["availability"],
        "fallback_rate": data["fallback_rate"],
        "p50_ms": latency["p50"],
        "p95_ms": latency["p95"],
        "p99_ms": latency["p99"],
        "paid_requests": sum(fault["paid_requests"] for fault in faults),
        "mttr_s": worst([fault["mttr_s"] for fault in faults]) if faults else 0.0,
        "recovery_s": worst(back) if back else 0.0,
        "cost_usd": data["cost"]["total_usd"],
        "savings": data["cost"]["savings"],
        "wasted_calls": wasted_calls(recorder),
        "clean_replies": clean_replies(recorder),
        **fleet,
    }


class _RunProgress(ProgressLine):
    """The progress line of one run, said with which run of how many it is."""

    prefix = ""

    def update(self, text: str) -> None:
        super().update(f"{self.prefix}  {text}")


@attrs.frozen
class VariantRuns:
    """One variant's runs: each seed's numbers, and the first seed's report (its timeline)."""

    variant: Variant
    runs: tuple[dict[str, Any], ...]
    report: Report


def _run(
    scenario: Scenario, seed: int, progress: ProgressLine | None
) -> tuple[dict[str, Any], Report]:
    """One virtual run: its numbers for the table, and its report."""
    recorders: list[Recorder] = []
    report = run_scenario(scenario, seed=seed, progress=progress, on_recorder=recorders.append)
    failed = [check.name for check in report.checks if not check.passed]
    numbers = run_numbers(report.data, recorders[0])
    return {"seed": seed, **numbers, "passed": report.passed, "failed": failed}, report


def _left(started: float, done: int, total: int) -> str:
    """Wall time left, from the runs so far (progress only: never in the output)."""
    if not done:
        return ""
    left = (time.perf_counter() - started) / done * (total - done)
    return f", ~{left // 60:.0f}m{left % 60:02.0f}s left"


def compare(
    scenario: Scenario,
    variants: Sequence[Variant],
    seeds: Sequence[int],
    *,
    progress: ProgressLine | None = None,
) -> Comparison:
    """Run every variant at every seed (at least one), one after another, and put the numbers
    side by side."""
    line = _RunProgress(progress.stream, enabled=progress.enabled) if progress else None
    total = len(variants) * len(seeds)
    started = time.perf_counter()
    results: list[VariantRuns] = []
    for variant in variants:
        runs: list[dict[str, Any]] = []
        first: Report | None = None
        for seed in seeds:
            if line is not None:
                done = len(results) * len(seeds) + len(runs)
                left = _left(started, done, total)
                line.prefix = f"[{done + 1}/{total}{left}] {variant.name} seed {seed}"
            numbers, report = _run(scenario.under(variant), seed, line)
            runs.append(numbers)
            if first is None:  # only the first seed's is kept: the page shows its timeline
                first = report
        if first is None:
            raise ValueError("compare needs at least one seed")
        results.append(VariantRuns(variant, tuple(runs), first))
    return Comparison(scenario, tuple(seeds), tuple(results))


def _metrics(scenario: Scenario) -> tuple[Metric, ...]:
    return tuple(
        m
        for m in METRICS
        if (scenario.faults or not m.faults_only)
        and (scenario.fleet is not None or not m.fleet_only)
    )


def _sortable(metric: Metric, value: float | None) -> float | None:
    """None as a number to rank: a time that never came is the longest; otherwise no value."""
    if value is None:
        return math.inf if metric.unit == "s" else None
    return float(value)


def summarize(metric: Metric, values: Iterable[float | None]) -> dict[str, float | None]:
    """Median, min and max across seeds (None for a time that never came)."""
    numbers = sorted(n for n in (_sortable(metric, v) for v in values) if n is not None)
    if not numbers:
        return {"median": None, "min": None, "max": None}

    def plain(value: float) -> float | None:
        return None if math.isinf(value) else round(value, 6)

    median = statistics.median(numbers)
    return {"median": plain(median), "min": plain(numbers[0]), "max": plain(numbers[-1])}


def best_of(metric: Metric, medians: Mapping[str, float | None]) -> list[str]:
    """The variants with the better value, at the digits shown; none when all are equal or
    when which is better depends."""
    if metric.better is None:
        return []
    ranked = {
        name: round(number, _DIGITS[metric.unit])
        for name, value in medians.items()
        if (number := _sortable(metric, value)) is not None
    }
    if len(set(ranked.values())) < 2:
        return []
    pick = max if metric.better == "higher" else min
    top = pick(ranked.values())
    return [name for name, value in ranked.items() if value == top]


@attrs.frozen
class Comparison:
    """Every variant's runs, and the table they make."""

    scenario: Scenario
    seeds: tuple[int, ...]
    results: tuple[VariantRuns, ...]

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return _metrics(self.scenario)

    @property
    def data(self) -> dict[str, Any]:
        """JSON-ready: the table (medians, min, max), the better values, every seed's numbers."""
        scenario = self.scenario
        summaries = {
            result.variant.name: {
                metric.key: summarize(metric, (run[metric.key] for run in result.runs))
                for metric in self.metrics
            }
            for result in self.results
        }
        best = {
            metric.key: best_of(
                metric, {name: summary[metric.key]["median"] for name, summary in summaries.items()}
            )
            for metric in self.metrics
        }
        return {
            "scenario": {
                "name": scenario.name,
                "file": scenario.path,
                "description": scenario.info.description,
                "mode": "virtual",
                "duration_s": scenario.load.duration_s,
                "rps": scenario.load.rps,
            },
            "seeds": list(self.seeds),
            "metrics": [
                {"key": m.key, "label": m.label, "better": m.better, "unit": m.unit}
                for m in self.metrics
            ],
            "definitions": {k: v for k, v in DEFINITIONS.items() if k in best},
            "best": best,
            "variants": [self._variant_data(result, summaries) for result in self.results],
        }

    def _variant_data(self, result: VariantRuns, summaries: Mapping[str, Any]) -> dict[str, Any]:
        keys = [metric.key for metric in self.metrics]
        variant = result.variant
        return {
            "name": variant.name,
            "description": variant.description,
            "source": variant.source,
            "summary": summaries[variant.name],
            "passed_seeds": sum(1 for run in result.runs if run["passed"]),
            "runs": [
                {
                    "seed": run["seed"],
                    **{key: run[key] for key in keys},
                    "passed": run["passed"],
                    "failed": run["failed"],
                }
                for run in result.runs
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True) + "\n"
