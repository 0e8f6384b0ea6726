"""A comparison in a terminal: the variants side by side, the better value of each row marked,
in at most 100 columns (more variants than fit go on to a further table)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

WIDTH = 100
#: The mark of the better value in a row (and, on a terminal, bold green).
BEST = "*"
_BOLD_GREEN = "\x1b[1;32m"
_RESET = "\x1b[0m"


def format_value(unit: str, value: float | None) -> str:
    """A value as the table shows it; a time that never came reads "never"."""
    if value is None:
        return "never" if unit == "s" else "-"
    if unit == "pct":
        return f"{100 * value:.2f}%"
    if unit == "ms":
        return f"{value:,.1f}"
    if unit == "s":
        return f"{value:,.2f}"
    if unit == "usd":
        return f"${value:,.4f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def range_value(unit: str, value: float | None) -> str:
    """An end of a range across seeds: as `format_value`, a digit shorter and without the unit,
    so three variants with their ranges fit in 100 columns."""
    if value is None or unit == "count":
        return format_value(unit, value)
    if unit == "pct":
        return f"{100 * value:.1f}"
    if unit == "ms":
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value:,.1f}"
    return f"{value:,.3f}"


def seed_list(seeds: Sequence[int]) -> str:
    """1,2,3,4,7 as "1-4,7"."""
    parts: list[str] = []
    start = previous = None
    for seed in [*seeds, None]:
        if seed is not None and previous is not None and seed == previous + 1:
            previous = seed
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = seed
    return ",".join(parts)


def cell(unit: str, summary: Mapping[str, float | None], several: bool) -> str:
    """A value, or with several seeds the median and its range (when the seeds differ)."""
    median = format_value(unit, summary["median"])
    if not several:
        return median
    if summary["min"] == summary["max"]:
        return median
    low, high = range_value(unit, summary["min"]), range_value(unit, summary["max"])
    return f"{median} ({low}..{high})"


def _rows(data: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, bool]]]]:
    """(label, [(cell, is the better value)] per variant) for each row."""
    several = len(data["seeds"]) > 1
    variants = data["variants"]
    rows = []
    for metric in data["metrics"]:
        key, best = metric["key"], data["best"][metric["key"]]
        rows.append(
            (
                metric["label"],
                [
                    (cell(metric["unit"], v["summary"][key], several), v["name"] in best)
                    for v in variants
                ],
            )
        )
    seeds = len(data["seeds"])
    held = [
        (f"{v['passed_seeds']}/{seeds} seeds" if several else _held(v), False) for v in variants
    ]
    rows.append(("expectations", held))
    return rows


def _held(variant: Mapping[str, Any]) -> str:
    failed = variant["runs"][0]["failed"]
    return f"{len(failed)} failed" if failed else "all held"


def _chunks(widths: Sequence[int], first: int) -> list[list[int]]:
    """Columns in groups that fit in WIDTH next to the label column."""
    chunks: list[list[int]] = [[]]
    used = 2 + first
    for column, width in enumerate(widths):
        if chunks[-1] and used + 2 + width > WIDTH:
            chunks.append([])
            used = 2 + first
        chunks[-1].append(column)
        used += 2 + width
    return chunks


def render_table(data: Mapping[str, Any], *, color: bool = False) -> list[str]:
    """The side-by-side table: a row per metric, a column per variant."""
    rows = _rows(data)
    names = [v["name"] for v in data["variants"]]
    first = max(len(label) for label, _ in [("", []), *rows])
    # Each cell has a trailing mark place, so values stay aligned whether marked or not.
    widths = [
        max(len(name) + 1, *(len(cells[c][0]) + 1 for _, cells in rows))
        for c, name in enumerate(names)
    ]
    lines: list[str] = []
    for chunk in _chunks(widths, first):
        if lines:
            lines.append("")
        head = "  " + " " * first + "".join(f"  {names[c].rjust(widths[c] - 1)} " for c in chunk)
        lines.append(head.rstrip())
        lines.append("  " + "-" * first + "".join("  " + "-" * widths[c] for c in chunk))
        for label, cells in rows:
            parts = []
            for c in chunk:
                text, best = cells[c]
                padded = text.rjust(widths[c] - 1) + (BEST if best else " ")
                if best and color:
                    padded = f"{_BOLD_GREEN}{padded}{_RESET}"
                parts.append("  " + padded)
            lines.append(("  " + label.ljust(first) + "".join(parts)).rstrip())
    return lines


def render_comparison(data: Mapping[str, Any], *, color: bool = False) -> str:
    """The whole comparison: what ran, the variants, the table, what the rows mean."""
    info = data["scenario"]
    seeds = data["seeds"]
    several = len(seeds) > 1
    lines = [
        f"compare {info['name']}  {'seeds' if several else 'seed'} {seed_list(seeds)}  "
        f"mode={info['mode']}  {info['duration_s']:g}s at {info['rps']:g} rps  "
        f"{len(data['variants'])} variants",
    ]
    if info["description"]:
        lines += _wrapped(info["description"], "  ")
    width = max(len(v["name"]) for v in data["variants"])
    for variant in data["variants"]:
        about, source = variant["description"], variant["source"]
        if source != info["file"]:
            about = f"{about} ({source})" if about else source
        lines += _wrapped(f"{variant['name'].ljust(width)}  {about}", "  ", "    ")
    lines += ["", *render_table(data, color=color), ""]
    notes = [f"{BEST} the better value, where lower or higher is clearly better"]
    if several:
        notes.append(f"each value: the median across {len(seeds)} seeds (min..max)")
    definitions = data["definitions"]
    notes += [
        f"{m['label']}: {definitions[m['key']]}" for m in data["metrics"] if m["key"] in definitions
    ]
    for note in notes:
        lines += _wrapped(note, "  ", "    ")
    return "\n".join(lines) + "\n"


def _wrapped(text: str, indent: str, later: str | None = None) -> list[str]:
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=later if later is not None else indent,
        break_on_hyphens=False,
    )
