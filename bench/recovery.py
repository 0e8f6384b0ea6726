"""How fast a recovered primary is back in rotation, and how many calls its outage wasted.

    .venv/bin/python bench/recovery.py [--outage-s 20] [--rps 20] [--probe off auto completion]

Real time, on loopback: `runtime.testing.outage.measure_outage` serves a primary (OpenAI
protocol) and a secondary (Anthropic protocol) from the fake provider server, sends `--rps`
requests per second through a runtime for 2 s, takes the primary down (503) for `--outage-s`,
then up again for `--settle-s`. Once per recovery probe setting (`[providers.recovery] probe`;
"auto" is the default, a models listing for HTTP kinds). Prints, per setting: the completion
calls the primary received while down (wasted), the probes (models listings) it received, and
the seconds from its recovery to the first reply it served again and to its breaker closing.
"""

from __future__ import annotations

import argparse
import functools
import sys

import trio

from runtime.logs import configure_logging
from runtime.testing.outage import OutageResult, measure_outage


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


def _row(result: OutageResult) -> str:
    cells = [
        result.probe,
        str(result.wasted_calls),
        str(result.probes),
        _seconds(result.back_after_s),
        _seconds(result.closed_after_s),
        str(result.failed),
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/recovery.py", description=__doc__.split("\n")[0])
    parser.add_argument("--outage-s", type=float, default=20.0)
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument("--settle-s", type=float, default=20.0, help="traffic after the outage")
    parser.add_argument(
        "--probe", nargs="+", default=["off", "auto"], choices=["off", "auto", "models", "completion"]
    )
    args = parser.parse_args(argv)
    configure_logging("error")  # the breaker's warnings are the point, not news
    print(f"{args.outage_s:g} s outage of the primary under {args.rps:g} requests per second\n")
    print(
        "| probe | wasted calls | probes (listings) | back in rotation after s "
        "| breaker closed after s | failed requests |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for probe in args.probe:
        run = functools.partial(
            measure_outage,
            outage_s=args.outage_s,
            rps=args.rps,
            settle_s=args.settle_s,
            recovery={"probe": probe},
        )
        result = trio.run(run)
        print(_row(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
