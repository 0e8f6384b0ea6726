"""A recorded run turned into its report: the numbers, and the expectations checked.

The arithmetic is in `measure`, the checks in `checks`, the renderings in `terminal` and `html`.
A `Report`'s `data` is plain JSON that depends only on the scenario, the seed and what the
runtime did, so a virtual run gives byte-identical JSON for the same seed. Measurements of the
host (wall time, traced memory) go in `host`, which the terminal and HTML show and the JSON
leaves out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from runtime.scenario.checks import Check, check_expectations
from runtime.scenario.fleet_measure import fleet_numbers
from runtime.scenario.format import Scenario
from runtime.scenario.measure import level_chars, measure_run, percentile
from runtime.scenario.recorder import Recorder

__all__ = ["Check", "Report", "build_report", "level_chars", "percentile"]


@attrs.frozen
class Report:
    #: JSON-ready, deterministic for a virtual run and a seed.
    data: dict[str, Any]
    #: Host measurements: wall time, memory. Shown, never in the JSON.
    host: dict[str, Any]
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True) + "\n"


def build_report(
    recorder: Recorder,
    scenario: Scenario,
    *,
    seed: int,
    mode: str,
    host: Mapping[str, Any] | None = None,
) -> Report:
    """All the numbers of a run, and its expectations checked."""
    data = measure_run(recorder, scenario, seed=seed, mode=mode)
    if scenario.fleet is not None:
        data["fleet"] = fleet_numbers(recorder, scenario, scenario.fleet, data["faults"])
    host = dict(host or {})
    checks = check_expectations(scenario.expect, data, host)
    data["expectations"] = [check.to_json() for check in checks]
    data["passed"] = all(check.passed for check in checks)
    return Report(data=data, host=host, checks=tuple(checks))
