"""A self-contained HTML page for a report: the tables, and an inline SVG timeline people can
look at rather than read (requests per second by serving level, latency percentiles, fault
windows shaded, one band per provider showing its breaker state).

No scripts, no external assets: the page is one file that opens anywhere. The SVG is well-formed
XML with `class` and `data-*` attributes on what it draws, so tests (and tools) can parse it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from runtime.scenario.report import Report

LEVEL_COLORS = ("#2f9e44", "#1c7ed6", "#f08c00", "#9c36b5", "#495057", "#0ca678")
ERROR_COLOR = "#e03131"
LATENCY_COLORS = {"p50": "#1c7ed6", "p95": "#f08c00", "p99": "#e03131"}
BREAKER_COLORS = {
    "closed": "#8ce99a",
    "half_open": "#ffd43b",
    "open": "#ff6b6b",
    "forced_open": "#c92a2a",
    "forced_closed": "#74c0fc",
    "disabled": "#ced4da",
}

WIDTH = 960
LEFT = 110
RIGHT = 20
PLOT_W = WIDTH - LEFT - RIGHT
RPS_H = 170
LAT_H = 150
BAND_H = 16
GAP = 34


def _a(value: Any) -> str:
    return escape(str(value), quote=True)


def _n(value: float) -> str:
    """Coordinates with two decimals: enough for the eye, stable in text."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


class _Axis:
    def __init__(self, duration: float) -> None:
        self.duration = max(duration, 1e-9)

    def x(self, t: float) -> float:
        return LEFT + PLOT_W * min(max(t, 0.0), self.duration) / self.duration


def _nice_step(span: float, ticks: int = 6) -> float:
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def _time_ticks(axis: _Axis, y: float, height: float) -> list[str]:
    step = _nice_step(axis.duration)
    parts = []
    t = 0.0
    while t <= axis.duration + 1e-9:
        x = axis.x(t)
        parts.append(
            f'<line class="grid" x1="{_n(x)}" y1="{_n(y)}" x2="{_n(x)}" y2="{_n(y + height)}" '
            'stroke="#e9ecef"/>'
        )
        parts.append(
            f'<text x="{_n(x)}" y="{_n(y + height + 12)}" font-size="10" text-anchor="middle">'
            f"{t:g}s</text>"
        )
        t += step
    return parts


def _rps_panel(timeline: Mapping[str, Any], axis: _Axis, top: float) -> tuple[list[str], float]:
    bucket_s = timeline["bucket_s"]
    served: Mapping[str, Sequence[int]] = timeline["served"]
    errors: Sequence[int] = timeline["errors"]
    buckets = timeline["buckets"]
    layers = [(level, list(counts)) for level, counts in served.items()]
    layers.append(("errors", list(errors)))
    totals = [sum(layer[1][b] for layer in layers) / bucket_s for b in range(buckets)]
    peak = max(totals, default=0.0) or 1.0
    step = _nice_step(peak, 4)
    top_value = step * math.ceil(peak / step)

    def y(value: float) -> float:
        return top + RPS_H - RPS_H * value / top_value

    parts = [
        f'<g id="rps" data-bucket-s="{bucket_s}" data-max="{_n(top_value)}">',
        f'<text x="8" y="{_n(top + 12)}" font-size="12" font-weight="bold">requests/s</text>',
        f'<text x="8" y="{_n(top + 26)}" font-size="10">by serving level</text>',
    ]
    parts += _time_ticks(axis, top, RPS_H)
    for value in (0.0, top_value / 2, top_value):
        parts.append(
            f'<text x="{LEFT - 6}" y="{_n(y(value) + 3)}" font-size="10" text-anchor="end">'
            f"{value:g}</text>"
        )
    base = [0.0] * buckets
    for position, (level, counts) in enumerate(layers):
        color = ERROR_COLOR if level == "errors" else LEVEL_COLORS[position % len(LEVEL_COLORS)]
        upper = [base[b] + counts[b] / bucket_s for b in range(buckets)]
        points = []
        for b in range(buckets):
            points.append((axis.x(b * bucket_s), y(upper[b])))
            points.append((axis.x((b + 1) * bucket_s), y(upper[b])))
        for b in reversed(range(buckets)):
            points.append((axis.x((b + 1) * bucket_s), y(base[b])))
            points.append((axis.x(b * bucket_s), y(base[b])))
        text = " ".join(f"{_n(px)},{_n(py)}" for px, py in points)
        total = sum(counts)
        parts.append(
            f'<polygon class="served" data-level="{_a(level)}" data-requests="{total}" '
            f'fill="{color}" fill-opacity="0.85" points="{text}">'
            f"<title>{_a(level)}: {total} requests</title></polygon>"
        )
        base = upper
        legend_x = LEFT + PLOT_W - 90 * (len(layers) - position)
        parts.append(
            f'<rect x="{legend_x}" y="{_n(top - 16)}" width="10" height="10" fill="{color}"/>'
            f'<text x="{legend_x + 14}" y="{_n(top - 7)}" font-size="10">{_a(level)}</text>'
        )
    parts.append("</g>")
    return parts, top + RPS_H


