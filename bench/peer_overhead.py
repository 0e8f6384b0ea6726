"""What the runtime adds on top of httpx, against a peer that is never the bottleneck.

One loopback server in its own process answers every request with the same OpenAI chat
completion: nginx when it is installed (a generated config, one worker, keep-alive on, no
access log: it serves tens of thousands of requests per second, far beyond one Python client),
otherwise the project's fake provider server (`uptax fake-providers`, itself the bottleneck at a
few hundred requests per second, so the ratio then says little). At each concurrency, rounds
alternate one `httpx.AsyncClient` asked directly (keep-alive, a pool as big as the
concurrency's largest) and `rt.complete` with one OpenAI-kind provider on the same server; the
median round of each is shown. Real clock, real sockets. Usage:

    .venv/bin/python bench/peer_overhead.py [--seconds 2] [--rounds 3]
        [--concurrency 1 8 32 64] [--server auto|nginx|fake] [--json OUT]

`--json OUT` also writes the table as JSON (`-` for standard output, the table then going to
standard error).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import httpx
import trio

import runtime
from runtime.embed import open_runtime
from runtime.logs import configure_logging

KEY = "sk-bench-0123456789abcdef"
PROMPT = "what is the VAT rate for books"
MODEL = "gpt-4o-mini"
#: What nginx answers to every request: an OpenAI chat completion of 11 words.
REPLY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1765000000,
    "model": MODEL,
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "echo: the VAT rate for books is zero here",
            },
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18},
}

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location / {{ return 200 '{reply}'; }}
    }}
}}
"""


# -- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@contextlib.contextmanager
def nginx_server(nginx: str) -> Iterator[tuple[str, str]]:
    """nginx on a free loopback port with a generated config: its base URL and description."""
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
    with tempfile.TemporaryDirectory(prefix="peer-overhead-nginx-") as prefix:
        port = free_port()
        conf = Path(prefix) / "nginx.conf"
        reply = json.dumps(REPLY, separators=(",", ":"))
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, reply=reply))
        process = subprocess.Popen(
            [nginx, "-p", prefix, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, process)
            yield f"http://127.0.0.1:{port}/v1", f"{version.split(': ')[-1]}, 1 worker"
        finally:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def fake_server() -> Iterator[tuple[str, str]]:
    """The project's fake OpenAI server (`uptax fake-providers`): its base URL and description."""
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "fake-providers", "--providers", "openai:openai"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = ""
        for line in process.stdout:
            if line.startswith("provider=openai"):
                base_url = line.split("base_url=")[1].strip()
                break
        if not base_url:
            raise SystemExit("the fake provider server did not start")
        # Keep draining the server's output so its pipe never fills up.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield base_url, "uptax fake-providers (the bottleneck: ratios say little)"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)


def open_server(choice: str) -> contextlib.AbstractContextManager[tuple[str, str]]:
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if choice == "nginx" and nginx is None:
        raise SystemExit("nginx is not installed (apt-get install -y nginx)")
    if choice != "fake" and nginx is not None:
        return nginx_server(nginx)
    return fake_server()


# -- the load ---------------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(
    call: Callable[[], Awaitable[None]], concurrency: int, seconds: float
) -> tuple[float, float, float, float]:
    """Requests per second, p50 and p99 (ms), and this process's CPU per request (µs, user and
    system: less at the mercy of the machine's other load than the clock) of `concurrency`
    workers calling for `seconds`."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    start, cpu = time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    rate = len(latencies) / (time.perf_counter() - start)
    cpu_us = (time.process_time() - cpu) / len(latencies) * 1e6
    return rate, percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3, cpu_us


def runtime_config(base_url: str, max_in_flight: int) -> runtime.Config:
    return runtime.parse_config(
        {
            "providers": [
                {
                    "name": "openai",
                    "kind": "openai",
                    "models": [MODEL],
                    "base_url": base_url,
                    "max_in_flight": max_in_flight,
                }
            ],
            "levels": [{"name": "primary", "providers": ["openai"], "timeout_s": 30}],
        }
    )


async def measure(
    base_url: str, concurrencies: list[int], seconds: float, rounds: int, out: TextIO
) -> list[dict[str, float]]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 32}
    headers = {"authorization": f"Bearer {KEY}"}
    pool = max(concurrencies)
    request = runtime.Request(prompt=PROMPT, max_tokens=32)
    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    rows: list[dict[str, float]] = []
    async with (
        httpx.AsyncClient(base_url=base_url, limits=limits) as client,
        open_runtime(runtime_config(base_url, pool)) as rt,
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
        print("| concurrency | direct rps | p50 ms | p99 ms | cpu µs/req | runtime rps | p50 ms "
              "| p99 ms | cpu µs/req | ratio |", file=out)  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", file=out)
        for concurrency in concurrencies:
            direct_rounds, runtime_rounds = [], []
            for _ in range(rounds):
                direct_rounds.append(await drive(direct, concurrency, seconds))
                runtime_rounds.append(await drive(through, concurrency, seconds))
            d = sorted(direct_rounds)[len(direct_rounds) // 2]
            r = sorted(runtime_rounds)[len(runtime_rounds) // 2]
            row = {
                "concurrency": concurrency,
                "direct_rps": round(d[0], 1),
                "direct_p50_ms": round(d[1], 3),
                "direct_p99_ms": round(d[2], 3),
                "direct_cpu_us": round(d[3], 1),
                "runtime_rps": round(r[0], 1),
                "runtime_p50_ms": round(r[1], 3),
                "runtime_p99_ms": round(r[2], 3),
                "runtime_cpu_us": round(r[3], 1),
                "ratio": round(r[0] / d[0], 3),
            }
            rows.append(row)
            print(
                f"| {concurrency} | {d[0]:,.0f} | {d[1]:.2f} | {d[2]:.2f} | {d[3]:,.0f} "
                f"| {r[0]:,.0f} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:,.0f} | {row['ratio']:.2f} |",
                file=out,
                flush=True,
            )
    return rows


def machine(server: str) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), cpu
        )
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "trio": trio.__version__,
        "httpx": httpx.__version__,
        "server": server,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--server", choices=["auto", "nginx", "fake"], default="auto")
    parser.add_argument(
        "--json", metavar="OUT", help="also write the results as JSON (- for stdout)"
    )
    args = parser.parse_args(argv)
    os.environ["OPENAI_API_KEY"] = KEY
    configure_logging("error")  # a brownout alert under load is not news here
    out = sys.stderr if args.json == "-" else sys.stdout
    with open_server(args.server) as (base_url, server):
        info = machine(server)
        print(f"# {info['date']}: {info['cpu']}, {info['cpus']} cpu, load {info['load_average']}, "
              f"python {info['python']}, trio {info['trio']}, httpx {info['httpx']}; "
              f"server: {server}, in its own process", file=out)  # fmt: skip
        rows = trio.run(measure, base_url, args.concurrency, args.seconds, args.rounds, out)
    if args.json:
        result = {"benchmark": "peer_overhead", "machine": info, "rows": rows}
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
