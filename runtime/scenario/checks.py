"""A scenario's expectations checked against the numbers of its run.

Each `[expect]` limit becomes one `Check`; a limit the file leaves out gives none. Checks on host
measurements (memory) are marked so the JSON report, which must not depend on the host, leaves
their measured value out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from runtime.scenario.fleet_measure import fleet_recovery
from runtime.scenario.format import Expectations
from runtime.scenario.measure import worst

#: Slack on every comparison, so a limit equal to a rounded measurement passes.
_EPSILON = 1e-12


@attrs.frozen
class Check:
    """One expectation and how it came out."""

    name: str
    measured: float | int | None
    limit: float | int
    passed: bool
    #: Measured on the host rather than in the simulation: kept out of the JSON.
    host: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit": self.limit,
            "measured": None if self.host else self.measured,
            "passed": self.passed,
        }


class _Checks:
    """Collects checks; a limit of None (not in the file) adds nothing."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    def at_least(self, name: str, measured: float | int | None, limit: float | int | None) -> None:
        if limit is not None:
            passed = measured is not None and measured >= limit - _EPSILON
            self.checks.append(Check(f"{name} >= {limit:g}", measured, limit, passed))

    def at_most(
        self,
        name: str,
        measured: float | int | None,
        limit: float | int | None,
        host: bool = False,
    ) -> None:
        if limit is not None:
            passed = measured is not None and measured <= limit + _EPSILON
            self.checks.append(Check(f"{name} <= {limit:g}", measured, limit, passed, host))


def check_expectations(
    expect: Expectations, data: Mapping[str, Any], host: Mapping[str, Any]
) -> list[Check]:
    """Every expectation of the file, in a fixed order: the run, the host, providers, levels,
    actors."""
    checks = _Checks()
    _check_run(checks, expect, data)
    _check_host(checks, expect, host)
    _check_providers(checks, expect, data)
    _check_levels(checks, expect, data)
    _check_actors(checks, expect, data)
    return checks.checks


def _check_run(checks: _Checks, expect: Expectations, data: Mapping[str, Any]) -> None:
    latency = data["latency_ms"]
    checks.at_least("availability", data["availability"], expect.availability_min)
    checks.at_least("model availability", data["model_availability"], expect.model_availability_min)
    checks.at_most("fallback rate", data["fallback_rate"], expect.fallback_rate_max)
    checks.at_most("p50 latency ms", latency["p50"], expect.p50_ms_max)
    checks.at_most("p95 latency ms", latency["p95"], expect.p95_ms_max)
    checks.at_most("p99 latency ms", latency["p99"], expect.p99_ms_max)
    _check_recovery(checks, expect, data["faults"])
    fleet = data.get("fleet")
    wasted = fleet["total"]["wasted_calls"] if fleet is not None else None
    checks.at_most("fleet wasted calls", wasted, expect.fleet_wasted_calls_max)
    if expect.fleet_recovery_s_max is not None:
        back = fleet_recovery(fleet) if fleet is not None else None
        checks.at_most(
            "MTTR s (back in rotation, every instance)", back, expect.fleet_recovery_s_max
        )
    checks.at_most("cost usd", data["cost"]["total_usd"], expect.cost_usd_max)
    checks.at_least("savings vs baseline", data["cost"]["savings"], expect.savings_min)
    requests = data["requests"]
    checks.at_most("lost requests", requests["lost"], expect.lost_requests_max)
    checks.at_most("errors", requests["errors_total"], expect.errors_max)
    checks.at_most("replies over budget", requests["over_budget"], expect.over_budget_max)
    checks.at_most("runtime history length", data["runtime"]["history_max"], expect.history_max)


def _check_recovery(checks: _Checks, expect: Expectations, faults: list[dict[str, Any]]) -> None:
    """The worst fault's MTTR; recovery counts only faults on a provider that was serving."""
    if expect.mttr_s_max is not None:
        mttr = worst([f["mttr_s"] for f in faults]) if faults else 0.0
        checks.at_most("MTTR s (answered without paying)", mttr, expect.mttr_s_max)
    if expect.recovery_s_max is not None:
        relevant = [f["recovery_s"] for f in faults if f["in_rotation_before"]]
        recovery = worst(relevant) if relevant else 0.0
        checks.at_most("MTTR s (back in rotation)", recovery, expect.recovery_s_max)


def _check_host(checks: _Checks, expect: Expectations, host: Mapping[str, Any]) -> None:
    checks.at_most(
        "live objects growth (first to last checkpoint)",
        host.get("object_growth"),
        expect.object_growth_max,
        host=True,
    )
    checks.at_most(
        "runtime memory growth KiB",
        host.get("memory_growth_kib"),
        expect.memory_growth_kib_max,
        host=True,
    )


def _check_providers(checks: _Checks, expect: Expectations, data: Mapping[str, Any]) -> None:
    providers = {p["name"]: p for p in data["providers"]}
    for name, rule in expect.providers.items():
        stats = providers.get(name, {})
        served = stats.get("served", 0)
        trips = stats.get("breaker_trips", 0)
        restarts = stats.get("restarts", 0)
        checks.at_least(f"{name} served", served, rule.served_min)
        checks.at_most(f"{name} served", served, rule.served_max)
        checks.at_most(f"{name} calls", stats.get("calls", 0), rule.calls_max)
        failures = sum(stats.get("failures", {}).values())
        checks.at_most(f"{name} failed calls", failures, rule.failures_max)
        checks.at_least(f"{name} breaker trips", trips, rule.breaker_trips_min)
        checks.at_most(f"{name} breaker trips", trips, rule.breaker_trips_max)
        checks.at_most(f"{name} time open s", stats.get("time_open_s", 0.0), rule.time_open_s_max)
        checks.at_least(f"{name} restarts", restarts, rule.restarts_min)
        checks.at_most(f"{name} restarts", restarts, rule.restarts_max)
        checks.at_most(
            f"{name} calls per half-open spell",
            stats.get("half_open_calls_max", 0),
            rule.half_open_calls_max,
        )
        checks.at_most(f"{name} cost usd", stats.get("cost_usd", 0.0), rule.cost_usd_max)


def _check_levels(checks: _Checks, expect: Expectations, data: Mapping[str, Any]) -> None:
    levels = {level["name"]: level for level in data["levels"]}
    for name, rule in expect.levels.items():
        stats = levels.get(name, {})
        checks.at_least(f"{name} share", stats.get("share", 0.0), rule.share_min)
        checks.at_most(f"{name} share", stats.get("share", 0.0), rule.share_max)
        checks.at_least(f"{name} served", stats.get("served", 0), rule.served_min)
        checks.at_most(f"{name} served", stats.get("served", 0), rule.served_max)


def _check_actors(checks: _Checks, expect: Expectations, data: Mapping[str, Any]) -> None:
    actors = data["actors"]
    for name, rule in expect.actors.items():
        restarts = actors.get(name)
        checks.at_least(f"actor {name} restarts", restarts, rule.restarts_min)
        checks.at_most(f"actor {name} restarts", restarts, rule.restarts_max)