def _latency_panel(timeline: Mapping[str, Any], axis: _Axis, top: float) -> tuple[list[str], float]:
    bucket_s = timeline["bucket_s"]
    series: Mapping[str, Sequence[float | None]] = timeline["latency_ms"]
    values = [v for line in series.values() for v in line if v is not None and v > 0]
    low = min(values, default=1.0)
    high = max(values, default=10.0)
    low_exp = math.floor(math.log10(max(low, 0.01)))
    high_exp = max(low_exp + 1, math.ceil(math.log10(max(high, 0.01))))

    def y(value: float) -> float:
        exponent = math.log10(max(value, 10.0**low_exp))
        return top + LAT_H - LAT_H * (exponent - low_exp) / (high_exp - low_exp)

    parts = [
        f'<g id="latency" data-scale="log10" data-min-ms="{10.0**low_exp:g}" '
        f'data-max-ms="{10.0**high_exp:g}">',
        f'<text x="8" y="{_n(top + 12)}" font-size="12" font-weight="bold">latency ms</text>',
        f'<text x="8" y="{_n(top + 26)}" font-size="10">log scale</text>',
    ]
    parts += _time_ticks(axis, top, LAT_H)
    for exponent in range(low_exp, high_exp + 1):
        value = 10.0**exponent
        parts.append(
            f'<text x="{LEFT - 6}" y="{_n(y(value) + 3)}" font-size="10" text-anchor="end">'
            f"{value:g}</text>"
        )
    for legend, (name, line) in enumerate(series.items()):
        color = LATENCY_COLORS.get(name, "#495057")
        segments: list[list[tuple[float, float]]] = [[]]
        for b, point in enumerate(line):
            if point is None:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append((axis.x((b + 0.5) * bucket_s), y(point)))
        for segment in segments:
            if not segment:
                continue
            text = " ".join(f"{_n(px)},{_n(py)}" for px, py in segment)
            parts.append(
                f'<polyline class="latency" data-percentile="{_a(name)}" fill="none" '
                f'stroke="{color}" stroke-width="1.5" points="{text}"/>'
            )
        lx = LEFT + PLOT_W - 50 * (len(series) - legend)
        parts.append(
            f'<rect x="{lx}" y="{_n(top - 16)}" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="{_n(top - 7)}" font-size="10">{_a(name)}</text>'
        )
    parts.append("</g>")
    return parts, top + LAT_H


def _breaker_bands(
    breakers: Mapping[str, Sequence[Sequence[Any]]],
    providers: Sequence[str],
    axis: _Axis,
    top: float,
) -> tuple[list[str], float]:
    parts = [
        '<g id="breakers">',
        f'<text x="8" y="{_n(top - 6)}" font-size="12" font-weight="bold">breakers</text>',
    ]
    y = top
    for name in providers:
        changes = breakers.get(name, [])
        parts.append(f'<g class="breaker-band" data-provider="{_a(name)}">')
        parts.append(
            f'<text x="{LEFT - 6}" y="{_n(y + BAND_H - 4)}" font-size="10" text-anchor="end">'
            f"{_a(name)}</text>"
        )
        spans = changes or [[0.0, "closed"]]
        for position, (at, state) in enumerate(spans):
            end = spans[position + 1][0] if position + 1 < len(spans) else axis.duration
            start = 0.0 if position == 0 else float(at)
            if start >= axis.duration:
                break
            x0, x1 = axis.x(start), axis.x(float(end))
            if x1 <= x0:
                continue
            color = BREAKER_COLORS.get(str(state), "#adb5bd")
            parts.append(
                f'<rect class="breaker-state" data-state="{_a(state)}" data-start="{_n(start)}" '
                f'data-end="{_n(float(end))}" x="{_n(x0)}" y="{_n(y)}" width="{_n(x1 - x0)}" '
                f'height="{BAND_H - 3}" fill="{color}"><title>{_a(name)} {_a(state)} from '
                f"{start:g}s to {float(end):g}s</title></rect>"
            )
        parts.append("</g>")
        y += BAND_H
    legend_x = LEFT
    for state, color in BREAKER_COLORS.items():
        parts.append(
            f'<rect x="{legend_x}" y="{_n(y + 4)}" width="10" height="10" fill="{color}"/>'
            f'<text x="{legend_x + 14}" y="{_n(y + 13)}" font-size="10">{state}</text>'
        )
        legend_x += 100
    parts.append("</g>")
    return parts, y + 20


