"""The evidence for the adaptive mechanisms: each one compared on the library scenarios where it
should help, and on the flagship and the soak, where it must do no harm.

    .venv/bin/python bench/intelligence.py [--seeds 1-10] [--only predict recovery cost]
        [--soak-seeds 1-5] [--json DIR]

Each table is `uptax scenario compare FILE --seeds ...` on a library file's own `[[variants]]`
(virtual time, deterministic: the same command prints the same tables). The cost tier is a
request's, set by the load mix, which a variant cannot change: its table puts the flagship as
the library has it (every mix entry asking for `cost = "low"`) next to the same file with the
tiers taken out. The README's "Intelligence, measured" tables come from this script.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.logs import configure_logging
from runtime.scenario.compare import Comparison, compare, variants_to_compare
from runtime.scenario.compare_terminal import render_comparison
from runtime.scenario.format import BASELINE, Scenario, Variant, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"

#: Each mechanism's scenarios: where it should win, then where it must do no harm.
MECHANISMS: dict[str, tuple[str, ...]] = {
    "predict": ("ramping-failure", "flagship", "soak"),
    "recovery": ("recovery",),
    "cost": ("flagship", "soak"),
}


def _seeds(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def _variant_table(name: str, seeds: Sequence[int]) -> Comparison:
    """The file's own variants, as `uptax scenario compare` runs them."""
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    return compare(scenario, variants_to_compare(scenario), seeds)


def _without_tiers(path: Path) -> Scenario:
    """The same scenario with no cost tier on any mix entry (and no variants)."""
    data: dict[str, Any] = copy.deepcopy(tomllib.loads(path.read_text()))
    for entry in data["load"].get("mix", ()):
        entry.pop("cost", None)
    data.pop("variants", None)
    return parse_scenario(data, source=str(path))


def _tier_table(name: str, seeds: Sequence[int]) -> Comparison:
    """The scenario's own config with its mix's cost tiers, and without them."""
    path = SCENARIOS / f"{name}.toml"
    tiered = load_scenario(path)
    plain = _without_tiers(path)
    own = Variant(BASELINE, tiered.config, tiered.http_kinds, "the file's mix", tiered.path)
    bare = Variant("no-tier", plain.config, plain.http_kinds, "no cost tier asked", plain.path)
    with_tiers = compare(tiered, [own], seeds).results[0]
    without = compare(plain, [bare], seeds).results[0]
    return Comparison(tiered, tuple(seeds), (with_tiers, without))


def _print(title: str, comparison: Comparison, json_dir: Path | None, key: str) -> None:
    print(f"## {title}\n")
    print(render_comparison(comparison.data), flush=True)
    if json_dir is not None:
        json_dir.mkdir(parents=True, exist_ok=True)
        (json_dir / f"{key}.json").write_text(comparison.to_json())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/intelligence.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seeds", type=_seeds, default=_seeds("1-10"))
    parser.add_argument("--soak-seeds", type=_seeds, default=_seeds("1-5"), help="an hour each")
    parser.add_argument("--only", nargs="+", choices=sorted(MECHANISMS), default=sorted(MECHANISMS))
    parser.add_argument("--json", type=Path, metavar="DIR", help="also write each table's JSON")
    args = parser.parse_args(argv)
    configure_logging("error")  # the runs' warnings would bury the tables
    for mechanism in args.only:
        for name in MECHANISMS[mechanism]:
            seeds = args.soak_seeds if name == "soak" else args.seeds
            started = time.perf_counter()
            table = (_tier_table if mechanism == "cost" else _variant_table)(name, seeds)
            _print(f"{mechanism}: {name}", table, args.json, f"{mechanism}-{name}")
            print(f"({time.perf_counter() - started:.0f} s wall)\n", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
