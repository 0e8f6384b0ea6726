"""Requests per second through the whole cascade against a zero-latency simulated provider.

What a request costs in-process: ranking, admission, the provider call bookkeeping, the reply,
stats and the cache. Runs on trio's real clock. Usage:

    .venv/bin/python bench/cascade_throughput.py [--requests N] [--concurrency C ...]
"""

from __future__ import annotations

import argparse
import platform
import time

import trio

import runtime
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


async def measure(requests: int, concurrency: int) -> float:
    config = runtime.parse_config(CONFIG)
    request = runtime.Request(prompt="What is the VAT rate for books?", max_tokens=64)
    async with open_runtime(config) as rt:
        for _ in range(200):  # warm up
            await rt.complete(request)
        per_worker = requests // concurrency

        async def worker() -> None:
            for _ in range(per_worker):
                await rt.complete(request)

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        elapsed = time.perf_counter() - start
    return per_worker * concurrency / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 256])
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()} python {platform.python_version()}")
    for concurrency in args.concurrency:
        rate = trio.run(measure, args.requests, concurrency)
        print(
            f"concurrency={concurrency:<4} requests={args.requests} "
            f"rps={rate:,.0f} per_request_us={1e6 / rate:.1f}"
        )


if __name__ == "__main__":
    main()
