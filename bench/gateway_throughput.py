"""What the gateway costs: requests per second and p50 / p99 latency through `uptax serve`, and
directly against the provider it forwards to, in the same run.

Each in its own process: `uptax fake-providers` (one OpenAI-kind provider on loopback), `uptax
serve --config <generated toml>` pointing an openai-kind provider at it, and the load: per
target, `--client-processes` copies of this script in load mode (httpx on trio, one task per
concurrent client, keep-alive connections), because one client process was the bottleneck
against the direct provider. At each concurrency, streamed and not, rounds alternate direct and
gateway and the median round is reported, with the gateway's throughput as a share of the
direct one and the latency it adds. Then a soak: 64 clients through the gateway for `--soak`
seconds, each reply checked against its own request; errors and lost requests (no reply of its
own) must both be 0 (the exit status says so). Real clock, real sockets.

    .venv/bin/python bench/gateway_throughput.py [--seconds S] [--rounds R] [--soak S]
        [--concurrency 1 8 32 64] [--client-processes N]

Per row, the busiest load process's CPU share (near 100 %: the load, not the server, was the
limit) and the CPU each server process spent per request.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs
import httpx
import trio

KEY = "sk-bench-0123456789abcdef"
MODEL = "gpt-4o-mini"
TIMEOUT_S = 30.0

@attrs.frozen
class Round:
    rps: float
    p50_ms: float
    p99_ms: float
    #: This client's CPU time over wall time (1.0 = one core busy).
    client_cpu: float
    #: CPU time the measured server process spent per request, in ms: what the machine's load
    #: does not change much, unlike the latencies.
    server_cpu_ms: float


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the servers, each in its own process -------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of process `pid` so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _uptax() -> list[str]:
    return [sys.executable, "-m", "runtime.cli"]


def _start(args: list[str], ready: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Start a server process; the first stdout line starting with `ready`, and keep draining."""
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(ready):
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, line.strip()
    raise RuntimeError(f"{' '.join(args)} exited before saying {ready!r}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(provider_url: str) -> str:
    return f"""
[runtime]
deadline_s = 60

[[providers]]
name = "openai"
kind = "openai"
models = ["{MODEL}"]
base_url = "{provider_url}"
max_in_flight = 256
read_timeout_s = 30.0

[[levels]]
name = "primary"
providers = ["openai"]
timeout_s = 30
"""


@attrs.frozen
class Target:
    """Where to send requests, and the process answering them there."""

    url: str
    pid: int


@contextmanager
def servers(workdir: Path, wrap: Sequence[str] = ()) -> Iterator[tuple[Target, Target]]:
    """(the provider, the gateway), each server in its own process; the gateway's command is run
    under `wrap` (a profiler) when given."""
    env = {**os.environ, "OPENAI_API_KEY": KEY}
    started: list[subprocess.Popen[str]] = []
    try:
        fake, line = _start(
            [*_uptax(), "fake-providers", "--providers", "openai:openai"], "provider=openai", env
        )
        started.append(fake)
        provider_url = line.split("base_url=")[1]
        config = workdir / "gateway.toml"
        config.write_text(_config(provider_url))
        port = _free_port()
        gateway, _ = _start(
            [*wrap, *_uptax(), "serve", "--config", str(config), "--port", str(port)],
            "uptax gateway: serving",
            env,
        )
        started.append(gateway)
        yield (
            Target(provider_url, fake.pid),
            Target(f"http://127.0.0.1:{port}/v1", gateway.pid),
        )
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)  # a gateway under a profiler takes its time


# -- one request, whole or streamed ------------------------------------------------------------


def _body(n: int, stream: bool) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"request {n} about VAT"}],
        "max_tokens": 32,
        "stream": stream,
    }


async def ask(client: httpx.AsyncClient, n: int, stream: bool) -> str:
    """The reply's text; raises on any HTTP error or a stream that does not end in [DONE]."""
    if not stream:
        response = await client.post("/chat/completions", json=_body(n, False))
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"]["content"])
    text: list[str] = []
    async with client.stream("POST", "/chat/completions", json=_body(n, True)) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                return "".join(text)
            if line.startswith("data: "):
                choices = json.loads(line[6:]).get("choices") or []
                text.extend(c["delta"].get("content") or "" for c in choices)
    raise RuntimeError("the stream ended without [DONE]")


