"""The numbers of a fleet run, per instance and for the whole fleet (the report's ``fleet``).

A fleet run records every request once, in one recorder; which instance served a request
follows from its index (round-robin, `runtime.scenario.fleet`), so each instance's share is
read back from the same columns. Breaker trips are each instance's own count at the end.
"""

from __future__ import annotations

from typing import Any

from runtime.scenario.format import FleetInfo, Scenario
from runtime.scenario.measure import wasted_attempts
from runtime.scenario.recorder import NOT_SENT, Recorder, Result

__all__ = ["SPREAD", "fleet_numbers"]

#: How requests are spread over the instances.
SPREAD = "round-robin"


def fleet_numbers(recorder: Recorder, scenario: Scenario, fleet: FleetInfo) -> dict[str, Any]:
    """Requests, availability, cost, and calls, failed calls, wasted calls and breaker trips
    per provider: for each instance, and summed over the fleet."""
    count = fleet.instances
    providers = [p.name for p in scenario.config.providers]
    instances = [_empty(providers) for _ in range(count)]
    for row in range(recorder.requests):
        numbers = instances[recorder.index[row] % count]
        numbers["requests"] += 1
        if recorder.result[row] == Result.REPLY:
            numbers["answered"] += 1
            numbers["cost_usd"] += recorder.cost[row]
    wasted = wasted_attempts(recorder)
    for position, request in enumerate(recorder.att_request):
        outcome = recorder.outcomes[recorder.att_outcome[position]]
        if outcome in NOT_SENT:
            continue
        name = recorder.providers[recorder.att_provider[position]]
        calls = instances[request % count]["providers"].setdefault(name, _calls())
        calls["calls"] += 1
        calls["failed"] += outcome != "ok"
        calls["wasted"] += wasted[position]
    for numbers, trips in zip(instances, recorder.instance_trips, strict=False):
        for name, tripped in trips.items():
            numbers["providers"].setdefault(name, _calls())["breaker_trips"] = tripped
    total = _sum(instances, providers)
    return {
        "instances": count,
        "sync_delay_ms": fleet.sync_delay_ms,
        "shared": scenario.config.state.backend != "memory",
        "spread": SPREAD,
        "per_instance": [
            {"id": f"i{position + 1}", **_finish(numbers)}
            for position, numbers in enumerate(instances)
        ],
        "total": _finish(total),
    }


def _calls() -> dict[str, int]:
    return {"calls": 0, "failed": 0, "wasted": 0, "breaker_trips": 0}


def _empty(providers: list[str]) -> dict[str, Any]:
    return {
        "requests": 0,
        "answered": 0,
        "cost_usd": 0.0,
        "providers": {name: _calls() for name in providers},
    }


def _sum(instances: list[dict[str, Any]], providers: list[str]) -> dict[str, Any]:
    total = _empty(providers)
    for numbers in instances:
        for key in ("requests", "answered", "cost_usd"):
            total[key] += numbers[key]
        for name, calls in numbers["providers"].items():
            into = total["providers"].setdefault(name, _calls())
            for key, value in calls.items():
                into[key] += value
    return total


def _finish(numbers: dict[str, Any]) -> dict[str, Any]:
    """Rounded, with availability and the per-provider sums."""
    requests, answered = numbers["requests"], numbers["answered"]
    providers = numbers["providers"]
    return {
        "requests": requests,
        "answered": answered,
        "availability": round(answered / requests, 6) if requests else 0.0,
        "cost_usd": round(numbers["cost_usd"], 8),
        "failed_calls": sum(p["failed"] for p in providers.values()),
        "wasted_calls": sum(p["wasted"] for p in providers.values()),
        "breaker_trips": sum(p["breaker_trips"] for p in providers.values()),
        "providers": {name: dict(calls) for name, calls in sorted(providers.items())},
    }
