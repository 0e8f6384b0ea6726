"""Running scenarios end to end in virtual time: determinism, exit codes, lost requests, files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trio
import trio.testing

from runtime.scenario.cli import main
from runtime.scenario.format import load_scenario
from runtime.scenario.runner import ProgressLine, run_scenario, virtual_clock
from runtime.scenario.sweep import parse_seeds, run_one

SMALL = """
[scenario]
name = "small"
base = "demo"
seed = 3

[load]
rps = 10
duration_s = 90
stream_fraction = 0.3

[[load.mix]]
complexity = "moderate"

[[load.mix]]
complexity = "trivial"
quality = "draft"

[[faults]]
at_s = 20
provider = "openai"
kind = "outage"
duration_s = 20

[[faults]]
at_s = 50
provider = "anthropic"
kind = "errors"
rate = 0.5
duration_s = 20

[[faults]]
at_s = 75
provider = "openai"
kind = "crash"

[expect]
availability_min = 0.99
{extra}
"""


def _scenario_file(tmp_path: Path, extra: str = "", name: str = "small.toml") -> Path:
    path = tmp_path / name
    path.write_text(SMALL.replace("{extra}", extra), encoding="utf-8")
    return path


def test_the_virtual_clock_tells_a_mock_clocks_time_and_jumps_to_deadlines() -> None:
    """`virtual_clock` reads its time without the real clock: the same times as a MockClock,
    and it still autojumps to each deadline."""
    fast, plain = virtual_clock(), trio.testing.MockClock(autojump_threshold=0)
    for seconds in (0.0, 0.25, 1e-9, 3600.5):
        fast.jump(seconds)
        plain.jump(seconds)
        assert fast.current_time() == plain.current_time()
        assert fast.deadline_to_sleep_time(fast.current_time() + 1) == 999999999

    async def wake_ups() -> list[float]:
        times = []
        for delay in (0.5, 30.0, 0.001):
            await trio.sleep(delay)
            times.append(trio.current_time())
        return times

    assert trio.run(wake_ups, clock=virtual_clock()) == trio.run(
        wake_ups, clock=trio.testing.MockClock(autojump_threshold=0)
    )


def test_same_seed_gives_byte_identical_json_and_another_seed_other_timings(
    tmp_path: Path,
) -> None:
    scenario = load_scenario(_scenario_file(tmp_path))
    first = run_scenario(scenario).to_json()
    assert run_scenario(scenario).to_json() == first
    other = json.loads(run_scenario(scenario, seed=4).to_json())
    data = json.loads(first)
    assert data["scenario"]["seed"] == 3 and other["scenario"]["seed"] == 4
    assert data["latency_ms"] != other["latency_ms"]
    assert data["timeline"]["served"] != other["timeline"]["served"]


def test_json_is_byte_identical_across_processes(tmp_path: Path) -> None:
    """Another interpreter, another hash seed: the same bytes."""
    path = tmp_path / "short.toml"
    path.write_text(SMALL.replace("duration_s = 90", "duration_s = 80").replace("{extra}", ""))
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"r{hash_seed}.json"
        subprocess.run(
            [sys.executable, "-m", "runtime.scenario.cli", "run", str(path), "--json", str(out)],
            check=True,
            capture_output=True,
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            timeout=120,
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_every_request_ends_exactly_once_with_a_reply_or_typed_error(tmp_path: Path) -> None:
    report = run_scenario(load_scenario(_scenario_file(tmp_path)))
    requests = report.data["requests"]
    assert requests["issued"] > 800
    assert requests["lost"] == 0
    assert requests["answered"] + requests["errors_total"] == requests["issued"]
    assert requests["streamed"] > 200
    providers = {p["name"]: p for p in report.data["providers"]}
    assert providers["openai"]["breaker_trips"] >= 1
    assert providers["openai"]["restarts"] == 1
    assert report.data["actors"]["openai"] == 1
    kinds = [f["kind"] for f in report.data["faults"]]
    assert kinds == ["outage", "errors", "crash"]
    assert report.passed


def test_impossible_expectation_exits_1_and_still_writes_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _scenario_file(tmp_path, extra="p50_ms_max = 1")
    json_path, html_path = tmp_path / "r.json", tmp_path / "r.html"
    code = main(["run", str(path), "--json", str(json_path), "--html", str(html_path)])
    assert code == 1
    data = json.loads(json_path.read_text())
    failed = [e for e in data["expectations"] if not e["passed"]]
    assert [e["name"] for e in failed] == ["p50 latency ms <= 1"]
    assert failed[0]["measured"] > 1
    page = html_path.read_text()
    ET.fromstring(page[page.index("<svg") : page.index("</svg>") + len("</svg>")])


def test_passing_scenario_exits_0_and_prints_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(_scenario_file(tmp_path)), "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "scenario small  seed=5  mode=virtual" in out
    assert "serving level, one char per second" in out
    assert "PASS  availability >= 0.99" in out
    assert out.rstrip().endswith("PASSED")


def test_requests_still_pending_after_the_drain_time_are_counted_lost(tmp_path: Path) -> None:
    path = tmp_path / "hung.toml"
    path.write_text(
        """
[scenario]
base = "demo"
drain_s = 2

[load]
rps = 5
duration_s = 10

[[faults]]
at_s = 5
provider = "openai"
kind = "hang"

[[faults]]
at_s = 5
provider = "anthropic"
kind = "hang"
""",
        encoding="utf-8",
    )
    report = run_scenario(load_scenario(path))
    requests = report.data["requests"]
    # Primary calls hang for the level's 30 s; the drain gives them 2 s after the load ends.
    assert requests["lost"] > 10
    assert requests["outcomes"]["lost"] == requests["lost"]
    assert requests["answered"] + requests["lost"] == requests["issued"]
    assert not report.passed
    assert main(["run", str(path)]) == 1


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_terminal_after_a_moment_and_rate_limited() -> None:
    now = [0.0]
    stream = FakeTerminal()
    progress = ProgressLine(stream, after_s=0.5, interval_s=0.2, wall=lambda: now[0])
    progress.update("too early")
    now[0] = 0.6
    progress.update("first")
    now[0] = 0.7
    progress.update("rate limited")
    now[0] = 0.9
    progress.update("second")
    progress.close()
    text = stream.getvalue()
    assert "too early" not in text and "rate limited" not in text
    assert "first" in text and "second" in text
    assert text.endswith("\r\x1b[2K")

    piped = io.StringIO()
    quiet = ProgressLine(piped, after_s=0, interval_s=0, wall=lambda: now[0])
    quiet.update("nothing")
    quiet.close()
    assert piped.getvalue() == ""


def test_a_sweep_names_each_seed_and_what_failed_there(tmp_path: Path) -> None:
    """The seed sweep's reduction of a run: the failed checks by name, so a seed that breaks an
    expectation is reported, and a passing one is not."""
    path = tmp_path / "short.toml"
    path.write_text(
        SMALL.replace("duration_s = 90", "duration_s = 80").replace("{extra}", "p50_ms_max = 1")
    )
    result = run_one(str(path), 2)
    assert (result.path, result.seed, result.lost) == (str(path), 2, 0)
    assert not result.passed
    assert [name.split(" (")[0] for name in result.failed] == ["p50 latency ms <= 1"]
    assert parse_seeds("1-3,7") == [1, 2, 3, 7]
