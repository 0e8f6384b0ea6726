"""Turn a recorded run into the report: numbers, expectation checks, a terminal rendering.

`build_report` does all the arithmetic once and returns a `Report` whose `data` is plain JSON
(rounded, key-sorted when dumped) and depends only on the scenario, the seed and what the runtime
did, so a virtual run gives byte-identical JSON for the same seed. Measurements of the host (wall
time, traced memory) go in `host`, which the terminal and HTML show and the JSON leaves out.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from actors.config import LAST_RESORT_KINDS
from runtime.scenario.format import CRASH, Expectations, Scenario
from runtime.scenario.recorder import NOT_SENT, RESULT_NAMES, Recorder, Result

#: Breaker states during which the provider gets no traffic.
OPEN_STATES = frozenset({"open", "forced_open"})
#: Breaker transition reasons that are Retry-After holds rather than trips.
HOLD_REASONS = frozenset({"retry_after"})
#: Characters of the per-bucket strip, by level position; "x" = some request failed.
DEFAULT_LEVEL_CHARS = {"primary": "P", "secondary": "S", "emergency": "E", "last_resort": "L"}
ERROR_CHAR = "x"
IDLE_CHAR = "."
#: Longest strip before buckets grow past one second.
MAX_BUCKETS = 600


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None for no values)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _r(value: float | None, digits: int = 3) -> float | None:
    if value is None:
        return None
    rounded = round(value, digits)
    return 0.0 if rounded == 0 else rounded


def _percentiles(values: Iterable[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {
        "p50": _r(percentile(ordered, 0.50), 2),
        "p95": _r(percentile(ordered, 0.95), 2),
        "p99": _r(percentile(ordered, 0.99), 2),
        "max": _r(ordered[-1], 2) if ordered else None,
    }


def level_chars(levels: Sequence[str]) -> dict[str, str]:
    """One distinct character per level: the usual initials, else first letters, else digits."""
    chars: dict[str, str] = {}
    used = {ERROR_CHAR, IDLE_CHAR}
    for position, level in enumerate(levels):
        candidates = [DEFAULT_LEVEL_CHARS.get(level, ""), level[:1].upper(), str(position + 1)]
        char = next((c for c in candidates if c and c not in used), "?")
        chars[level] = char
        used.add(char)
    return chars


@attrs.frozen
class Check:
    """One expectation and how it came out."""

    name: str
    measured: float | int | None
    limit: float | int
    passed: bool
    #: Measured on the host rather than in the simulation: kept out of the JSON.
    host: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit": self.limit,
            "measured": None if self.host else self.measured,
            "passed": self.passed,
        }


@attrs.frozen
class Report:
    #: JSON-ready, deterministic for a virtual run and a seed.
    data: dict[str, Any]
    #: Host measurements: wall time, memory. Shown, never in the JSON.
    host: dict[str, Any]
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True) + "\n"


class _Run:
    """Index structures over a recorder, built once for the report."""

    def __init__(self, recorder: Recorder, scenario: Scenario) -> None:
        self.recorder = recorder
        self.scenario = scenario
        order = sorted(range(recorder.requests), key=lambda i: recorder.index[i])
        self.order = order
        self.arrivals = [recorder.arrival[i] for i in order]
        self.end = recorder.end or scenario.load.duration_s
        # Attempts of each request, by request index.
        self.attempts_of: dict[int, list[int]] = {}
        #: Per provider code: its attempts, and the start/end times of its successful calls.
        self.attempts_by_provider: dict[int, list[int]] = {}
        self.success_starts: dict[int, list[float]] = {}
        self.success_ends: dict[int, list[float]] = {}
        for position, request in enumerate(recorder.att_request):
            self.attempts_of.setdefault(request, []).append(position)
            provider = recorder.att_provider[position]
            self.attempts_by_provider.setdefault(provider, []).append(position)
        for provider, positions in self.attempts_by_provider.items():
            successes = sorted(
                (recorder.att_start[p], recorder.att_start[p] + recorder.att_latency_ms[p] / 1000)
                for p in positions
                if recorder.att_outcome[p] == 0
            )
            self.success_starts[provider] = [start for start, _ in successes]
            self.success_ends[provider] = [end for _, end in successes]

    def failed_on(self, row: int, provider: int) -> bool:
        """Did this request pay for a failure of `provider` (a failed call to it)?"""
        rec = self.recorder
        for position in self.attempts_of.get(rec.index[row], ()):
            if rec.att_provider[position] == provider and rec.outcomes[
                rec.att_outcome[position]
            ] not in ("ok", *NOT_SENT):
                return True
        return False


def _provider_stats(run: _Run) -> list[dict[str, Any]]:
    rec = run.recorder
    out = []
    for code, name in enumerate(rec.providers.names):
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        calls = skipped = successes = 0
        for position in run.attempts_by_provider.get(code, ()):
            outcome = rec.outcomes[rec.att_outcome[position]]
            if outcome in NOT_SENT:
                skipped += 1
                continue
            calls += 1
            latencies.append(rec.att_latency_ms[position])
            if outcome == "ok":
                successes += 1
            else:
                failures[outcome] += 1
        served = cost = 0.0
        for row in range(rec.requests):
            if rec.result[row] == Result.REPLY and rec.provider[row] == code:
                served += 1
                cost += rec.cost[row]
        breaker = _breaker_stats(run, name)
        out.append(
            {
                "name": name,
                "calls": calls,
                "skipped": skipped,
                "successes": successes,
                "served": int(served),
                "failures": dict(sorted(failures.items())),
                "latency_ms": _percentiles(latencies),
                "cost_usd": _r(cost, 8),
                "restarts": rec.restarts.get(name, 0),
                **breaker,
            }
        )
    return out


def _intervals(run: _Run, provider: str) -> list[tuple[float, float, str, str]]:
    """(start, end, state, reason) spans of a provider's breaker over the run."""
    changes = run.recorder.breaker.get(provider, [])
    spans = []
    for position, change in enumerate(changes):
        end = changes[position + 1].at if position + 1 < len(changes) else run.end
        spans.append((change.at, max(change.at, end), change.state, change.reason))
    return spans