def new_client(base_url: str, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(
        base_url=base_url,
        limits=limits,
        timeout=TIMEOUT_S,
        headers={"authorization": f"Bearer {KEY}"},
    )


# -- measuring: load processes, each with its share of the clients ----------------------------


async def load_worker(url: str, concurrency: int, stream: bool, seconds: float) -> None:
    """A load process: warm up, then for each `go` line on stdin run `concurrency` clients back
    to back for `seconds` and print one JSON line (latencies, CPU seconds)."""
    async with new_client(url, concurrency) as client:
        counter = iter(range(10**9))
        for _ in range(concurrency * 2):  # open and warm the pool
            await ask(client, next(counter), stream)
        print("ready", flush=True)
        while (await trio.to_thread.run_sync(sys.stdin.readline)).strip() == "go":
            cpu = time.process_time()
            latencies = await back_to_back(client, concurrency, stream, seconds, counter)
            cpu_s = time.process_time() - cpu
            print(json.dumps({"latencies": latencies, "cpu_s": cpu_s}), flush=True)


async def back_to_back(
    client: httpx.AsyncClient,
    concurrency: int,
    stream: bool,
    seconds: float,
    counter: Iterator[int],
) -> list[float]:
    """`concurrency` clients asking back to back for `seconds`: every request's latency."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def one_client() -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            await ask(client, next(counter), stream)
            latencies.append(time.perf_counter() - start)

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(one_client)
    return latencies


class LoadProcesses:
    """`concurrency` clients of one target, spread over up to `processes` load processes."""

    def __init__(
        self, target: Target, concurrency: int, stream: bool, seconds: float, processes: int
    ) -> None:
        self.target = target
        share, extra = divmod(concurrency, processes)
        shares = [share + (i < extra) for i in range(processes)]
        self._processes = [
            subprocess.Popen(
                [
                    *(sys.executable, __file__, "--load", target.url, "--seconds", str(seconds)),
                    *("--concurrency", str(n), *(["--stream"] if stream else [])),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in shares
            if n > 0
        ]
        for process in self._processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"

    def measure(self) -> Round:
        """One round: every load process at once; its percentiles over all their requests."""
        server_cpu, start = process_cpu_s(self.target.pid), time.perf_counter()
        for process in self._processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in self._processes:
            assert process.stdout is not None
            results.append(json.loads(process.stdout.readline()))
        wall = time.perf_counter() - start
        latencies = [x for result in results for x in result["latencies"]]
        return Round(
            rps=len(latencies) / wall,
            p50_ms=percentile(latencies, 0.5) * 1e3,
            p99_ms=percentile(latencies, 0.99) * 1e3,
            client_cpu=max(result["cpu_s"] for result in results) / wall,
            server_cpu_ms=(process_cpu_s(self.target.pid) - server_cpu) * 1e3 / len(latencies),
        )

    def close(self) -> None:
        for process in self._processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in self._processes:
            process.wait(timeout=60)


def _median(rounds: list[Round]) -> Round:
    return sorted(rounds, key=lambda r: r.rps)[len(rounds) // 2]


def compare(
    provider: Target, gateway: Target, concurrency: int, stream: bool, args: argparse.Namespace
) -> tuple[Round, Round]:
    """(direct, gateway): the median of `args.rounds` alternating rounds each."""
    direct = LoadProcesses(provider, concurrency, stream, args.seconds, args.client_processes)
    through = LoadProcesses(gateway, concurrency, stream, args.seconds, args.client_processes)
    try:
        direct_rounds, gateway_rounds = [], []
        for _ in range(args.rounds):
            direct_rounds.append(direct.measure())
            gateway_rounds.append(through.measure())
    finally:
        direct.close()
        through.close()
    return _median(direct_rounds), _median(gateway_rounds)


def row(concurrency: int, stream: bool, direct: Round, gateway: Round) -> str:
    return (
        f"| {concurrency} | {'yes' if stream else 'no'} "
        f"| {direct.rps:,.0f} | {direct.p50_ms:.2f} | {direct.p99_ms:.2f} "
        f"| {gateway.rps:,.0f} | {gateway.p50_ms:.2f} | {gateway.p99_ms:.2f} "
        f"| {gateway.rps / direct.rps:.2f} | {gateway.p50_ms - direct.p50_ms:+.2f} "
        f"| {gateway.p99_ms - direct.p99_ms:+.2f} "
        f"| {direct.server_cpu_ms:.2f} / {gateway.server_cpu_ms:.2f} "
        f"| {direct.client_cpu:.0%} / {gateway.client_cpu:.0%} |"
    )


@attrs.define
class Soak:
    sent: int = 0
    answered: int = 0
    errors: int = 0
    wrong: int = 0
    latencies: list[float] = attrs.Factory(list)
    #: The first error, to say what went wrong.
    first_error: str = ""


async def soak(gateway_url: str, concurrency: int, seconds: float) -> Soak:
    """`concurrency` clients for `seconds`, alternately streamed and not; each reply must echo
    its own request's number. Requests still unanswered `TIMEOUT_S` after the end are lost.
    One load process is enough here: the gateway, not this client, is the limit."""
    result = Soak()
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker(client: httpx.AsyncClient, index: int) -> None:
        while time.perf_counter() < stop:
            n = next(counter)
            result.sent += 1
            start = time.perf_counter()
            try:
                text = await ask(client, n, stream=(n + index) % 2 == 1)
            except (httpx.HTTPError, RuntimeError, ValueError, KeyError) as exc:
                result.errors += 1
                result.first_error = result.first_error or repr(exc)
                continue
            result.latencies.append(time.perf_counter() - start)
            result.answered += 1
            if f"request {n} " not in text:
                result.wrong += 1

    async with new_client(gateway_url, concurrency) as client:
        with trio.move_on_after(seconds + TIMEOUT_S + 5):
            async with trio.open_nursery() as nursery:
                for index in range(concurrency):
                    nursery.start_soon(worker, client, index)
    return result


# -- the run ---------------------------------------------------------------------------------


def header(args: argparse.Namespace) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"# {date}; {cpu}, {os.cpu_count()} cpu, {platform.system()} {platform.release()}; "
        f"python {platform.python_version()}, trio {trio.__version__}, httpx {httpx.__version__}; "
        f"{args.rounds} rounds of {args.seconds:g} s per cell, median round; "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )


def run(provider: Target, gateway: Target, args: argparse.Namespace) -> int:
    print(header(args), flush=True)
    print(
        "| concurrency | stream | direct rps | p50 ms | p99 ms | gateway rps | p50 ms | p99 ms "
        "| ratio | added p50 ms | added p99 ms | server cpu ms/req (provider / gateway) "
        "| busiest load process cpu (direct / gateway) |"
    )
    print("|" + " --- |" * 13, flush=True)
    for stream in (False, True):
        for concurrency in args.concurrency:
            direct, through = compare(provider, gateway, concurrency, stream, args)
            print(row(concurrency, stream, direct, through), flush=True)
    if args.soak <= 0:
        return 0
    result = trio.run(soak, gateway.url, 64, args.soak)
    lost = result.sent - result.answered - result.errors
    print(
        f"\nsoak: 64 clients through the gateway for {args.soak:g} s (half streamed): "
        f"{result.sent:,} requests, {result.answered:,} answered "
        f"({result.answered / args.soak:,.0f}/s, p50 {percentile(result.latencies, 0.5) * 1e3:.1f} "
        f"ms, p99 {percentile(result.latencies, 0.99) * 1e3:.1f} ms), "
        f"{result.errors} errors, {lost} lost, {result.wrong} answered with another's reply",
        flush=True,
    )
    if result.first_error:
        print(f"first error: {result.first_error}")
    return 0 if result.errors == lost == result.wrong == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="per cell (default 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--soak", type=float, default=60.0, help="soak seconds (0: skip)")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="load processes per target (default 2)"
    )
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # a load process
    parser.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        trio.run(load_worker, args.load, args.concurrency[0], args.stream, args.seconds)
        return 0
    with tempfile.TemporaryDirectory() as workdir, servers(Path(workdir)) as (provider, gateway):
        return run(provider, gateway, args)


if __name__ == "__main__":
    raise SystemExit(main())
