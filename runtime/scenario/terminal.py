"""The human report in a terminal: summary, tables, the per-bucket strip and the expectations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runtime.scenario.measure import ERROR_CHAR, IDLE_CHAR
from runtime.scenario.report import Report


def render_terminal(report: Report, *, color: bool = False) -> str:
    """The human report: summary, tables, the per-bucket strip and the expectations."""
    data = report.data
    lines = [
        *_header(data["scenario"], data["requests"], report.host),
        "",
        *_summary(data),
        "",
        "providers",
        *_provider_table(data["providers"]),
        "",
        "levels",
        *_level_table(data["levels"]),
    ]
    if "fleet" in data:
        lines += ["", *_fleet(data["fleet"])]
    if data["faults"]:
        lines += ["", "faults (MTTR: start -> answered without paying; end -> back in rotation)"]
        lines += _fault_table(data["faults"])
    lines += ["", *render_strip(data["timeline"])]
    if report.host.get("memory"):
        lines += ["", *_memory(report.host)]
    runtime = data["runtime"]
    if runtime["history_lengths"]:
        lengths = "  ".join(f"{k}={v}" for k, v in runtime["history_lengths"].items())
        lines += [
            "",
            f"runtime histories at the end: {lengths} (max seen {runtime['history_max']})",
        ]
    lines += ["", "expectations", *_expectations(report, color=color)]
    lines.append("")
    lines.append("PASSED" if report.passed else "FAILED")
    return "\n".join(lines) + "\n"


def _header(info: Mapping[str, Any], req: Mapping[str, Any], host: Mapping[str, Any]) -> list[str]:
    """What ran, and how fast on this host."""
    lines = [
        f"scenario {info['name']}  seed={info['seed']}  mode={info['mode']}  "
        f"{info['duration_s']:g}s at {info['rps']:g} rps (concurrency {info['concurrency']})",
    ]
    if info["description"]:
        lines.append(f"  {info['description']}")
    wall = host.get("wall_s")
    if wall is not None:
        rate = req["issued"] / wall if wall > 0 else 0.0
        lines.append(f"  ran in {wall:.2f}s wall ({rate:,.0f} simulated requests per wall second)")
    return lines


def _summary(data: Mapping[str, Any]) -> list[str]:
    """Requests, availability, latency, cost and errors by type."""
    req = data["requests"]
    lat = data["latency_ms"]
    cost = data["cost"]
    lines = [
        f"requests {req['issued']:,}  answered {req['answered']:,}  errors {req['errors_total']:,}"
        f"  lost {req['lost']:,}  streamed {req['streamed']:,}",
        f"availability {_pct(data['availability'])}  by a model {_pct(data['model_availability'])}"
        f"  fallback rate {_pct(data['fallback_rate'])}",
        f"latency ms  p50 {_fmt(lat['p50'])}  p95 {_fmt(lat['p95'])}  p99 {_fmt(lat['p99'])}"
        f"  max {_fmt(lat['max'])}",
        f"cost {_usd(cost['total_usd'])}  vs {_usd(cost['baseline_usd'])} all on "
        f"{cost['baseline']}  savings {_pct(cost['savings'])}",
    ]
    if "quality_baselines" in cost:
        models = ", ".join(f"{m} ({q})" for q, m in cost["quality_baselines"].items())
        lines.append(
            f"  vs {_usd(cost['quality_baseline_usd'])} at the same quality on {models}  "
            f"savings {_pct(cost['quality_savings'])}"
        )
    if req["outcomes"]:
        outcomes = "  ".join(f"{k} {v:,}" for k, v in req["outcomes"].items())
        lines.append(f"errors by type: {outcomes}")
    return lines


def _provider_table(providers: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [
        [
            p["name"],
            _fmt(p["calls"]),
            _fmt(p["served"]),
            " ".join(f"{k}:{v}" for k, v in p["failures"].items()) or "-",
            _fmt(p["breaker_trips"]),
            _fmt(p["time_open_s"]),
            _fmt(p["latency_ms"]["p50"]),
            _fmt(p["latency_ms"]["p95"]),
            _fmt(p["latency_ms"]["p99"]),
            _usd(p["cost_usd"]),
            _fmt(p["restarts"]),
        ]
        for p in providers
    ]
    return _table(
        [
            "",
            "calls",
            "served",
            "failures",
            "trips",
            "open s",
            "p50",
            "p95",
            "p99",
            "cost",
            "restarts",
        ],
        rows,
    )


def _level_table(levels: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [
        [
            level["name"],
            _fmt(level["served"]),
            _pct(level["share"]),
            _fmt(level["latency_ms"]["p50"]),
            _fmt(level["latency_ms"]["p95"]),
            _fmt(level["latency_ms"]["p99"]),
            _usd(level["cost_usd"]),
        ]
        for level in levels
    ]
    return _table(["", "served", "share", "p50", "p95", "p99", "cost"], rows)


def _fleet(fleet: Mapping[str, Any]) -> list[str]:
    """Each instance and the fleet: requests, availability, cost, calls lost to faults, and per
    provider failed / wasted calls and breaker trips."""
    shared = (
        f"sharing one store, writes seen {fleet['sync_delay_ms']:g} ms late"
        if fleet["shared"]
        else "each on its own state"
    )
    columns = [*fleet["per_instance"], {"id": "fleet", **fleet["total"]}]
    lines = [f"fleet of {fleet['instances']} instances {shared}, requests {fleet['spread']}"]
    lines += _table(
        ["", "requests", "availability", "cost", "failed calls", "wasted calls", "trips"],
        [
            [
                c["id"],
                _fmt(c["requests"]),
                _pct(c["availability"]),
                _usd(c["cost_usd"]),
                _fmt(c["failed_calls"]),
                _fmt(c["wasted_calls"]),
                _fmt(c["breaker_trips"]),
            ]
            for c in columns
        ],
    )
    lines += ["", "fleet by provider: failed / wasted calls, breaker trips"]
    rows = [
        [name, *(_provider_cell(c["providers"][name]) for c in columns)]
        for name in fleet["total"]["providers"]
    ]
    lines += _table(["", *(c["id"] for c in columns)], rows)
    return lines + _fleet_recovery(fleet)


def _fleet_recovery(fleet: Mapping[str, Any]) -> list[str]:
    """After each fault, when each instance had the provider back, and the last of them."""
    recovery = fleet.get("recovery") or []
    if not recovery:
        return []
    ids = [instance["id"] for instance in fleet["per_instance"]]
    rows = [
        [
            fault["title"],
            *(_seconds(value) for value in fault["per_instance_s"]),
            _seconds(fault["fleet_s"]),
        ]
        for fault in recovery
    ]
    return [
        "",
        "fleet back in rotation s (fault end -> first answer through each instance; "
        "the fleet: the last)",
        *_table(["", *ids, "fleet"], rows),
    ]


def _seconds(value: float | None) -> str:
    """A time until something happened, or "never" (None: not within the run)."""
    return "never" if value is None else _fmt(value, 2)


def _provider_cell(calls: Mapping[str, int]) -> str:
    return f"{calls['failed']:,} / {calls['wasted']:,}, {calls['breaker_trips']:,}"


def _fault_table(faults: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = []
    for fault in faults:
        end = "-" if fault["end_s"] is None else f"{fault['end_s']:g}"
        recovery = "n/a" if not fault["in_rotation_before"] else _seconds(fault["recovery_s"])
        rows.append(
            [
                fault["title"],
                f"{fault['start_s']:g}",
                end,
                _seconds(fault["mttr_s"]),
                recovery,
                _fmt(fault["paid_requests"]),
            ]
        )
    return _table(["", "at s", "end s", "mttr s", "back s", "paid"], rows)


def _memory(host: Mapping[str, Any]) -> list[str]:
    """The memory checkpoints of a long run, and their growth first to last."""
    lines = ["memory checkpoints (after a full gc)"]
    for c in host["memory"]:
        traced = (
            f"  runtime code {c['runtime_bytes'] / 1024:>9,.1f} KiB"
            if c["runtime_bytes"] is not None
            else ""
        )
        lines.append(
            f"  t={c['at']:>7.0f}s  requests {c['requests']:>8,}  objects "
            f"{c['objects']:>8,}  blocks {c['blocks']:>9,}{traced}"
        )
    lines.append(
        f"  growth first->last: objects {host['object_growth']:+,}  blocks "
        f"{host['block_growth']:+,}  ({host['objects_per_1000_requests']:+.2f} objects per "
        "1,000 requests)"
        + (
            f"  runtime code {host['memory_growth_kib']:+,.1f} KiB"
            if "memory_growth_kib" in host
            else ""
        )
    )
    return lines


def _expectations(report: Report, *, color: bool) -> list[str]:
    lines = []
    for check in report.checks:
        verdict = "PASS" if check.passed else "FAIL"
        if color:
            verdict = f"\x1b[32m{verdict}\x1b[0m" if check.passed else f"\x1b[31m{verdict}\x1b[0m"
        lines.append(f"  {verdict}  {check.name}  (measured {_measured(check.measured)})")
    return lines


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return (
            "  "
            + "  ".join(
                [
                    first.ljust(widths[0]),
                    *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)),
                ]
            ).rstrip()
        )

    return [line(headers), "  " + "  ".join("-" * w for w in widths), *map(line, rows)]


def _measured(value: float | int | None) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render_strip(timeline: Mapping[str, Any], width: int = 60) -> list[str]:
    """The per-bucket strip, `width` buckets a line, each line labelled with its start time."""
    bucket_s = timeline["bucket_s"]
    strip = timeline["strip"]
    legend = "  ".join(f"{char}={level}" for level, char in timeline["chars"].items())
    unit = "second" if bucket_s == 1 else f"{bucket_s} s"
    lines = [f"serving level, one char per {unit}: {legend}  {ERROR_CHAR}=errors  {IDLE_CHAR}=idle"]
    for start in range(0, len(strip), width):
        lines.append(f"  {start * bucket_s:>6}s {strip[start : start + width]}")
    return lines
