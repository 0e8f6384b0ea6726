"""Instructions per request through the whole cascade, and per direct call of the provider's
simulated adapter, counted by valgrind's callgrind: a figure that the machine's speed and load
do not move (the rates of `cascade_throughput.py` moved 2x between two shared machines, and 2x
again on one under load), for comparing commits.

    .venv/bin/python bench/cascade_instructions.py [--requests N] [--json OUT]

Each side runs twice under callgrind, with 300 requests and with 300 + N, one after another at
concurrency 1 on `cascade_throughput.py`'s config and request; the difference over N is what
one request costs, start-up and warm-up left out. The ratio is the direct call's instructions
over the runtime's (the runtime's share, as the rate ratios are). Needs valgrind (`make bench`
installs it when it is missing); without it, says so and exits 2.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import trio
from cascade_throughput import CONFIG, REQUEST  # beside this script: on sys.path

import runtime
from actors.adapters.simulated import SimulatedAdapter, SimulatedBackend
from runtime.embed import open_runtime

WARM_UP = 300
_COLLECTED = re.compile(r"Collected : (\d+)")


async def through_runtime(requests: int) -> None:
    async with open_runtime(runtime.parse_config(CONFIG)) as rt:
        for _ in range(requests):
            await rt.complete(REQUEST)


async def direct(requests: int) -> None:
    adapter = SimulatedAdapter(SimulatedBackend(runtime.parse_config(CONFIG).provider("fast")))
    for _ in range(requests):
        await adapter.complete(REQUEST, "gpt-4o")


SIDES = {"runtime": through_runtime, "direct": direct}


def instructions(side: str, requests: int) -> int:
    """Instructions a whole process took to make `requests` requests on `side`."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--side",
        side,
        "--requests",
        str(requests),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed on {side}: {done.stderr[-2000:]}")
    return int(found.group(1))


def per_request(requests: int) -> dict[str, int]:
    """Each side's instructions per request (the four processes run side by side: what
    callgrind counts does not depend on what else runs)."""
    runs = [(side, count) for side in SIDES for count in (WARM_UP, WARM_UP + requests)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        counts = dict(zip(runs, pool.map(lambda run: instructions(*run), runs), strict=True))
    return {
        side: (counts[side, WARM_UP + requests] - counts[side, WARM_UP]) // requests
        for side in SIDES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON (- for stdout)")
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side is not None:  # the process callgrind watches
        trio.run(SIDES[args.side], args.requests)
        return
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts", file=sys.stderr)
        raise SystemExit(2)
    counts = per_request(args.requests)
    ours, theirs = counts["runtime"], counts["direct"]
    result = {
        "bench": "cascade_instructions",
        "machine": f"{platform.machine()} python {platform.python_version()}",
        "requests": args.requests,
        "runtime_instructions": ours,
        "direct_instructions": theirs,
        "ratio": round(theirs / ours, 3),
    }
    out = sys.stderr if args.json == "-" else sys.stdout
    print(
        f"instructions per request, concurrency 1: runtime {ours:,} direct {theirs:,} "
        f"ratio {theirs / ours:.3f}",
        file=out,
    )
    if args.json == "-":
        print(json.dumps(result, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
