"""The soak: one simulated hour at 50 requests per second, with an incident every ten minutes,
keeps memory and the runtime's histories bounded.

Minutes of CPU, so it is marked `seeds` and runs in CI's separate step with the seed sweep
(`.ci/run`: `pytest -m seeds`), not in `make test`. It runs through the real command line, which
prints the memory checkpoints (host measurements stay out of the JSON report).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / "scenarios" / "soak.toml"
#: The soak takes one to three minutes of wall time; this only stops a runaway.
SOAK_TIMEOUT_S = 900

pytestmark = pytest.mark.seeds


def test_soak_hour_at_50_rps_keeps_memory_and_history_bounded(tmp_path: Path) -> None:
    json_path = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "runtime.scenario.cli", "run", str(SOAK), "--json", str(json_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SOAK_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(json_path.read_text())
    assert data["scenario"]["duration_s"] >= 3600
    assert data["requests"]["issued"] >= 50 * 3600 * 0.98
    assert data["requests"]["lost"] == 0
    assert data["runtime"]["history_max"] <= 100
    assert data["passed"] is True
    assert "memory checkpoints (after a full gc)" in done.stdout
    assert "PASS  live objects growth (first to last checkpoint) <= 20000" in done.stdout
