"""Issue 15's benchmarks, one after the other, in one table: `make bench`.

    .venv/bin/python bench/all.py [--quick] [--json OUT]

Runs `cascade_throughput.py` (the cascade in-process against a zero-latency simulated provider),
`cascade_instructions.py` (the same, in instructions per request: left out without valgrind),
`peer_overhead.py` (direct httpx against `rt.complete` on a loopback server) and
`scenario_throughput.py` on the flagship (simulated requests per wall second), each in its own
process with its own output shown as it runs, then prints one table: benchmark, measure, the
runtime's figure, the direct baseline it is compared with (where there is one), the ratio and
the issue's goal, read from each script's `--json`. `--quick` makes the runs shorter (noisier).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@attrs.frozen
class Row:
    """One line of the table."""

    benchmark: str
    measure: str
    runtime: float
    baseline: float | None = None
    goal: str = ""
    #: A cost (instructions), not a rate: the ratio is then the baseline's over the runtime's,
    #: so that every ratio reads the same way (1.0: as fast as the baseline).
    cost: bool = False

    @property
    def ratio(self) -> float | None:
        if not self.baseline or not self.runtime:
            return None
        return self.baseline / self.runtime if self.cost else self.runtime / self.baseline


# -- running a script -------------------------------------------------------------------------


def run(script: str, *args: str, optional: bool = False) -> Any:
    """Run `bench/script` with `args` and `--json`, showing its output as it runs: its JSON
    (None when an `optional` one could not run: it said why)."""
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        out_file = Path(tmp) / "out.json"
        command = [sys.executable, str(BENCH / script), *args, "--json", str(out_file)]
        print(f"\n$ {' '.join(command[1:])}", flush=True)
        done = subprocess.run(command, cwd=ROOT)
        if optional and done.returncode == 2:
            return None
        if done.returncode != 0 or not out_file.exists():
            raise SystemExit(f"{script} failed with exit status {done.returncode}")
        return json.loads(out_file.read_text())


# -- reading each benchmark's results --------------------------------------------------------

CASCADE_GOALS = {1: "<= 40 us/request", 16: ">= 20,000 rps"}


def cascade_rows(data: Any) -> list[Row]:
    return [
        Row(
            "cascade_throughput",
            f"requests/s, concurrency {row['concurrency']} ({row['per_request_us']:.1f} us/request)",
            row["rps"],
            row["baseline_rps"],
            CASCADE_GOALS.get(row["concurrency"], ""),
        )
        for row in data["results"]
    ]


def instruction_rows(data: Any) -> list[Row]:
    if data is None:
        return []
    measure = "instructions/request, concurrency 1 (callgrind)"
    runtime, direct = data["runtime_instructions"], data["direct_instructions"]
    return [Row("cascade_instructions", measure, runtime, direct, cost=True)]


def peer_rows(data: Any) -> list[Row]:
    goals = {1: ">= 0.9x", 32: ">= 1.5x", 64: ">= 1.5x"}
    return [
        Row(
            "peer_overhead",
            f"requests/s, concurrency {row['concurrency']} (p50 {row['runtime_p50_ms']:.2f} ms "
            f"vs {row['direct_p50_ms']:.2f})",
            row["runtime_rps"],
            row["direct_rps"],
            goals.get(row["concurrency"], ""),
        )
        for row in data["rows"]
    ]


def scenario_rows(data: Any) -> list[Row]:
    """The simulator's rate next to bare trio tasks sleeping the same schedule."""
    measure = "flagship: simulated requests/wall s (baseline: bare trio tasks)"
    baseline = data["baseline"]["simulated_rps"]
    return [Row("scenario_throughput", measure, data["simulated_rps"], baseline, ">= 12,000")]


# -- the table --------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | measure | runtime | direct baseline | ratio | goal |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        baseline = "" if row.baseline is None else f"{row.baseline:,.0f}"
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(
            f"| {row.benchmark} | {row.measure} | {row.runtime:,.0f} | {baseline} | {ratio} "
            f"| {row.goal} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--json", metavar="OUT", help="also write the table as JSON")
    args = parser.parse_args(argv)
    started = time.time()
    cascade_args = ["--requests", "5000"] if args.quick else []
    peer_args = ["--seconds", "1", "--rounds", "3"] if args.quick else []
    rows = cascade_rows(run("cascade_throughput.py", *cascade_args))
    instruction_args = ["--requests", "300"] if args.quick else []
    instructions = run("cascade_instructions.py", *instruction_args, optional=True)
    rows += instruction_rows(instructions)
    peer = run("peer_overhead.py", *peer_args)
    rows += peer_rows(peer)
    rows += scenario_rows(run("scenario_throughput.py", str(ROOT / "scenarios" / "flagship.toml")))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, {peer['machine']['cpu']}, "
          f"{os.cpu_count()} cpu, python {platform.python_version()}, load average now {load}; "
          f"peer: {peer['machine']['server']}")  # fmt: skip
    print(table(rows))
    if args.json:
        result = {
            "machine": peer["machine"],
            "rows": [attrs.asdict(r) | {"ratio": r.ratio} for r in rows],
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