def _breaker_stats(run: _Run, provider: str) -> dict[str, Any]:
    rec = run.recorder
    code = rec.providers.code(provider)
    trips = holds = 0
    time_open = 0.0
    half_open_max = 0
    sent = [
        rec.att_start[p]
        for p in run.attempts_by_provider.get(code, ())
        if rec.outcomes[rec.att_outcome[p]] not in NOT_SENT
    ]
    sent.sort()
    for start, end, state, reason in _intervals(run, provider):
        if state in OPEN_STATES:
            time_open += end - start
            if reason in HOLD_REASONS:
                holds += 1
            else:
                trips += 1
        elif state == "half_open":
            inside = bisect.bisect_left(sent, end) - bisect.bisect_left(sent, start)
            half_open_max = max(half_open_max, inside)
    return {
        "breaker_trips": trips,
        "breaker_holds": holds,
        "time_open_s": _r(time_open),
        "half_open_calls_max": half_open_max,
    }


def _level_stats(run: _Run) -> list[dict[str, Any]]:
    rec = run.recorder
    answered = sum(1 for r in rec.result if r == Result.REPLY)
    out = []
    for code, name in enumerate(rec.levels.names):
        latencies = [
            rec.latency_ms[row]
            for row in range(rec.requests)
            if rec.result[row] == Result.REPLY and rec.level[row] == code
        ]
        cost = sum(
            rec.cost[row]
            for row in range(rec.requests)
            if rec.result[row] == Result.REPLY and rec.level[row] == code
        )
        out.append(
            {
                "name": name,
                "served": len(latencies),
                "share": _r(len(latencies) / answered if answered else 0.0, 6),
                "latency_ms": _percentiles(latencies),
                "cost_usd": _r(cost, 8),
            }
        )
    return out


