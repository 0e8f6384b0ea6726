"""A brownout of a level's only provider, in real time: the p50 healthy and during it, by policy.

    .venv/bin/python bench/brownout.py [--brownout-s 20] [--rps 20] [--delay-s 2]
        [--policy off demote hedge]

Real time, on loopback: the fake provider server serves a primary (OpenAI protocol, alone in
the first level) and a secondary (Anthropic protocol, the second level), as bench/recovery.py
does (`runtime.testing.outage.outage_config`). Open-loop traffic at `--rps` through a runtime
for `--healthy-s`, then every primary call takes `--delay-s` more for `--brownout-s`, then
`--settle-s` more of healthy traffic. Once per `[[levels]] brownout` policy of the primary
level. Prints, per policy: the p50 of the requests that arrived while healthy and of those that
arrived during the brownout, the brownout's p95, the share of the brownout's requests the
secondary served, and failed requests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import attrs
import trio

from actors.config import BROWNOUT_POLICIES, BrownoutPolicy
from actors.faults import Fault, FaultKind
from actors.messages import Request
from actors.window import nearest_rank
from runtime.embed import Runtime, open_runtime
from runtime.logs import configure_logging
from runtime.testing.outage import KEY_ENV, PRIMARY, SECONDARY, outage_config
from runtime.testing.server import open_fake_provider_server


@attrs.define
class _Traffic:
    """Each request's arrival (from the start), latency and who served it."""

    rt: Runtime
    seen: list[tuple[float, float, str]] = attrs.Factory(list)
    failed: int = 0

    async def one(self, number: int, start: float) -> None:
        arrived = trio.current_time()
        request = Request(prompt=f"request {number} about VAT", max_tokens=16, deadline_s=30)
        try:
            reply = await self.rt.complete(request)
        except Exception:
            self.failed += 1
            return
        latency_ms = (trio.current_time() - arrived) * 1000.0
        self.seen.append((arrived - start, latency_ms, reply.provider))


async def measure(policy: BrownoutPolicy, args: argparse.Namespace) -> str:
    """One run under `policy`: its row of the table."""
    os.environ.setdefault(KEY_ENV, "fake-key-for-the-fake-server")
    providers = {PRIMARY: "openai", SECONDARY: "anthropic"}
    async with open_fake_provider_server(providers) as server:
        config = outage_config(server, {})
        levels = tuple(
            attrs.evolve(level, brownout=policy) if level.name == "primary" else level
            for level in config.levels
        )
        async with open_runtime(attrs.evolve(config, levels=levels)) as rt:
            traffic = _Traffic(rt)
            down, up = args.healthy_s, args.healthy_s + args.brownout_s
            end = up + args.settle_s
            async with trio.open_nursery() as nursery:
                start = trio.current_time()
                sent = 0
                injected = healed = False
                while (at := sent / args.rps) < end:
                    if not injected and at >= down:
                        fault = Fault(FaultKind.LATENCY, delay_s=args.delay_s)
                        server.target(PRIMARY).inject(fault)
                        injected = True
                    if not healed and at >= up:
                        server.heal(PRIMARY)
                        healed = True
                    await trio.sleep_until(start + at)
                    nursery.start_soon(traffic.one, sent, start)
                    sent += 1
    healthy = sorted(ms for at, ms, _ in traffic.seen if at < down)
    during = [(ms, who) for at, ms, who in traffic.seen if down <= at < up]
    slow = sorted(ms for ms, _ in during)
    moved = sum(1 for _, who in during if who == SECONDARY) / len(during) if during else 0.0
    cells = [
        policy,
        f"{statistics.median(healthy):.1f}",
        f"{statistics.median(slow):.1f}",
        f"{nearest_rank(slow, 0.95):.1f}",
        f"{moved:.0%}",
        str(traffic.failed),
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/brownout.py", description=__doc__.split("\n")[0])
    parser.add_argument("--healthy-s", type=float, default=5.0)
    parser.add_argument("--brownout-s", type=float, default=20.0)
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--delay-s", type=float, default=2.0, help="added to each primary call")
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument(
        "--policy", nargs="+", default=list(BROWNOUT_POLICIES), choices=BROWNOUT_POLICIES
    )
    args = parser.parse_args(argv)
    configure_logging("error")
    print(
        f"primary +{args.delay_s:g} s a call for {args.brownout_s:g} s under {args.rps:g} "
        "requests per second\n"
    )
    print(
        "| policy | healthy p50 ms | brownout p50 ms | brownout p95 ms "
        "| brownout served by secondary | failed requests |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for policy in args.policy:
        print(trio.run(measure, policy, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
