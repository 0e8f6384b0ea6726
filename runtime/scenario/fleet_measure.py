"""The numbers of a fleet run, per instance and for the whole fleet (the report's ``fleet``).

A fleet run records every request once, in one recorder; which instance served a request
follows from its index (round-robin, `runtime.scenario.fleet`), so each instance's share is
read back from the same columns. Breaker trips are each instance's own count at the end.

After a fault, the run's faults table says when the provider was back in rotation through the
first instance to call it again; ``recovery`` says it for each instance, and when the last one
was: what an operator of the fleet waits for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runtime.scenario.format import FleetInfo, Scenario
from runtime.scenario.measure import first_success_end, successful_calls, wasted_attempts, worst
from runtime.scenario.recorder import NOT_SENT, Recorder, Result

__all__ = ["SPREAD", "fleet_numbers", "fleet_recovery"]

#: How requests are spread over the instances.
SPREAD = "round-robin"


def fleet_numbers(
    recorder: Recorder,
    scenario: Scenario,
    fleet: FleetInfo,
    faults: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Requests, availability, cost, and calls, failed calls, wasted calls and breaker trips
    per provider: for each instance, and summed over the fleet; and after each of the run's
    `faults` (its report's faults table), when each instance had the provider back."""
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
        "recovery": _recovery(recorder, faults, count),
    }


def fleet_recovery(fleet: Mapping[str, Any]) -> float | None:
    """The worst fault's time until the last instance had its provider back (a report's
    ``fleet``; None: never), 0.0 without such a fault: what ``fleet_recovery_s_max`` checks."""
    values = [fault["fleet_s"] for fault in fleet["recovery"]]
    return worst(values) if values else 0.0


def _recovery(
    recorder: Recorder, faults: Sequence[Mapping[str, Any]], count: int
) -> list[dict[str, Any]]:
    """Per fault that ended, on a provider that was in rotation before it (those the faults
    table gives a back-in-rotation time): seconds from its end to the end of the first
    successful call to the provider through each instance, and the fleet's, the last
    instance's (None: some instance never had it back)."""
    relevant = [f for f in faults if f["in_rotation_before"] and f["end_s"] is not None]
    if not relevant:
        return []
    successes = _successes_by_instance(recorder, count)
    out = []
    for fault in relevant:
        provider = recorder.providers.code(fault["provider"])
        ends = [window.end for window in recorder.faults if window.step == fault["step"]]
        per_instance = [
            _back_after(successes.get((provider, instance), ([], [])), ends)
            for instance in range(count)
        ]
        out.append(
            {
                "step": fault["step"],
                "provider": fault["provider"],
                "title": fault["title"],
                "end_s": fault["end_s"],
                "per_instance_s": per_instance,
                "fleet_s": worst(per_instance),
            }
        )
    return out


def _successes_by_instance(
    recorder: Recorder, count: int
) -> dict[tuple[int, int], tuple[list[float], list[float]]]:
    """The successful calls (`successful_calls`) by provider code and instance: built only for
    a fleet's report, so a single runtime's costs nothing more."""
    attempts: dict[tuple[int, int], list[int]] = {}
    for position, request in enumerate(recorder.att_request):
        key = (recorder.att_provider[position], request % count)
        attempts.setdefault(key, []).append(position)
    return {key: successful_calls(recorder, positions) for key, positions in attempts.items()}


def _back_after(
    successes: tuple[list[float], list[float]], ends: Sequence[float | None]
) -> float | None:
    """Seconds from the end of each of a fault's windows to the end of the first successful
    call that started after it, the worst of them (as the faults table takes a flapping
    fault's); None if one never ended or the provider never answered after it."""
    starts, finishes = successes
    backs: list[float | None] = []
    for end in ends:
        back = None if end is None else first_success_end(starts, finishes, end)
        backs.append(None if back is None or end is None else back - end)
    return worst(backs)


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
