"""The numbers of a recorded run: requests, providers, breakers, levels, faults and the strip.

`measure_run` does all the arithmetic once and returns plain JSON data (rounded, key-sorted when
dumped) that depends only on the scenario, the seed and what the runtime did, so a virtual run
gives byte-identical JSON for the same seed.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from actors.config import LAST_RESORT_KINDS
from actors.prices import quality_baseline_model
from actors.window import nearest_rank
from runtime.scenario.format import Scenario
from runtime.scenario.recorder import NOT_SENT, RESULT_NAMES, Recorder, Result

#: Breaker states during which the provider gets no traffic.
OPEN_STATES = frozenset({"open", "forced_open"})
#: Breaker transition reasons that are holds rather than trips: a Retry-After, or (in a
#: ``[fleet]``) a trip, an auth or billing failure, or a half-open probe of another instance's.
HOLD_REASONS = frozenset({"retry_after", "fleet_open", "unavailable", "fleet_probing"})
#: Characters of the per-bucket strip, by level position; "x" = some request failed.
DEFAULT_LEVEL_CHARS = {"primary": "P", "secondary": "S", "emergency": "E", "last_resort": "L"}
ERROR_CHAR = "x"
IDLE_CHAR = "."
#: Longest strip before buckets grow past one second.
MAX_BUCKETS = 600


#: Nearest-rank percentile of already sorted values (None for no values).
percentile = nearest_rank


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
            starts, ends = successful_calls(recorder, positions)
            self.success_starts[provider] = starts
            self.success_ends[provider] = ends

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
                "mttr_s": worst(mttrs),
                "recovery_s": worst(recoveries) if served_before is not None else None,
                "in_rotation_before": served_before is not None,
                "paid_requests": paid,
                "instant": bool(step_info and step_info.instant),
            }
        )
    return out


def worst(values: Sequence[float | None]) -> float | None:
    """The largest value, or None (never recovered) if any window never recovered."""
    if not values or any(v is None for v in values):
        return None
    return _r(max(v for v in values if v is not None))


def _first_success_at_or_after(
    run: _Run, provider: int, at: float, before: float = math.inf
) -> float | None:
    """End time of the first successful call to `provider` that started in [at, before)."""
    starts = run.success_starts.get(provider, [])
    return first_success_end(starts, run.success_ends.get(provider, []), at, before)


def successful_calls(
    recorder: Recorder, positions: Iterable[int]
) -> tuple[list[float], list[float]]:
    """Start and end times of the successful calls among the attempts at `positions`, in the
    order they started: what `first_success_end` searches."""
    successes = sorted(
        (recorder.att_start[p], recorder.att_start[p] + recorder.att_latency_ms[p] / 1000)
        for p in positions
        if recorder.att_outcome[p] == 0
    )
    return [start for start, _ in successes], [end for _, end in successes]


def first_success_end(
    starts: Sequence[float], ends: Sequence[float], at: float, before: float = math.inf
) -> float | None:
    """End time of the first successful call (of `successful_calls`) that started in
    [at, before): when a provider was back in rotation."""
    position = bisect.bisect_left(starts, at)
    if position >= len(starts) or starts[position] >= before:
        return None
    return ends[position]


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


def wasted_calls(recorder: Recorder) -> int:
    """Calls sent to a provider during one of its fault windows that failed: what the runtime
    spent on a provider it could have known was failing. Not part of `measure_run` (a `run`
    report leaves it out); `uptax scenario compare` shows it."""
    return sum(wasted_attempts(recorder))


def clean_replies(recorder: Recorder) -> int:
    """Requests answered without a wasted call (`wasted_calls`) on the way: the goodput a
    provider's faults left whole."""
    paying = {
        recorder.att_request[position]
        for position, wasted in enumerate(wasted_attempts(recorder))
        if wasted
    }
    return sum(
        1
        for row in range(recorder.requests)
        if recorder.result[row] == Result.REPLY and recorder.index[row] not in paying
    )


def wasted_attempts(recorder: Recorder) -> list[bool]:
    """Per attempt, whether it was a wasted call (`wasted_calls`)."""
    windows: dict[int, list[tuple[float, float]]] = {}
    for fault in recorder.faults:
        end = fault.end if fault.end is not None else math.inf
        windows.setdefault(recorder.providers.code(fault.provider), []).append((fault.start, end))
    wasted = []
    for position, provider in enumerate(recorder.att_provider):
        spans = windows.get(provider)
        if not spans or recorder.outcomes[recorder.att_outcome[position]] in ("ok", *NOT_SENT):
            wasted.append(False)
            continue
        start = recorder.att_start[position]
        wasted.append(any(low <= start < high for low, high in spans))
    return wasted


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


