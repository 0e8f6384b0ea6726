"""How many simulated requests per wall second the virtual-time scenario runner achieves.

    .venv/bin/python bench/scenario_throughput.py                 # the one-hour soak
    .venv/bin/python bench/scenario_throughput.py scenarios/flagship.toml --repeat 3

Each request goes the whole way: load generator, concurrency cap, the cascade, router, provider
actors and simulated backends, the recorder. The number is what bounds how fast a scenario runs;
the report's own arithmetic is timed separately. Memory checkpoints are switched off so they do
not count against the runner.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import attrs
import trio
import trio.testing

from runtime.scenario import load_scenario
from runtime.scenario.report import build_report
from runtime.scenario.runner import run_scenario_async

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios" / "soak.toml"))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="runs; the best one is reported")
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario)
    scenario = attrs.evolve(scenario, info=attrs.evolve(scenario.info, memory="off"))
    seed = scenario.info.seed if args.seed is None else args.seed
    print(f"{platform.python_implementation()} {platform.python_version()} on "
          f"{platform.machine()}, {os.cpu_count()} CPUs, trio {trio.__version__}, "
          f"{datetime.date.today().isoformat()}")  # fmt: skip
    best: float | None = None
    for run in range(1, args.repeat + 1):
        started = time.perf_counter()
        recorder = trio.run(
            lambda: run_scenario_async(scenario, seed=seed, mode="virtual"),
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
        wall = time.perf_counter() - started
        report_started = time.perf_counter()
        report = build_report(recorder, scenario, seed=seed, mode="virtual")
        report_s = time.perf_counter() - report_started
        requests = report.data["requests"]["issued"]
        rate = requests / wall
        best = rate if best is None else max(best, rate)
        print(
            f"run {run}: {scenario.name}: {requests:,} requests over "
            f"{scenario.load.duration_s:,.0f} simulated s in {wall:.2f} wall s: "
            f"{rate:,.0f} simulated requests per wall second "
            f"({scenario.load.duration_s / wall:,.0f}x real time); report {report_s:.2f} s"
        )
    print(f"best: {best:,.0f} simulated requests per wall second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
