"""A comparison as one self-contained HTML page: the table, then each variant's summary and
timeline (the first seed's run), drawn as `uptax scenario run --html` draws them."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from runtime.scenario.compare import Comparison
from runtime.scenario.compare_terminal import cell, seed_list
from runtime.scenario.html import STYLE, fault_table, render_svg, summary_table

_EXTRA_STYLE = """
td.best { color: #2b8a3e; font-weight: bold; }
dl dt { font-weight: bold; margin-top: 6px; } dl dd { margin-left: 16px; }
"""


def _a(value: Any) -> str:
    return escape(str(value), quote=True)


def _table(data: Mapping[str, Any]) -> str:
    several = len(data["seeds"]) > 1
    variants = data["variants"]
    head = "<th></th>" + "".join(f"<th>{_a(v['name'])}</th>" for v in variants)
    rows = []
    for metric in data["metrics"]:
        key, best = metric["key"], data["best"][metric["key"]]
        cells = "".join(
            f'<td class="{"best" if v["name"] in best else "value"}">'
            f"{_a(cell(metric['unit'], v['summary'][key], several))}</td>"
            for v in variants
        )
        rows.append(f"<tr><td>{_a(metric['label'])}</td>{cells}</tr>")
    seeds = len(data["seeds"])
    held = "".join(f"<td>{v['passed_seeds']}/{seeds}</td>" for v in variants)
    rows.append(f"<tr><td>seeds where every expectation held</td>{held}</tr>")
    return f'<table id="comparison"><tr>{head}</tr>{"".join(rows)}</table>'


def _definitions(data: Mapping[str, Any]) -> str:
    definitions = data["definitions"]
    items = "".join(
        f"<dt>{_a(m['label'])}</dt><dd>{_a(definitions[m['key']])}</dd>"
        for m in data["metrics"]
        if m["key"] in definitions
    )
    return f"<dl>{items}</dl>"


def _variant_section(comparison: Comparison, position: int, data: Mapping[str, Any]) -> str:
    result = comparison.results[position]
    report = result.report
    # Each timeline's ids are made the variant's own: one page holds several.
    svg = render_svg(report).replace(' id="', f' id="v{position}-')
    variant = data["variants"][position]
    return f"""<section class="variant" data-variant="{_a(variant["name"])}">
<h2>{_a(variant["name"])}</h2>
<p>{_a(variant["description"] or "-")} ({_a(variant["source"])})</p>
<p>the run at seed {report.data["scenario"]["seed"]}</p>
{summary_table(report.data)}
{svg}
{fault_table(report.data["faults"])}
</section>"""


def render_comparison_html(comparison: Comparison) -> str:
    """The whole page."""
    data = comparison.data
    info = data["scenario"]
    seeds = data["seeds"]
    median = (
        f"; each value is the median across {len(seeds)} seeds (min..max)" if len(seeds) > 1 else ""
    )
    sections = "\n".join(
        _variant_section(comparison, position, data) for position in range(len(data["variants"]))
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Compare {_a(info["name"])} (seeds {_a(seed_list(seeds))})</title>
<style>{STYLE}{_EXTRA_STYLE}</style></head>
<body>
<h1>Compare {_a(info["name"])}</h1>
<p>{_a(info["description"])}</p>
<p>seeds {_a(seed_list(seeds))}, mode {_a(info["mode"])}, {info["duration_s"]:g} s at {info["rps"]:g} requests/s{median}; the better value, where lower or higher is clearly better, in bold</p>
{_table(data)}
{_definitions(data)}
{sections}
</body></html>
"""  # fmt: skip
