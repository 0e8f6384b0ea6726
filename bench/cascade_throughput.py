"""Requests per second through the whole cascade against a zero-latency simulated provider.

What a request costs in-process: ranking, admission, the provider call bookkeeping, the reply,
stats and the cache. Runs on trio's real clock. Beside each measurement, in the same run, the
baseline: the same simulated adapter called directly (no runtime), at the same concurrency; the
ratio is the runtime's rate over it. Usage:

    .venv/bin/python bench/cascade_throughput.py [--requests N] [--concurrency C ...] [--json OUT]

`--json OUT` writes one object (`-` for stdout): per concurrency the runtime's and the
baseline's requests per second and microseconds per request, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

import runtime
from actors.adapters.simulated import SimulatedAdapter, SimulatedBackend
from runtime.embed import open_runtime

CONFIG = {
    "providers": [
        {"name": "fast", "kind": "simulated", "models": ["gpt-4o"], "latency_ms": 0, "seed": 1},
        {
            "name": "backup",
            "kind": "simulated",
            "models": ["gemini-pro"],
            "latency_ms": 0,
            "seed": 2,
        },
        {"name": "cache", "kind": "cache"},
    ],
    "levels": [
        {"name": "primary", "providers": ["fast"], "timeout_s": 30},
        {"name": "secondary", "providers": ["backup"], "timeout_s": 45},
        {"name": "last_resort", "providers": ["cache"], "timeout_s": 5},
    ],
    "models": {
        "gpt-4o": {"input_usd_per_mtok": 2.5, "output_usd_per_mtok": 10.0},
        "gemini-pro": {"input_usd_per_mtok": 1.25, "output_usd_per_mtok": 5.0},
    },
}


REQUEST = runtime.Request(prompt="What is the VAT rate for books?", max_tokens=64)


async def _rate(call: Callable[[], Awaitable[object]], requests: int, concurrency: int) -> float:
    """Requests per second of `call` from `concurrency` tasks, after a warm-up."""
    for _ in range(200):
        await call()
    per_worker = requests // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    elapsed = time.perf_counter() - start
    return per_worker * concurrency / elapsed


async def measure(requests: int, concurrency: int) -> float:
    """Through `rt.complete`: the whole runtime."""
    async with open_runtime(runtime.parse_config(CONFIG)) as rt:
        return await _rate(lambda: rt.complete(REQUEST), requests, concurrency)


async def measure_direct(requests: int, concurrency: int) -> float:
    """The primary's simulated adapter called directly: what the runtime is measured against."""
    config = runtime.parse_config(CONFIG)
    adapter = SimulatedAdapter(SimulatedBackend(config.provider("fast")))
    return await _rate(lambda: adapter.complete(REQUEST, "gpt-4o"), requests, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 256])
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON (- for stdout)")
    args = parser.parse_args()
    machine = f"{platform.processor() or platform.machine()} python {platform.python_version()}"
    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"# {machine}", file=out)
    rows: list[dict[str, Any]] = []
    for concurrency in args.concurrency:
        direct = trio.run(measure_direct, args.requests, concurrency)
        rate = trio.run(measure, args.requests, concurrency)
        row = {
            "concurrency": concurrency,
            "rps": round(rate),
            "per_request_us": round(1e6 / rate, 1),
            "baseline_rps": round(direct),
            "baseline_per_request_us": round(1e6 / direct, 1),
            "ratio": round(rate / direct, 3),
        }
        rows.append(row)
        print(
            f"concurrency={concurrency:<4} requests={args.requests} rps={rate:,.0f} "
            f"per_request_us={1e6 / rate:.1f} baseline_rps={direct:,.0f} "
            f"baseline_us={1e6 / direct:.1f} ratio={rate / direct:.3f}",
            file=out,
        )
    if args.json:
        data = {"bench": "cascade_throughput", "machine": machine, "requests": args.requests}
        text = json.dumps({**data, "results": rows}, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w", encoding="utf-8") as file:
                file.write(text + "\n")


if __name__ == "__main__":
    main()
