"""Where one gateway request's CPU goes: the gateway under load, profiled by py-spy, or counted by
callgrind (instructions per request: unlike wall or CPU time, the machine's other load does not
change it, so two versions can be compared on a shared machine).

The same processes as `gateway_throughput.py`: `uptax fake-providers` with one OpenAI-kind
provider, and `uptax serve` pointing at it (under `valgrind --tool=callgrind` for `--callgrind`).
The load is one client process in this script, unstreamed unless `--stream`.

    .venv/bin/python bench/gateway_profile.py --py-spy OUT.txt [--seconds 20] [--concurrency 8]
    .venv/bin/python bench/gateway_profile.py --callgrind OUT.cg [--requests 400]

`--py-spy` writes py-spy's collapsed stacks to OUT.txt and prints the top functions by own and
by total samples; `--callgrind` prints instructions per request (counted only while the
measured requests run, after a warm-up) and leaves the profile in OUT.cg for
`callgrind_annotate`.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).parent))

from gateway_throughput import Target, ask, new_client, servers

#: Requests before measuring: connections open, caches warm, every code path seen once.
WARM_UP = 200


async def drive(url: str, concurrency: int, stream: bool, count: int, seconds: float) -> int:
    """`count` requests (or as many as fit in `seconds`) from `concurrency` clients: how many."""
    done = 0
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def one_client(client: httpx.AsyncClient) -> None:
        nonlocal done
        while done < count and time.perf_counter() < stop:
            done += 1
            await ask(client, next(counter), stream)

    async with new_client(url, concurrency) as client, trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(one_client, client)
    return done


def top(stacks: Path, limit: int = 25) -> str:
    """The functions with the most own samples and the most total samples, from collapsed
    stacks (`frame;frame;... count` per line)."""
    own: collections.Counter[str] = collections.Counter()
    by_package: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in stacks.read_text().splitlines():
        path, _, count = line.rpartition(" ")
        n = int(count)
        frames = [re.sub(r" \(/[^)]*/(site-packages/)?", " (", f) for f in path.split(";")]
        samples += n
        own[frames[-1]] += n
        by_package[_package(frames[-1])] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{samples} samples; own, by package:"]
    lines += [f"{n / samples:6.1%}  {name}" for name, n in by_package.most_common()]
    lines.append("own, by function:")
    lines += [f"{n / samples:6.1%}  {frame}" for frame, n in own.most_common(limit)]
    lines.append("total:")
    lines += [f"{n / samples:6.1%}  {frame}" for frame, n in total.most_common(limit)]
    return "\n".join(lines)


def _package(frame: str) -> str:
    """The package of a frame (`function (package/module.py:line)`): its file's first folder,
    the socket calls apart (their samples are the kernel's send and receive)."""
    where = frame.rpartition("(")[2]
    if "_nonblocking_helper" in frame:
        return "socket syscalls (trio's send/recv)"
    if "/" not in where:
        return "python itself"
    return where.split("/")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--py-spy", metavar="OUT", help="collapsed stacks to OUT")
    what.add_argument("--callgrind", metavar="OUT", help="callgrind profile to OUT")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--seconds", type=float, default=20.0, help="py-spy: load seconds")
    parser.add_argument("--requests", type=int, default=400, help="callgrind: requests counted")
    args = parser.parse_args()
    wrap: list[str] = []
    if args.callgrind:
        valgrind = shutil.which("valgrind") or "valgrind"
        wrap = [valgrind, "--tool=callgrind", "--instr-atstart=no"]
        wrap.append(f"--callgrind-out-file={args.callgrind}")
    with servers(Path(tempfile.mkdtemp()), wrap) as (_, gateway):
        trio.run(drive, gateway.url, args.concurrency, args.stream, WARM_UP, 600.0)
        if args.py_spy:
            _py_spy(gateway, args)
        else:
            _callgrind(gateway, args)
    return 0


def _py_spy(gateway: Target, args: argparse.Namespace) -> None:
    record = ["py-spy", "record", "-p", str(gateway.pid), "-f", "raw", "-o", args.py_spy]
    spy = subprocess.Popen(
        [*record, "-r", "200", "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    done = trio.run(drive, gateway.url, args.concurrency, args.stream, 10**9, args.seconds)
    spy.send_signal(2)
    spy.wait(timeout=30)
    print(f"{done} requests in {args.seconds:g} s")
    print(top(Path(args.py_spy)))


def _callgrind(gateway: Target, args: argparse.Namespace) -> None:
    control = shutil.which("callgrind_control") or "callgrind_control"
    subprocess.run([control, "-i", "on", str(gateway.pid)], check=True, capture_output=True)
    done = trio.run(drive, gateway.url, args.concurrency, args.stream, args.requests, 3600.0)
    subprocess.run([control, "-i", "off", str(gateway.pid)], check=True, capture_output=True)
    subprocess.run([control, "-d", str(gateway.pid)], check=True, capture_output=True)
    time.sleep(1.0)
    out = Path(args.callgrind)
    counted = sum(_totals(p) for p in out.parent.glob(out.name + "*"))
    print(
        f"{done} requests at concurrency {args.concurrency}: "
        f"{counted / done / 1e6:.2f} M instructions per request"
    )


def _totals(path: Path) -> int:
    """The instructions a callgrind dump counted (its `totals:` line)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
