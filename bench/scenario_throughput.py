"""How many simulated requests per wall second the virtual-time scenario runner achieves.

    .venv/bin/python bench/scenario_throughput.py                 # the one-hour soak
    .venv/bin/python bench/scenario_throughput.py scenarios/flagship.toml --repeat 3 [--json OUT]

Each request goes the whole way: load generator, concurrency cap, the cascade, router, provider
actors and simulated backends, the recorder. The run is `uptax scenario run`'s (its clock, its
seeded scheduler); the report's own arithmetic is timed separately. Memory checkpoints are
switched off so they do not count against the runner.

Each round also runs a direct baseline under the same kind of clock: one bare trio task per
request of the run, started at the request's arrival, sleeping the latency the run recorded for
it. That is what trio alone costs for the same arrivals and sleeps, so the ratio of the two rates
says how much the runtime and the simulator add, whatever the machine's speed or load. Rounds
alternate run and baseline; the best round of each is reported, by wall time and by CPU time
(the process's own, less disturbed by other work on a shared machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import attrs
import trio

from runtime.scenario import load_scenario
from runtime.scenario.format import Scenario
from runtime.scenario.recorder import Recorder
from runtime.scenario.report import build_report
from runtime.scenario.runner import run_scenario_async, seed_trio_scheduler, virtual_clock

ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class Timing:
    wall_s: float
    cpu_s: float


def _timed(run: object) -> tuple[Timing, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()  # type: ignore[operator]
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), result


def run_once(scenario: Scenario, seed: int) -> tuple[Timing, Recorder]:
    """One virtual run, as `uptax scenario run` makes it."""
    seed_trio_scheduler(seed)
    timing, recorder = _timed(
        lambda: trio.run(
            lambda: run_scenario_async(scenario, seed=seed, mode="virtual"),
            clock=virtual_clock(),
        )
    )
    assert isinstance(recorder, Recorder)
    return timing, recorder


def baseline_once(arrivals: list[float], latencies: list[float]) -> Timing:
    """Bare trio tasks: each starts at its arrival and sleeps its latency (both seconds)."""

    async def one(latency: float) -> None:
        await trio.sleep(latency)

    async def drive() -> None:
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for at, latency in zip(arrivals, latencies, strict=True):
                await trio.sleep_until(t0 + at)
                nursery.start_soon(one, latency)

    timing, _ = _timed(lambda: trio.run(drive, clock=virtual_clock()))
    return timing


def _schedule(recorder: Recorder) -> tuple[list[float], list[float]]:
    """Arrival and recorded latency of every request, in arrival order."""
    pairs = sorted(zip(recorder.arrival, recorder.latency_ms, strict=True))
    return [at for at, _ in pairs], [max(0.0, ms) / 1000.0 for _, ms in pairs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios" / "soak.toml"))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the best one is reported")
    parser.add_argument("--json", metavar="PATH", help="also write the result as one JSON object")
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario)
    scenario = attrs.evolve(scenario, info=attrs.evolve(scenario.info, memory="off"))
    seed = scenario.info.seed if args.seed is None else args.seed
    machine = (
        f"{platform.python_implementation()} {platform.python_version()} on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, trio {trio.__version__}"
    )
    print(f"{machine}, {datetime.date.today().isoformat()}")
    runs: list[Timing] = []
    baselines: list[Timing] = []
    requests = 0
    for round_ in range(1, args.repeat + 1):
        timing, recorder = run_once(scenario, seed)
        report_started = time.perf_counter()
        report = build_report(recorder, scenario, seed=seed, mode="virtual")
        report_s = time.perf_counter() - report_started
        requests = report.data["requests"]["issued"]
        baseline = baseline_once(*_schedule(recorder))
        runs.append(timing)
        baselines.append(baseline)
        print(
            f"round {round_}: {scenario.name}: {requests:,} requests over "
            f"{scenario.load.duration_s:,.0f} simulated s in {timing.wall_s:.2f} wall s "
            f"({timing.cpu_s:.2f} CPU s): {requests / timing.wall_s:,.0f} simulated requests per "
            f"wall second ({scenario.load.duration_s / timing.wall_s:,.0f}x real time); report "
            f"{report_s:.2f} s; baseline {baseline.wall_s:.2f} wall s ({baseline.cpu_s:.2f} CPU s)"
        )
    best, best_baseline = _best(runs), _best(baselines)
    result = {
        "scenario": scenario.name,
        "seed": seed,
        "requests": requests,
        "simulated_s": scenario.load.duration_s,
        "rounds": args.repeat,
        "wall_s": round(best.wall_s, 3),
        "cpu_s": round(best.cpu_s, 3),
        "simulated_rps": round(requests / best.wall_s, 1),
        "simulated_rps_cpu": round(requests / best.cpu_s, 1),
        "baseline": {
            "what": "one bare trio task per request: sleep_until its arrival, sleep its latency",
            "wall_s": round(best_baseline.wall_s, 3),
            "cpu_s": round(best_baseline.cpu_s, 3),
            "simulated_rps": round(requests / best_baseline.wall_s, 1),
            "simulated_rps_cpu": round(requests / best_baseline.cpu_s, 1),
        },
        "ratio": round(best_baseline.wall_s / best.wall_s, 4),
        "ratio_cpu": round(best_baseline.cpu_s / best.cpu_s, 4),
        "machine": machine,
        "load_average": os.getloadavg()[0],
    }
    print(
        f"best: {result['simulated_rps']:,.0f} simulated requests per wall second "
        f"({result['simulated_rps_cpu']:,.0f} per CPU second); the bare trio baseline "
        f"{result['baseline']['simulated_rps']:,.0f} ({result['baseline']['simulated_rps_cpu']:,.0f}"
        f" per CPU second): ratio {result['ratio']:.3f} ({result['ratio_cpu']:.3f} by CPU)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def _best(timings: list[Timing]) -> Timing:
    return Timing(min(t.wall_s for t in timings), min(t.cpu_s for t in timings))


if __name__ == "__main__":
    sys.exit(main())
