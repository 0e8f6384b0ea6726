"""Issue 15's benchmarks, one after the other, in one table: `make bench`.

    .venv/bin/python bench/all.py [--quick] [--json OUT]

Runs `cascade_throughput.py` (the cascade in-process against a zero-latency simulated provider),
`peer_overhead.py` (direct httpx against `rt.complete` on a loopback server) and
`scenario_throughput.py` on the flagship (simulated requests per wall second), each in its own
process with its own output shown as it runs, then prints one table: benchmark, measure, the
runtime's figure, the direct baseline it is compared with (where there is one), the ratio and
the issue's goal. Each script is asked for `--json` when its `--help` offers it; otherwise its
table is read from its text output. `--quick` makes the runs shorter (noisier).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
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

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.runtime / self.baseline


# -- running a script -------------------------------------------------------------------------


def json_flag(script: Path) -> tuple[bool, bool]:
    """Whether `script` offers `--json`, and whether the flag takes a file name."""
    usage = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    match = re.search(r"--json(?:[ =]([A-Z_]+))?", usage)
    return match is not None, bool(match and match.group(1))


def run(script: str, *args: str) -> tuple[str, Any | None]:
    """Run `bench/script` with `args` (and `--json` if it has it): its output, and its JSON."""
    path = BENCH / script
    has_json, takes_file = json_flag(path)
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        out_file = Path(tmp) / "out.json"
        command = [sys.executable, str(path), *args]
        if has_json:
            command += ["--json", str(out_file)] if takes_file else ["--json"]
        print(f"\n$ {' '.join(command[1:])}", flush=True)
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        print(done.stdout, end="", flush=True)
        if done.returncode != 0:
            raise SystemExit(f"{script} failed with exit status {done.returncode}")
        if has_json and takes_file and out_file.exists():
            return done.stdout, json.loads(out_file.read_text())
        return done.stdout, json_in(done.stdout) if has_json else None


def json_in(text: str) -> Any | None:
    """The JSON document in `text` (all of it, or from its first line opening one)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if line.lstrip().startswith(("{", "[")):
            try:
                return json.loads("\n".join(lines[start:]))
            except ValueError:
                continue
    return None


# -- reading each benchmark's results --------------------------------------------------------


def records(data: Any) -> Iterable[dict[str, Any]]:
    """Every mapping in `data` that names a concurrency (a row of a per-concurrency table); a
    mapping keyed by concurrency gives its values, the key as their concurrency."""
    if isinstance(data, list):
        for item in data:
            yield from records(item)
    elif isinstance(data, dict):
        if isinstance(data.get("concurrency"), int):
            yield data
            return
        for key, value in data.items():
            if isinstance(value, dict) and str(key).isdigit() and "concurrency" not in value:
                yield {"concurrency": int(key), **value}
            else:
                yield from records(value)


def number(record: dict[str, Any], *, having: str, without: tuple[str, ...] = ()) -> float | None:
    """The first numeric field whose name contains `having` and none of `without`."""
    for key, value in record.items():
        name = key.lower()
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and having in name and not any(w in name for w in without):
            return float(value)
    return None


def rates(record: dict[str, Any]) -> tuple[float | None, float | None]:
    """A row's requests per second, and its baseline's (None where it has none)."""
    others = ("baseline", "direct", "ratio")
    rate = number(record, having="rps", without=others)
    if rate is None:
        rate = number(record, having="per_s", without=others)
    baseline = None
    for who in ("baseline", "direct"):
        for unit in ("rps", "per_s"):
            for key, value in record.items():
                name = key.lower()
                if baseline is None and who in name and unit in name:
                    baseline = float(value) if isinstance(value, int | float) else None
    if baseline is None:
        baseline = number(record, having="baseline", without=("us", "ratio", "ms"))
    return rate, baseline


CASCADE_GOALS = {1: "<= 40 us/request", 16: ">= 20,000 rps"}


def cascade_rows(text: str, data: Any | None) -> list[Row]:
    rows = []
    found = list(records(data)) if data is not None else []
    if not found:  # the text output: "concurrency=1 requests=20000 rps=13,000 per_request_us=77.0"
        pattern = r"concurrency=(\d+).*?rps=([\d,.]+)\s+per_request_us=([\d.]+)"
        for concurrency, rps, us in re.findall(pattern, text):
            found.append(
                {"concurrency": int(concurrency), "rps": float(rps.replace(",", "")), "us": us}
            )
    for record in found:
        concurrency = int(record["concurrency"])
        rps, baseline = rates(record)
        if rps is None:
            continue
        rows.append(
            Row(
                "cascade_throughput",
                f"requests/s, concurrency {concurrency} ({1e6 / rps:.1f} us/request)",
                rps,
                baseline,
                CASCADE_GOALS.get(concurrency, ""),
            )
        )
    return rows


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


def scenario_rows(text: str, data: Any | None) -> list[Row]:
    """The simulator's rate next to bare trio tasks sleeping the same schedule (its `--json`);
    from its text where it has no `--json` (the rate alone)."""
    measure = "flagship: simulated requests/wall s (baseline: bare trio tasks)"
    if isinstance(data, dict) and "simulated_rps" in data:
        baseline = data.get("baseline", {}).get("simulated_rps")
        return [Row("scenario_throughput", measure, data["simulated_rps"], baseline, ">= 12,000")]
    match = re.search(r"best: ([\d,.]+) simulated requests per wall second", text)
    if match is None:
        return []
    rate = float(match.group(1).replace(",", ""))
    return [Row("scenario_throughput", measure, rate, None, ">= 12,000")]


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
    rows = cascade_rows(*run("cascade_throughput.py", *cascade_args))
    _, peer = run("peer_overhead.py", *peer_args)
    if peer is None:
        raise SystemExit("peer_overhead.py wrote no JSON")
    rows += peer_rows(peer)
    rows += scenario_rows(*run("scenario_throughput.py", str(ROOT / "scenarios" / "flagship.toml")))
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