def _fault_windows(
    faults: Sequence[Mapping[str, Any]], axis: _Axis, top: float, bottom: float
) -> list[str]:
    parts = ['<g id="faults">']
    #: Label rows in use: the x where each row's last label ends, so labels never overlap.
    rows: list[float] = []
    for fault in faults:
        start = float(fault["start_s"])
        end = float(fault["end_s"]) if fault["end_s"] is not None else axis.duration
        x0, x1 = axis.x(start), axis.x(end)
        width = max(x1 - x0, 2.0)
        title = str(fault["title"])
        parts.append(
            f'<rect class="fault" data-provider="{_a(fault["provider"])}" '
            f'data-kind="{_a(fault["kind"])}" data-start="{_n(start)}" data-end="{_n(end)}" '
            f'x="{_n(x0)}" y="{_n(top)}" width="{_n(width)}" height="{_n(bottom - top)}" '
            f'fill="#fa5252" fill-opacity="0.10" stroke="#fa5252" stroke-opacity="0.5">'
            f"<title>{_a(title)} ({start:g}s to {end:g}s)</title></rect>"
        )
        row = next((i for i, free_at in enumerate(rows) if free_at <= x0), len(rows))
        label_end = x0 + 3 + 5.6 * len(title)
        if row == len(rows):
            rows.append(label_end)
        else:
            rows[row] = label_end
        parts.append(
            f'<text class="fault-label" x="{_n(x0 + 3)}" y="{_n(top + 10 + 11 * row)}" '
            f'font-size="10" fill="#c92a2a">{_a(title)}</text>'
        )
    parts.append("</g>")
    return parts


def render_svg(report: Report) -> str:
    """The timeline alone, as a standalone SVG document."""
    data = report.data
    timeline = data["timeline"]
    duration = float(timeline["bucket_s"] * timeline["buckets"])
    axis = _Axis(duration)
    providers = [p["name"] for p in data["providers"]]
    top = 24.0
    rps, bottom = _rps_panel(timeline, axis, top)
    latency, bottom2 = _latency_panel(timeline, axis, bottom + GAP)
    bands, height = _breaker_bands(data["breakers"], providers, axis, bottom2 + GAP)
    faults = _fault_windows(data["faults"], axis, top, bottom2)
    body = "\n".join([*rps, *latency, *faults, *bands])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{WIDTH}" '
        f'height="{_n(height + 10)}" viewBox="0 0 {WIDTH} {_n(height + 10)}" '
        f'font-family="sans-serif" data-duration-s="{duration:g}">\n{body}\n</svg>'
    )


