"""Every scenario in scenarios/ passes in virtual time at its own seed, the soak aside.

The soak (one simulated hour at 50 requests per second: minutes of CPU) is checked by
tests/test_soak.py, in CI's separate step with the seed sweep (`pytest -m seeds`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.scenario.format import Expectations, load_scenario
from runtime.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "scenarios").glob("*.toml"))
SOAK = ROOT / "scenarios" / "soak.toml"


def test_the_library_has_the_scenarios_the_issue_lists() -> None:
    names = {path.stem for path in LIBRARY}
    assert len(names) >= 12
    assert {
        "flagship", "primary-outage", "brownout", "rate-limit-storm", "flapping",
        "primary-secondary-blackout", "total-blackout", "crash-loop", "recovery-stampede",
        "budget-squeeze", "quota-exhaustion", "mid-stream-drop", "soak",
        # what static rules miss (issue 13)
        "slow-drift", "ramping-failure", "hidden-rate-limit", "price-change", "mixed-day",
        "recovery", "level-brownout",
        # a fleet in simulation (issue 14)
        "fleet-outage",
    } <= names  # fmt: skip
    for path in LIBRARY:
        scenario = load_scenario(path)
        assert scenario.info.description, path
        # Every scenario claims something beyond "no request was lost".
        assert scenario.expect != Expectations(), path


@pytest.mark.parametrize("path", [p for p in LIBRARY if p != SOAK], ids=lambda p: p.stem)
def test_library_scenario_passes(path: Path) -> None:
    report = run_scenario(load_scenario(path))
    failed = [f"{c.name} (measured {c.measured})" for c in report.checks if not c.passed]
    assert not failed, f"{path.name}: {failed}"
    assert report.data["requests"]["lost"] == 0
