"""Every library scenario but the soak passes at seeds 1 to 20: its expectations describe the
system, not one lucky schedule.

About 33 minutes of CPU (72 s a seed for the first 14 scenarios, 26 s more for slow-drift,
ramping-failure, hidden-rate-limit, price-change, mixed-day and recovery), so about 17 minutes of
wall time on two cores: it is marked `seeds` and left out of `make test` (pyproject's
addopts deselect it); `.ci/run` runs it as its own step: `pytest -m seeds`. The runs go to a
pool of two processes (`runtime.scenario.sweep`), started once for the whole module, for the
scenarios selected: `pytest -m seeds -k fleet` sweeps fleet-outage alone (three runtimes a run:
4 minutes of wall time for its 20 seeds on a busy two-core machine).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.scenario.sweep import SeedResult, sweep

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted(p for p in (ROOT / "scenarios").glob("*.toml") if p.stem != "soak")
SEEDS = range(1, 21)
WORKERS = 2

pytestmark = pytest.mark.seeds


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest) -> dict[str, list[SeedResult]]:
    """The sweep of the scenarios selected (`-k fleet` sweeps only those), in one pool."""
    selected = {
        item.callspec.params["path"]
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and hasattr(item, "callspec")
        and "path" in item.callspec.params
    }
    by_scenario: dict[str, list[SeedResult]] = {}
    paths = [str(p) for p in LIBRARY if p in selected]
    for result in sweep(paths, SEEDS, workers=WORKERS):
        by_scenario.setdefault(Path(result.path).stem, []).append(result)
    return by_scenario


def test_the_sweep_covers_the_library() -> None:
    assert len(LIBRARY) >= 12
    assert "flagship" in {p.stem for p in LIBRARY}


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_scenario_passes_at_every_seed(path: Path, results: dict[str, list[SeedResult]]) -> None:
    runs = results[path.stem]
    assert [r.seed for r in runs] == list(SEEDS)
    failed = [f"seed {r.seed}: {'; '.join(r.failed)} lost={r.lost}" for r in runs if not r.passed]
    assert not failed, f"{path.name} fails at {len(failed)} of {len(runs)} seeds:\n" + "\n".join(
        failed
    )