STYLE = """
body { font-family: -apple-system, system-ui, sans-serif; margin: 24px; color: #212529; }
table { border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #dee2e6; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.pass { color: #2b8a3e; font-weight: bold; } .fail { color: #c92a2a; font-weight: bold; }
.strip { font-family: ui-monospace, monospace; font-size: 12px; white-space: pre; }
"""


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_a(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_a(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _seconds(value: float | None) -> str:
    """A time until something happened, or "never" (None: not within the run)."""
    return "never" if value is None else _v(value)


def _v(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def render_html(report: Report) -> str:
    """The whole page: summary, timeline, tables, expectations."""
    data = report.data
    info = data["scenario"]
    verdict = "PASSED" if report.passed else "FAILED"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Scenario {_a(info["name"])} (seed {info["seed"]})</title>
<style>{STYLE}</style></head>
<body>
<h1>Scenario {_a(info["name"])} <span class="{"pass" if report.passed else "fail"}">{verdict}</span></h1>
<p>{_a(info["description"])}</p>
<p>seed {info["seed"]}, mode {_a(info["mode"])}, {info["duration_s"]:g} s at {info["rps"]:g} requests/s</p>
{summary_table(data)}
<h2>Timeline</h2>
{render_svg(report)}
<h2>Expectations</h2>
<table><tr><th></th><th>check</th><th>measured</th></tr>{_check_rows(report)}</table>
<h2>Providers</h2>
{_provider_table(data["providers"])}
<h2>Levels</h2>
{_level_table(data["levels"])}
{_fleet_section(data.get("fleet"))}<h2>Faults</h2>
{fault_table(data["faults"])}
</body></html>
"""


def summary_table(data: dict[str, Any]) -> str:
    cost = data["cost"]
    savings = "-" if cost["savings"] is None else f"{100 * cost['savings']:.1f} %"
    rows = [
        ["requests", data["requests"]["issued"]],
        ["availability", f"{100 * data['availability']:.3f} %"],
        ["fallback rate", f"{100 * data['fallback_rate']:.2f} %"],
        ["latency p50 / p95 / p99 ms", " / ".join(_v(data["latency_ms"][k]) for k in ("p50", "p95", "p99"))],
        ["cost", f"${cost['total_usd']:.4f} (baseline {cost['baseline']}: ${cost['baseline_usd']:.4f}, savings {savings})"],
    ]  # fmt: skip
    if "quality_baselines" in cost:
        models = ", ".join(f"{m} ({q})" for q, m in cost["quality_baselines"].items())
        same = "-" if cost["quality_savings"] is None else f"{100 * cost['quality_savings']:.1f} %"
        rows.append(
            ["cost at the same quality", f"baseline {models}: ${cost['quality_baseline_usd']:.4f}, savings {same}"]
        )  # fmt: skip
    rows.append(["lost requests", data["requests"]["lost"]])
    return _html_table(["", "value"], rows)


def _provider_table(providers: list[dict[str, Any]]) -> str:
    return _html_table(
        ["provider", "calls", "served", "failures", "trips", "open s", "p50", "p95", "p99", "cost"],
        [
            [
                p["name"],
                p["calls"],
                p["served"],
                " ".join(f"{k}:{v}" for k, v in p["failures"].items()) or "-",
                p["breaker_trips"],
                _v(p["time_open_s"]),
                _v(p["latency_ms"]["p50"]),
                _v(p["latency_ms"]["p95"]),
                _v(p["latency_ms"]["p99"]),
                f"${p['cost_usd']:.4f}",
            ]
            for p in providers
        ],
    )


def _fleet_section(fleet: dict[str, Any] | None) -> str:
    """Each instance and the fleet (``[fleet]`` scenarios only; nothing otherwise)."""
    if fleet is None:
        return ""
    columns = [*fleet["per_instance"], {"id": "fleet", **fleet["total"]}]
    shared = (
        f"sharing one store, writes seen {fleet['sync_delay_ms']:g} ms late"
        if fleet["shared"]
        else "each on its own state"
    )
    totals = _html_table(
        ["instance", "requests", "availability", "cost", "failed calls", "wasted calls", "trips"],
        [
            [
                c["id"],
                c["requests"],
                f"{100 * c['availability']:.3f} %",
                f"${c['cost_usd']:.4f}",
                c["failed_calls"],
                c["wasted_calls"],
                c["breaker_trips"],
            ]
            for c in columns
        ],
    )
    by_provider = _html_table(
        ["provider: failed / wasted calls, trips", *(c["id"] for c in columns)],
        [
            [
                name,
                *(
                    "{failed} / {wasted}, {breaker_trips}".format(**c["providers"][name])
                    for c in columns
                ),
            ]
            for name in fleet["total"]["providers"]
        ],
    )
    return (
        f"<h2>Fleet</h2>\n<p>{fleet['instances']} instances {_a(shared)}, requests "
        f"{_a(fleet['spread'])}</p>\n{totals}\n{by_provider}\n{_fleet_recovery(fleet)}"
    )


def _fleet_recovery(fleet: dict[str, Any]) -> str:
    """After each fault, when each instance had the provider back, and the last of them."""
    recovery = fleet.get("recovery") or []
    if not recovery:
        return ""
    ids = [instance["id"] for instance in fleet["per_instance"]]
    table = _html_table(
        ["fault: back in rotation s", *ids, "fleet (last)"],
        [
            [
                fault["title"],
                *(_seconds(v) for v in fault["per_instance_s"]),
                _seconds(fault["fleet_s"]),
            ]
            for fault in recovery
        ],
    )
    return (
        "<p>Back in rotation: from the fault's end to the first answer from the provider "
        f"through each instance; the fleet's is the last instance's.</p>\n{table}\n"
    )


def _level_table(levels: list[dict[str, Any]]) -> str:
    return _html_table(
        ["level", "served", "share", "p50", "p95", "p99"],
        [
            [
                level["name"],
                level["served"],
                f"{100 * level['share']:.2f} %",
                _v(level["latency_ms"]["p50"]),
                _v(level["latency_ms"]["p95"]),
                _v(level["latency_ms"]["p99"]),
            ]
            for level in levels
        ],
    )


def fault_table(faults: list[dict[str, Any]]) -> str:
    return _html_table(
        ["fault", "start s", "end s", "MTTR s (answered)", "back in rotation s", "paid"],
        [
            [
                f["title"],
                _v(f["start_s"]),
                _v(f["end_s"]),
                _seconds(f["mttr_s"]),
                _v(f["recovery_s"]) if f["in_rotation_before"] else "n/a",
                f["paid_requests"],
            ]
            for f in faults
        ],
    )


def _check_rows(report: Report) -> str:
    return "".join(
        f'<tr><td class="{"pass" if c.passed else "fail"}">{"PASS" if c.passed else "FAIL"}</td>'
        f"<td>{_a(c.name)}</td><td>{_a(_v(c.measured))}</td></tr>"
        for c in report.checks
    )
