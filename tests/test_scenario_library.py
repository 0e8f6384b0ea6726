"""Every scenario in scenarios/ passes in virtual time, the soak included.

The soak (one simulated hour at 50 requests per second) takes most of a minute of CPU, so it
runs through the real command line in a subprocess started when this module starts, on the
second core, while the other scenarios run here; its test collects the result at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.scenario.format import Expectations, load_scenario
from runtime.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "scenarios").glob("*.toml"))
SOAK = ROOT / "scenarios" / "soak.toml"
#: The soak's wall time is about 40 s on a quiet machine; this only stops a runaway.
SOAK_TIMEOUT_S = 900


class SoakRun:
    def __init__(self, json_path: Path) -> None:
        self.json_path = json_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runtime.scenario.cli", "run", str(SOAK), "--json", str(json_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture(scope="module", autouse=True)
def soak_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoakRun]:
    run = SoakRun(tmp_path_factory.mktemp("soak") / "soak.json")
    yield run
    if run.process.poll() is None:
        run.process.kill()
        run.process.communicate()


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


def test_soak_hour_at_50_rps_keeps_memory_and_history_bounded(soak_run: SoakRun) -> None:
    out, err = soak_run.process.communicate(timeout=SOAK_TIMEOUT_S)
    assert soak_run.process.returncode == 0, out + err
    data = json.loads(soak_run.json_path.read_text())
    assert data["scenario"]["duration_s"] >= 3600
    assert data["requests"]["issued"] >= 50 * 3600 * 0.98
    assert data["requests"]["lost"] == 0
    assert data["runtime"]["history_max"] <= 100
    assert data["passed"] is True
    # The memory checkpoints are printed (host measurements stay out of the JSON).
    assert "memory checkpoints (after a full gc)" in out
    assert "PASS  live objects growth (first to last checkpoint) <= 20000" in out