def _clean_latency_ms(run: _Run) -> float | None:
    """A reply from the faulted provider slower than this paid for the fault: 2x the p95
    before the first fault."""
    configured = run.scenario.info.clean_latency_ms
    if configured is not None:
        return configured
    rec = run.recorder
    first = min((fault.start for fault in rec.faults), default=None)
    latencies = sorted(
        rec.latency_ms[row]
        for row in range(rec.requests)
        if rec.result[row] == Result.REPLY and (first is None or rec.arrival[row] < first)
    )
    if len(latencies) < 20:
        latencies = sorted(
            rec.latency_ms[row]
            for row in range(rec.requests)
            if rec.result[row] == Result.REPLY and not _in_fault(rec, rec.arrival[row])
        )
    p95 = percentile(latencies, 0.95)
    return None if p95 is None else 2.0 * p95


def _in_fault(rec: Recorder, at: float) -> bool:
    return any(f.start <= at < (f.end if f.end is not None else math.inf) for f in rec.faults)


def _fault_stats(run: _Run, clean_latency_ms: float | None) -> list[dict[str, Any]]:
    rec = run.recorder
    load = run.scenario.load
    #: A recovery is this many clean requests in a row: 20, or two seconds of traffic if more,
    #: so a lucky run under a fault that hits only some calls does not count as recovered.
    streak = max(20, math.ceil(2 * load.rps))
    out = []
    steps: dict[int, list[int]] = {}
    for position, fault in enumerate(rec.faults):
        steps.setdefault(fault.step, []).append(position)
    for step, positions in sorted(steps.items()):
        windows = [rec.faults[p] for p in positions]
        first = windows[0]
        provider = rec.providers.code(first.provider)
        mttrs: list[float | None] = []
        recoveries: list[float | None] = []
        paid = 0
        served_before = _first_success_at_or_after(run, provider, -math.inf, before=first.start)
        for window in windows:
            mttr, window_paid = _mttr(run, window.start, provider, clean_latency_ms, streak)
            mttrs.append(mttr)
            paid += window_paid
            if window.end is None or served_before is None:
                recoveries.append(None)
            else:
                back = _first_success_at_or_after(run, provider, window.end)
                recoveries.append(None if back is None else back - window.end)
        step_info = run.scenario.faults[step] if step < len(run.scenario.faults) else None
        out.append(
            {
                "step": step,
                "provider": first.provider,
                "kind": first.kind,
                "title": first.title,
                "start_s": _r(first.start),
                "end_s": _r(windows[-1].end),
                "windows": len(windows),
                "mttr_s": _worst(mttrs),
                "recovery_s": _worst(recoveries) if served_before is not None else None,
                "in_rotation_before": served_before is not None,
                "paid_requests": paid,
                "instant": bool(step_info and step_info.kind == CRASH and step_info.every_s is None),
            }
        )
    return out


def _worst(values: Sequence[float | None]) -> float | None:
    """The largest value, or None (never recovered) if any window never recovered."""
    if not values or any(v is None for v in values):
        return None
    return _r(max(v for v in values if v is not None))


def _first_success_at_or_after(
    run: _Run, provider: int, at: float, before: float = math.inf
) -> float | None:
    """End time of the first successful call to `provider` that started in [at, before)."""
    starts = run.success_starts.get(provider, [])
    position = bisect.bisect_left(starts, at)
    if position >= len(starts) or starts[position] >= before:
        return None
    return run.success_ends[provider][position]