def measure_run(recorder: Recorder, scenario: Scenario, *, seed: int, mode: str) -> dict[str, Any]:
    """All the numbers of a run, as JSON-ready data (no expectations yet)."""
    run = _Run(recorder, scenario)
    results = Counter(RESULT_NAMES[Result(code)] for code in recorder.result)
    issued = max(recorder.issued, recorder.requests)
    clean_latency = _clean_latency_ms(run)
    return {
        "scenario": _scenario_info(scenario, seed=seed, mode=mode),
        "requests": _request_counts(recorder, results, issued),
        **_shares(recorder, scenario, results, issued),
        **_latencies(recorder),
        "clean_latency_ms": _r(clean_latency, 2),
        "cost": _cost(recorder, scenario),
        "providers": _provider_stats(run),
        "levels": _level_stats(run),
        "faults": _fault_stats(run, clean_latency),
        "actors": dict(sorted(recorder.actor_restarts.items())),
        "runtime": _runtime_stats(recorder),
        "breakers": {
            name: [[_r(c.at), c.state] for c in changes]
            for name, changes in sorted(recorder.breaker.items())
        },
        "timeline": _timeline(run, _strip_chars(recorder, scenario)),
    }


def _scenario_info(scenario: Scenario, *, seed: int, mode: str) -> dict[str, Any]:
    return {
        "name": scenario.name,
        "file": scenario.path,
        "description": scenario.info.description,
        "seed": seed,
        "mode": mode,
        "duration_s": scenario.load.duration_s,
        "rps": scenario.load.rps,
        "concurrency": scenario.load.concurrency,
    }


def _request_counts(rec: Recorder, results: Counter[str], issued: int) -> dict[str, Any]:
    """How the requests ended; a request never recorded or without a typed end is lost."""
    lost = results.get("lost", 0) + results.get("untyped_error", 0) + (issued - rec.requests)
    return {
        "issued": issued,
        "answered": results.get("reply", 0),
        "streamed": sum(rec.stream),
        "outcomes": {k: v for k, v in sorted(results.items()) if k not in ("reply",)},
        "errors_total": sum(
            v for k, v in results.items() if k not in ("reply", "lost", "untyped_error")
        ),
        "lost": lost,
        "over_budget": sum(rec.over_budget),
        "queued_ms_max": _r(max(rec.queue_ms, default=0.0), 2),
    }


def _shares(
    rec: Recorder, scenario: Scenario, results: Counter[str], issued: int
) -> dict[str, float | None]:
    """Availability (any reply), by a model (not a last resort), and the fallback rate."""
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
    return {
        "availability": _r(answered / issued if issued else 0.0, 6),
        "model_availability": _r(by_model / issued if issued else 0.0, 6),
        "fallback_rate": _r(fallbacks / answered if answered else 0.0, 6),
    }


def _latencies(rec: Recorder) -> dict[str, dict[str, float | None]]:
    """Latency of every request that ended (lost ones have none), and of the replies alone."""
    ended = [rec.latency_ms[row] for row in range(rec.requests) if rec.result[row] != Result.LOST]
    replies = [
        rec.latency_ms[row] for row in range(rec.requests) if rec.result[row] == Result.REPLY
    ]
    return {"latency_ms": _percentiles(ended), "reply_latency_ms": _percentiles(replies)}


def _cost(rec: Recorder, scenario: Scenario) -> dict[str, Any]:
    """What the run cost against sending everything to the primary's first model."""
    total = sum(rec.cost)
    baseline = sum(rec.baseline_cost)
    primary = scenario.config.provider(scenario.primary)
    cost = {
        "total_usd": _r(total, 8),
        "baseline_usd": _r(baseline, 8),
        "baseline": f"{primary.name}/{primary.models[0] if primary.models else '-'}",
        "savings": _r(1.0 - total / baseline, 6) if baseline > 0 else None,
    }
    if any(entry.cost is not None for entry in scenario.load.mix):
        cost.update(_quality_cost(rec, scenario, total))
    return cost


def _quality_cost(rec: Recorder, scenario: Scenario, total: float) -> dict[str, Any]:
    """The saving against the same provider at each request's quality (its best model for
    that quality, `quality_baseline_model`): reported when some request asks for a cost tier,
    since a tier trades price within a quality, which the one-model baseline cannot show."""
    baseline = sum(rec.quality_baseline_cost)
    qualities = sorted({entry.quality for entry in scenario.load.mix})
    models = {}
    for quality in qualities:
        provider, model = quality_baseline_model(scenario.config, quality)
        models[quality] = f"{provider}/{model or '-'}"
    return {
        "quality_baseline_usd": _r(baseline, 8),
        "quality_baselines": models,
        "quality_savings": _r(1.0 - total / baseline, 6) if baseline > 0 else None,
    }


def _runtime_stats(rec: Recorder) -> dict[str, Any]:
    return {
        "history_max": rec.history_max,
        "history_lengths": dict(sorted(rec.history_lengths.items())),
        "events": dict(sorted(rec.events.items())),
        "events_dropped": rec.events_dropped,
    }


def _strip_chars(rec: Recorder, scenario: Scenario) -> dict[str, str]:
    """The strip's characters: the configured levels first, then any level seen only in the run."""
    chars = level_chars([level.name for level in scenario.config.levels])
    for name in rec.levels.names:
        if name not in chars:
            chars = level_chars([*chars, name])
    return chars
