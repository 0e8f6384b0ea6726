"""The recovery scenario in real time: the primary down for 20 s under 20 requests per second,
against the fake provider server through the real adapters. Its expectations are the same as in
virtual time (`tests/test_scenario_library.py` runs it there).

A minute of wall time, so it is marked `seeds` with the seed sweep and left out of `make test`;
`.ci/run` runs it in that step (`pytest -m seeds`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.scenario.format import load_scenario
from runtime.scenario.runner import run_scenario

RECOVERY = Path(__file__).resolve().parent.parent / "scenarios" / "recovery.toml"

pytestmark = pytest.mark.seeds


def test_recovery_scenario_holds_in_http_mode() -> None:
    report = run_scenario(load_scenario(RECOVERY), mode="http")
    failed = [f"{c.name} (measured {c.measured})" for c in report.checks if not c.passed]
    assert not failed, failed
    data = report.data
    assert data["scenario"]["mode"] == "http"
    assert data["requests"]["lost"] == 0
    (outage,) = data["faults"]
    # The primary did come back (a None here would mean it never served again).
    assert outage["recovery_s"] is not None
