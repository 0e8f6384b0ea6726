"""What the runtime adds on top of httpx: the same loopback fake OpenAI server (in its own
process, `uptax fake-providers`), asked directly with one `httpx.AsyncClient` and through
`rt.complete` (ranking, breaker, bulkhead, adapter, classification, stats), at several
concurrencies, alternating the two in rounds and reporting the median round. Real clock, real
sockets. Usage:

    .venv/bin/python bench/http_overhead.py [--seconds S] [--rounds R] [--concurrency 1 8 32 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable

import httpx
import trio

import runtime
from runtime.embed import open_runtime

KEY = "sk-bench-0123456789abcdef"
PROMPT = "what is the VAT rate for books"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(
    call: Callable[[], Awaitable[None]], concurrency: int, seconds: float
) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 (ms) of `concurrency` workers calling for `seconds`."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    rate = len(latencies) / (time.perf_counter() - start)
    return rate, percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3


async def measure(base_url: str, concurrencies: list[int], seconds: float, rounds: int) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 32,
    }
    headers = {"authorization": f"Bearer {KEY}"}
    config = runtime.parse_config(
        {
            "providers": [
                {
                    "name": "openai",
                    "kind": "openai",
                    "models": ["gpt-4o-mini"],
                    "base_url": base_url,
                    "max_in_flight": 64,
                }
            ],
            "levels": [{"name": "primary", "providers": ["openai"], "timeout_s": 30}],
        }
    )
    request = runtime.Request(prompt=PROMPT, max_tokens=32)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        httpx.AsyncClient(base_url=base_url, limits=limits) as client,
        open_runtime(config) as rt,
    ):

        async def direct() -> None:
            response = await client.post("/chat/completions", json=body, headers=headers)
            response.raise_for_status()
            response.json()

        async def through() -> None:
            await rt.complete(request)

        for _ in range(20):  # warm both pools
            await direct()
            await through()
        print("| concurrency | direct rps | p50 ms | p99 ms | runtime rps | p50 ms | p99 ms |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for concurrency in concurrencies:
            direct_rounds, runtime_rounds = [], []
            for _ in range(rounds):
                direct_rounds.append(await drive(direct, concurrency, seconds))
                runtime_rounds.append(await drive(through, concurrency, seconds))
            d = sorted(direct_rounds)[len(direct_rounds) // 2]
            r = sorted(runtime_rounds)[len(runtime_rounds) // 2]
            print(
                f"| {concurrency} | {d[0]:,.0f} | {d[1]:.2f} | {d[2]:.2f} "
                f"| {r[0]:,.0f} | {r[1]:.2f} | {r[2]:.2f} |"
            )
            assert statistics.fmean(x[0] for x in runtime_rounds) > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = KEY
    server = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "fake-providers", "--providers", "openai:openai"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = ""
        for line in server.stdout:
            if line.startswith("provider=openai"):
                base_url = line.split("base_url=")[1].strip()
                break
        # Keep draining the server's output so its pipe never fills up.
        threading.Thread(target=server.stdout.read, daemon=True).start()
        print(
            f"# {platform.machine()} {os.cpu_count()} cpu, python {platform.python_version()}, "
            f"trio {trio.__version__}, httpx {httpx.__version__}; server in its own process"
        )
        trio.run(measure, base_url, args.concurrency, args.seconds, args.rounds)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
