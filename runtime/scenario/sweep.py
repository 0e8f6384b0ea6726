"""Run scenarios over many seeds in a few processes and say which (scenario, seed) pairs fail.

An expectation must hold for the system, not for one lucky schedule: the seed sweep is how the
library's expectations are checked (`tests/test_scenario_seeds.py`, and by hand with
`python -m runtime.scenario.sweep scenarios/brownout.toml --seeds 1-20`). Virtual runs are
CPU-bound and independent, so a process pool divides the wall time by its workers.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

import attrs

from runtime.scenario.format import load_scenario
from runtime.scenario.runner import run_scenario


@attrs.frozen
class SeedResult:
    """How one scenario came out at one seed: the checks that failed and requests lost."""

    path: str
    seed: int
    failed: tuple[str, ...]
    lost: int

    @property
    def passed(self) -> bool:
        return not self.failed and self.lost == 0


def run_one(path: str, seed: int) -> SeedResult:
    """One virtual run, reduced to what a sweep needs (small enough to cross a process pipe)."""
    report = run_scenario(load_scenario(path), seed=seed)
    failed = tuple(f"{c.name} (measured {c.measured})" for c in report.checks if not c.passed)
    return SeedResult(path, seed, failed, report.data["requests"]["lost"])


def sweep(paths: Iterable[str], seeds: Iterable[int], *, workers: int = 2) -> list[SeedResult]:
    """Every path at every seed, in that order."""
    return list(iter_sweep(paths, seeds, workers=workers))


def iter_sweep(
    paths: Iterable[str], seeds: Iterable[int], *, workers: int = 2
) -> Iterator[SeedResult]:
    """As `sweep`, yielding each result as soon as it and those before it are done."""
    jobs = [(path, seed) for path in paths for seed in seeds]
    # Fresh interpreters: a forked child would inherit the parent's trio and test state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(run_one, path, seed) for path, seed in jobs]
        for future in futures:
            yield future.result()


def parse_seeds(text: str) -> list[int]:
    """`1-20` or `1,3,7` (or a mix) as a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.scenario.sweep", description=__doc__)
    parser.add_argument("files", nargs="+", help="scenario TOML files")
    parser.add_argument("--seeds", default="1-20", type=parse_seeds, help="e.g. 1-20 or 1,4,9")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    passed = True
    for result in iter_sweep(args.files, args.seeds, workers=args.workers):
        passed = passed and result.passed
        verdict = "PASS" if result.passed else "FAIL"
        details = "; ".join(result.failed) + (f"; lost {result.lost}" if result.lost else "")
        print(f"{verdict}  {result.path}  seed {result.seed}  {details}".rstrip(), flush=True)
    return 0 if passed else 1

if __name__ == "__main__":
    sys.exit(main())