def _mttr(
    run: _Run, start: float, provider: int, clean_latency_ms: float | None, streak: int
) -> tuple[float | None, int]:
    """Seconds from `start` until `streak` requests in a row were answered without paying for
    the provider's failure, and how many requests paid before that. A request pays when it
    failed, made a failed call to the provider, or was served by it slower than the clean
    latency (a brownout). A fallback that is slower by nature is not paying: it is the
    level doing its job."""
    rec = run.recorder
    first = bisect.bisect_left(run.arrivals, start)
    run_start: int | None = None
    run_length = 0
    paid = 0
    for position in range(first, len(run.order)):
        row = run.order[position]
        clean = (
            rec.result[row] == Result.REPLY
            and not run.failed_on(row, provider)
            and not (
                rec.provider[row] == provider
                and clean_latency_ms is not None
                and rec.latency_ms[row] > clean_latency_ms
            )
        )
        if clean:
            if run_start is None:
                run_start = position
            run_length += 1
            if run_length >= streak:
                return max(0.0, run.arrivals[run_start] - start), paid
        else:
            paid += 1 + run_length
            run_start = None
            run_length = 0
    return None, paid


def _timeline(run: _Run, chars: Mapping[str, str]) -> dict[str, Any]:
    rec = run.recorder
    duration = run.scenario.load.duration_s
    bucket_s = max(1, math.ceil(duration / MAX_BUCKETS))
    buckets = max(1, math.ceil(duration / bucket_s))
    levels = rec.levels.names
    counts = [[0] * buckets for _ in levels]
    errors = [0] * buckets
    latencies: list[list[float]] = [[] for _ in range(buckets)]
    for row in range(rec.requests):
        bucket = min(buckets - 1, int(rec.arrival[row] // bucket_s))
        if rec.result[row] == Result.REPLY:
            counts[rec.level[row]][bucket] += 1
            latencies[bucket].append(rec.latency_ms[row])
        else:
            errors[bucket] += 1
    strip = []
    for bucket in range(buckets):
        if errors[bucket]:
            strip.append(ERROR_CHAR)
            continue
        served = [(counts[code][bucket], -code) for code in range(len(levels))]
        best, negative = max(served) if served else (0, 0)
        strip.append(chars.get(levels[-negative], "?") if best else IDLE_CHAR)
    percentiles: dict[str, list[float | None]] = {"p50": [], "p95": [], "p99": []}
    for values in latencies:
        values.sort()
        for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            percentiles[key].append(_r(percentile(values, q), 1))
    return {
        "bucket_s": bucket_s,
        "buckets": buckets,
        "chars": dict(chars),
        "strip": "".join(strip),
        "served": {level: counts[code] for code, level in enumerate(levels)},
        "errors": errors,
        "latency_ms": percentiles,
    }


def _checks(expect: Expectations, data: Mapping[str, Any], host: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []

    def at_least(name: str, measured: float | int | None, limit: float | int | None) -> None:
        if limit is not None:
            checks.append(Check(f"{name} >= {limit:g}", measured, limit, _ge(measured, limit)))

    def at_most(
        name: str, measured: float | int | None, limit: float | int | None, host: bool = False
    ) -> None:
        if limit is not None:
            passed = measured is not None and measured <= limit + 1e-12
            checks.append(Check(f"{name} <= {limit:g}", measured, limit, passed, host))

    latency = data["latency_ms"]
    at_least("availability", data["availability"], expect.availability_min)
    at_least("model availability", data["model_availability"], expect.model_availability_min)
    at_most("fallback rate", data["fallback_rate"], expect.fallback_rate_max)
    at_most("p50 latency ms", latency["p50"], expect.p50_ms_max)
    at_most("p95 latency ms", latency["p95"], expect.p95_ms_max)
    at_most("p99 latency ms", latency["p99"], expect.p99_ms_max)
    faults = data["faults"]
    if expect.mttr_s_max is not None:
        worst = _worst([f["mttr_s"] for f in faults]) if faults else 0.0
        at_most("MTTR s (answered without paying)", worst, expect.mttr_s_max)
    if expect.recovery_s_max is not None:
        relevant = [f["recovery_s"] for f in faults if f["in_rotation_before"]]
        worst = _worst(relevant) if relevant else 0.0
        at_most("MTTR s (back in rotation)", worst, expect.recovery_s_max)
    at_most("cost usd", data["cost"]["total_usd"], expect.cost_usd_max)
    at_least("savings vs baseline", data["cost"]["savings"], expect.savings_min)
    at_most("lost requests", data["requests"]["lost"], expect.lost_requests_max)
    at_most("errors", data["requests"]["errors_total"], expect.errors_max)
    at_most("replies over budget", data["requests"]["over_budget"], expect.over_budget_max)
    at_most("runtime history length", data["runtime"]["history_max"], expect.history_max)
    at_most(
        "live objects growth (first to last checkpoint)",
        host.get("object_growth"),
        expect.object_growth_max,
        host=True,
    )
    at_most(
        "runtime memory growth KiB",
        host.get("memory_growth_kib"),
        expect.memory_growth_kib_max,
        host=True,
    )
    providers = {p["name"]: p for p in data["providers"]}
    for name, rule in expect.providers.items():
        stats = providers.get(name, {})
        at_least(f"{name} served", stats.get("served", 0), rule.served_min)
        at_most(f"{name} served", stats.get("served", 0), rule.served_max)
        at_most(f"{name} calls", stats.get("calls", 0), rule.calls_max)
        failures = sum(stats.get("failures", {}).values())
        at_most(f"{name} failed calls", failures, rule.failures_max)
        at_least(f"{name} breaker trips", stats.get("breaker_trips", 0), rule.breaker_trips_min)
        at_most(f"{name} breaker trips", stats.get("breaker_trips", 0), rule.breaker_trips_max)
        at_most(f"{name} time open s", stats.get("time_open_s", 0.0), rule.time_open_s_max)
        at_least(f"{name} restarts", stats.get("restarts", 0), rule.restarts_min)
        at_most(f"{name} restarts", stats.get("restarts", 0), rule.restarts_max)
        at_most(
            f"{name} calls per half-open spell",
            stats.get("half_open_calls_max", 0),
            rule.half_open_calls_max,
        )
        at_most(f"{name} cost usd", stats.get("cost_usd", 0.0), rule.cost_usd_max)
    levels = {level["name"]: level for level in data["levels"]}
    for name, level_rule in expect.levels.items():
        stats = levels.get(name, {})
        at_least(f"{name} share", stats.get("share", 0.0), level_rule.share_min)
        at_most(f"{name} share", stats.get("share", 0.0), level_rule.share_max)
        at_least(f"{name} served", stats.get("served", 0), level_rule.served_min)
        at_most(f"{name} served", stats.get("served", 0), level_rule.served_max)
    actors = data["actors"]
    for name, actor_rule in expect.actors.items():
        restarts = actors.get(name)
        at_least(f"actor {name} restarts", restarts, actor_rule.restarts_min)
        at_most(f"actor {name} restarts", restarts, actor_rule.restarts_max)
    return checks


def _ge(measured: float | int | None, limit: float | int) -> bool:
    return measured is not None and measured >= limit - 1e-12


def build_report(
    recorder: Recorder,
    scenario: Scenario,
    *,
    seed: int,
    mode: str,
    host: Mapping[str, Any] | None = None,
) -> Report:
    """All the numbers of a run, and its expectations checked."""
    run = _Run(recorder, scenario)
    rec = recorder
    results = Counter(RESULT_NAMES[Result(code)] for code in rec.result)
    issued = max(rec.issued, rec.requests)
    lost = results.get("lost", 0) + results.get("untyped_error", 0) + (issued - rec.requests)
    answered = results.get("reply", 0)
    last_resort = {
        rec.providers.code(p.name) for p in scenario.config.providers if p.kind in LAST_RESORT_KINDS
    }
    by_model = sum(
        1
        for row in range(rec.requests)
        if rec.result[row] == Result.REPLY and rec.provider[row] not in last_resort
    )
    fallbacks = sum(
        1 for row in range(rec.requests) if rec.result[row] == Result.REPLY and rec.fallback[row]
    )
    latencies = [rec.latency_ms[row] for row in range(rec.requests) if rec.result[row] != Result.LOST]
    replies_latency = [
        rec.latency_ms[row] for row in range(rec.requests) if rec.result[row] == Result.REPLY
    ]
    total_cost = sum(rec.cost)
    baseline = sum(rec.baseline_cost)
    primary = scenario.config.provider(scenario.primary)
    chars = level_chars([level.name for level in scenario.config.levels])
    for name in rec.levels.names:
        if name not in chars:
            chars = level_chars([*chars, name])
    errors = {k: v for k, v in sorted(results.items()) if k not in ("reply",)}
    clean_latency = _clean_latency_ms(run)
    data: dict[str, Any] = {
        "scenario": {
            "name": scenario.name,
            "file": scenario.path,
            "description": scenario.info.description,
            "seed": seed,
            "mode": mode,
            "duration_s": scenario.load.duration_s,
            "rps": scenario.load.rps,
            "concurrency": scenario.load.concurrency,
        },
        "requests": {
            "issued": issued,
            "answered": answered,
            "streamed": sum(rec.stream),
            "outcomes": errors,
            "errors_total": sum(
                v for k, v in results.items() if k not in ("reply", "lost", "untyped_error")
            ),
            "lost": lost,
            "over_budget": sum(rec.over_budget),
            "queued_ms_max": _r(max(rec.queue_ms, default=0.0), 2),
        },
        "availability": _r(answered / issued if issued else 0.0, 6),
        "model_availability": _r(by_model / issued if issued else 0.0, 6),
        "fallback_rate": _r(fallbacks / answered if answered else 0.0, 6),
        "latency_ms": _percentiles(latencies),
        "reply_latency_ms": _percentiles(replies_latency),
        "clean_latency_ms": _r(clean_latency, 2),
        "cost": {
            "total_usd": _r(total_cost, 8),
            "baseline_usd": _r(baseline, 8),
            "baseline": f"{primary.name}/{primary.models[0] if primary.models else '-'}",
            "savings": _r(1.0 - total_cost / baseline, 6) if baseline > 0 else None,
        },
        "providers": _provider_stats(run),
        "levels": _level_stats(run),
        "faults": _fault_stats(run, clean_latency),
        "actors": dict(sorted(rec.actor_restarts.items())),
        "runtime": {
            "history_max": rec.history_max,
            "history_lengths": dict(sorted(rec.history_lengths.items())),
            "events": dict(sorted(rec.events.items())),
            "events_dropped": rec.events_dropped,
        },
        "breakers": {
            name: [[_r(c.at), c.state] for c in changes]
            for name, changes in sorted(rec.breaker.items())
        },
        "timeline": _timeline(run, chars),
    }
    host = dict(host or {})
    checks = _checks(scenario.expect, data, host)
    data["expectations"] = [check.to_json() for check in checks]
    data["passed"] = all(check.passed for check in checks)
    return Report(data=data, host=host, checks=tuple(checks))


# --- terminal rendering ------------------------------------------------------------------


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
        return "  " + "  ".join(
            [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
        ).rstrip()

    return [line(headers), "  " + "  ".join("-" * w for w in widths), *map(line, rows)]


def render_terminal(report: Report, *, color: bool = False) -> str:
    """The human report: summary, tables, the per-bucket strip and the expectations."""
    data = report.data
    info = data["scenario"]
    req = data["requests"]
    lat = data["latency_ms"]
    lines = [
        f"scenario {info['name']}  seed={info['seed']}  mode={info['mode']}  "
        f"{info['duration_s']:g}s at {info['rps']:g} rps (concurrency {info['concurrency']})",
    ]
    if info["description"]:
        lines.append(f"  {info['description']}")
    wall = report.host.get("wall_s")
    if wall is not None:
        rate = req["issued"] / wall if wall > 0 else 0.0
        lines.append(f"  ran in {wall:.2f}s wall ({rate:,.0f} simulated requests per wall second)")
    lines += [
        "",
        f"requests {req['issued']:,}  answered {req['answered']:,}  errors {req['errors_total']:,}"
        f"  lost {req['lost']:,}  streamed {req['streamed']:,}",
        f"availability {_pct(data['availability'])}  by a model {_pct(data['model_availability'])}"
        f"  fallback rate {_pct(data['fallback_rate'])}",
        f"latency ms  p50 {_fmt(lat['p50'])}  p95 {_fmt(lat['p95'])}  p99 {_fmt(lat['p99'])}"
        f"  max {_fmt(lat['max'])}",
    ]
    cost = data["cost"]
    lines.append(
        f"cost {_usd(cost['total_usd'])}  vs {_usd(cost['baseline_usd'])} all on "
        f"{cost['baseline']}  savings {_pct(cost['savings'])}"
    )
    if req["outcomes"]:
        outcomes = "  ".join(f"{k} {v:,}" for k, v in req["outcomes"].items())
        lines.append(f"errors by type: {outcomes}")
    lines += ["", "providers"]
    rows = []
    for p in data["providers"]:
        failures = " ".join(f"{k}:{v}" for k, v in p["failures"].items()) or "-"
        rows.append(
            [
                p["name"],
                _fmt(p["calls"]),
                _fmt(p["served"]),
                failures,
                _fmt(p["breaker_trips"]),
                _fmt(p["time_open_s"]),
                _fmt(p["latency_ms"]["p50"]),
                _fmt(p["latency_ms"]["p95"]),
                _fmt(p["latency_ms"]["p99"]),
                _usd(p["cost_usd"]),
                _fmt(p["restarts"]),
            ]
        )
    lines += _table(
        ["", "calls", "served", "failures", "trips", "open s", "p50", "p95", "p99", "cost", "restarts"],
        rows,
    )
    lines += ["", "levels"]
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
        for level in data["levels"]
    ]
    lines += _table(["", "served", "share", "p50", "p95", "p99", "cost"], rows)
    if data["faults"]:
        lines += ["", "faults (MTTR: start -> answered without paying; end -> back in rotation)"]
        rows = []
        for fault in data["faults"]:
            end = "-" if fault["end_s"] is None else f"{fault['end_s']:g}"
            recovery = (
                "n/a" if not fault["in_rotation_before"] else _fmt(fault["recovery_s"], 2)
            )
            rows.append(
                [
                    fault["title"],
                    f"{fault['start_s']:g}",
                    end,
                    _fmt(fault["mttr_s"], 2) if fault["mttr_s"] is not None else "never",
                    recovery if fault["recovery_s"] is not None or recovery == "n/a" else "never",
                    _fmt(fault["paid_requests"]),
                ]
            )
        lines += _table(["", "at s", "end s", "mttr s", "back s", "paid"], rows)
    lines += ["", *render_strip(data["timeline"])]
    host = report.host
    if host.get("memory"):
        lines += ["", "memory checkpoints (after a full gc)"]
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
    runtime = data["runtime"]
    if runtime["history_lengths"]:
        lengths = "  ".join(f"{k}={v}" for k, v in runtime["history_lengths"].items())
        lines += ["", f"runtime histories at the end: {lengths} (max seen {runtime['history_max']})"]
    lines += ["", "expectations"]
    for check in report.checks:
        verdict = "PASS" if check.passed else "FAIL"
        if color:
            verdict = f"\x1b[32m{verdict}\x1b[0m" if check.passed else f"\x1b[31m{verdict}\x1b[0m"
        lines.append(f"  {verdict}  {check.name}  (measured {_measured(check.measured)})")
    lines.append("")
    lines.append("PASSED" if report.passed else "FAILED")
    return "\n".join(lines) + "\n"


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
