"""Fallback statistics, a bounded performance history per provider, recommendations and alerts.

These are the seed's "stats and status" and "alerts" sections. Everything here is plain state
updated in O(1) per record (O(attempts) per request) and bounded in memory, so the cascade can
record every request inline; the read side (summaries, recommendations, alerts) does the little
arithmetic there is, over at most `history size` samples per provider.
"""

from __future__ import annotations

import enum
import statistics
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs
import structlog
import trio

# Last-resort kinds' "failures" are misses (no cached reply, no template), not health problems.
from actors.kinds import LAST_RESORT_KINDS
from actors.messages import Attempt, HealthStatus, ProviderSnapshot, Reply, Request

if TYPE_CHECKING:
    from actors.config import Config

_log = structlog.get_logger("uptax.stats")

ALL_NORMAL = "all systems operating normally"
INVESTIGATE_PRIMARIES = "investigate primary providers"


# --- fallback statistics ---


@attrs.frozen
class FallbackStatsSnapshot:
    """Counts since the runtime started; `cattrs.unstructure` makes it JSON-ready."""

    total_requests: int
    #: Requests answered, and requests that ended in an error.
    successes: int
    failures: int
    #: Requests that needed more than their first attempt (replies and errors alike).
    fallback_used: int
    fallback_rate: float
    #: Replies per level and per provider that served them.
    by_level: dict[str, int]
    by_provider: dict[str, int]
    #: Failed attempts (of any request) per FailureKind value.
    failures_by_kind: dict[str, int]
    #: Requests that ended in an error, per error kind ("all_levels_failed", ...).
    errors_by_kind: dict[str, int]


@attrs.frozen
class RequestEnded:
    """One finished request, as request listeners see it (`FallbackStats.add_listener`)."""

    request: Request
    #: The reply, or None when the request ended in an error.
    reply: Reply | None
    #: "reply", or the error kind as `FallbackStatsSnapshot.errors_by_kind` counts it.
    outcome: str
    attempts: tuple[Attempt, ...]
    #: From the request's start to its end.
    latency_ms: float

    @property
    def fallback_used(self) -> bool:
        if self.reply is not None:
            return self.reply.fallback_used
        return len(self.attempts) > 1


RequestListener = Callable[[RequestEnded], None]


class FallbackStats:
    """Counters of how requests were served; the cascade records each request exactly once.

    Listeners (`add_listener`) are told of every finished request, synchronously and in the
    task that ran it: they must be quick and must not raise. With none, the cascade builds no
    `RequestEnded` at all (`listening` is False).
    """

    def __init__(self) -> None:
        self._listeners: list[RequestListener] = []
        self.total_requests = 0
        self.successes = 0
        self.failures = 0
        self.fallback_used = 0
        self._by_level: Counter[str] = Counter()
        self._by_provider: Counter[str] = Counter()
        self._failures_by_kind: Counter[str] = Counter()
        self._errors_by_kind: Counter[str] = Counter()

    @property
    def fallback_rate(self) -> float:
        return self.fallback_used / self.total_requests if self.total_requests else 0.0

    def record_reply(self, reply: Reply) -> None:
        self.total_requests += 1
        self.successes += 1
        if reply.fallback_used:
            self.fallback_used += 1
        self._by_level[reply.level] += 1
        self._by_provider[reply.provider] += 1
        self._count_failed_attempts(reply.attempts)

    def record_error(self, attempts: Sequence[Attempt], error_kind: str) -> None:
        """A request that ended in an error; it used fallback if more than one attempt was made."""
        self.total_requests += 1
        self.failures += 1
        if len(attempts) > 1:
            self.fallback_used += 1
        self._errors_by_kind[error_kind] += 1
        self._count_failed_attempts(attempts)

    def _count_failed_attempts(self, attempts: Iterable[Attempt]) -> None:
        for attempt in attempts:
            if attempt.outcome != "ok":
                self._failures_by_kind[attempt.outcome] += 1

    @property
    def listening(self) -> bool:
        return bool(self._listeners)

    def add_listener(self, listener: RequestListener) -> Callable[[], None]:
        """Tell `listener` of every request that ends from now on; returns the unsubscribe."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def notify(self, ended: RequestEnded) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(ended)
            except Exception as exc:  # an observer must never fail the request it observes
                _log.error("request_listener_failed", listener=repr(listener), error=repr(exc))

    def snapshot(self) -> FallbackStatsSnapshot:
        return FallbackStatsSnapshot(
            total_requests=self.total_requests,
            successes=self.successes,
            failures=self.failures,
            fallback_used=self.fallback_used,
            fallback_rate=self.fallback_rate,
            by_level=dict(self._by_level),
            by_provider=dict(self._by_provider),
            failures_by_kind=dict(self._failures_by_kind),
            errors_by_kind=dict(self._errors_by_kind),
        )


# --- performance history ---


class Sample(NamedTuple):
    """One call to one provider: when it started (trio time), how long it took, whether it worked."""

    at: float
    latency_ms: float
    ok: bool


@attrs.frozen
class PerformanceSummary:
    """The seed's summary over a provider's most recent calls."""

    provider: str
    #: Samples held (at most the history size) and samples summarised (at most `recent`).
    samples: int
    recent: int
    average_latency_ms: float | None
    success_rate: float | None
    recent_failures: int
    baseline_latency_ms: float | None


class PerformanceHistory:
    """The last `size` calls of each provider, and each provider's latency baseline.

    The baseline is the configured one (`set_baseline`, or `for_config` from simulated providers'
    `latency_ms`) or else the median of the first `baseline_samples` successful calls observed.
    """

    def __init__(self, size: int = 100, *, recent: int = 10, baseline_samples: int = 10) -> None:
        if size < 1 or recent < 1 or baseline_samples < 1:
            raise ValueError("size, recent and baseline_samples must be >= 1")
        self.size = size
        self.recent = recent
        self.baseline_samples = baseline_samples
        self._samples: dict[str, deque[Sample]] = {}
        self._baselines: dict[str, float] = {}
        self._first_ok: dict[str, list[float]] = {}

    @classmethod
    def for_config(cls, config: Config) -> PerformanceHistory:
        """Sized by `runtime.history_size`, with simulated providers' latency_ms as baselines."""
        history = cls(config.runtime.history_size)
        for provider in config.providers:
            if provider.kind == "simulated" and provider.latency_ms > 0:
                history.set_baseline(provider.name, provider.latency_ms)
        return history

    def record(self, provider: str, at: float, latency_ms: float, ok: bool = True) -> None:
        samples = self._samples.get(provider)
        if samples is None:
            samples = self._samples[provider] = deque(maxlen=self.size)
        samples.append(Sample(at, latency_ms, ok))
        if ok and provider not in self._baselines:
            first = self._first_ok.setdefault(provider, [])
            first.append(latency_ms)
            if len(first) >= self.baseline_samples:
                self._baselines[provider] = statistics.median(first)
                del self._first_ok[provider]

    def set_baseline(self, provider: str, latency_ms: float) -> None:
        self._baselines[provider] = latency_ms
        self._first_ok.pop(provider, None)

    def baseline(self, provider: str) -> float | None:
        return self._baselines.get(provider)

    def providers(self) -> tuple[str, ...]:
        return tuple(self._samples)

    def samples(self, provider: str) -> tuple[Sample, ...]:
        return tuple(self._samples.get(provider, ()))

    def summary(self, provider: str) -> PerformanceSummary:
        samples = self._samples.get(provider, deque())
        count = min(self.recent, len(samples))
        recent = [samples[-1 - index] for index in range(count)]
        failures = sum(1 for sample in recent if not sample.ok)
        return PerformanceSummary(
            provider=provider,
            samples=len(samples),
            recent=count,
            average_latency_ms=(
                sum(sample.latency_ms for sample in recent) / count if count else None
            ),
            success_rate=(count - failures) / count if count else None,
            recent_failures=failures,
            baseline_latency_ms=self._baselines.get(provider),
        )

    def summaries(self) -> tuple[PerformanceSummary, ...]:
        return tuple(self.summary(provider) for provider in self._samples)

    def error_rate_since(self, provider: str, since: float) -> tuple[float, int]:
        """Failure fraction of the calls that started at or after `since`, and how many there were."""
        calls = failures = 0
        for sample in reversed(self._samples.get(provider, ())):
            if sample.at < since:
                break
            calls += 1
            failures += not sample.ok
        return (failures / calls if calls else 0.0), calls


# --- recommendations ---


def recommendations(
    provider_snapshots: Sequence[ProviderSnapshot],
    stats: FallbackStats | FallbackStatsSnapshot,
    history: PerformanceHistory,
    *,
    fallback_rate_threshold: float = 0.10,
) -> tuple[str, ...]:
    """The seed's rules, most urgent first; "all systems operating normally" when none applies."""
    advice: list[str] = []
    for snapshot in provider_snapshots:
        name = snapshot.provider
        if snapshot.status in (HealthStatus.CRITICAL, HealthStatus.OFFLINE):
            advice.append(f"{name} needs attention")
        elif snapshot.kind not in LAST_RESORT_KINDS and (
            snapshot.status is HealthStatus.DEGRADED
            or snapshot.consecutive_failures > 0
            or history.summary(name).recent_failures > 0
        ):
            advice.append(f"monitor {name}")
    if stats.fallback_rate > fallback_rate_threshold:
        advice.append(INVESTIGATE_PRIMARIES)
    return tuple(advice) if advice else (ALL_NORMAL,)


# --- alerts ---


class AlertKind(enum.StrEnum):
    OFFLINE = "offline"
    ERROR_RATE = "error_rate"
    LATENCY = "latency"
    QUOTA = "quota"
    #: Raised by the change detectors (`actors.detect`), not by these rules.
    PREDICTED_DEGRADATION = "predicted_degradation"
    #: Raised by the brownout watch (`actors.brownout`) of a level with a brownout policy.
    BROWNOUT = "brownout"


@attrs.frozen
class Alert:
    provider: str
    kind: AlertKind
    message: str
    #: trio time since which the condition has held.
    since: float


@attrs.frozen
class AlertRules:
    """The seed's alert thresholds."""

    offline_after_s: float = 60.0
    error_rate: float = 0.10
    error_window_s: float = 300.0
    #: No error-rate alert on fewer calls than this in the window (1 failure of 1 is not 100 %).
    error_min_calls: int = 10
    latency_factor: float = 5.0
    quota_floor: float = 0.20


class AlertWatch:
    """Evaluates the alert rules, remembering since when each condition has held.

    Feed it heartbeats with `observe` (so "offline for more than a minute" is timed from the first
    offline heartbeat) or just call `alerts`, which observes the snapshots it is given.
    """

    def __init__(
        self,
        rules: AlertRules | None = None,
        *,
        clock: Callable[[], float] = trio.current_time,
        emit: Callable[..., Any] | None = None,
    ) -> None:
        self.rules = rules or AlertRules()
        self._clock = clock
        self._emit = emit or _log.warning
        self._offline_since: dict[str, float] = {}
        self._since: dict[tuple[str, AlertKind], float] = {}

    def observe(self, snapshot: ProviderSnapshot) -> None:
        if snapshot.status is HealthStatus.OFFLINE:
            self._offline_since.setdefault(snapshot.provider, snapshot.at)
        else:
            self._offline_since.pop(snapshot.provider, None)

    def alerts(
        self, provider_snapshots: Sequence[ProviderSnapshot], history: PerformanceHistory
    ) -> tuple[Alert, ...]:
        """Alerts firing now, in snapshot order; logs each alert raised and each one cleared."""
        now = self._clock()
        rules = self.rules
        firing: list[Alert] = []
        active: set[tuple[str, AlertKind]] = set()

        def fire(provider: str, kind: AlertKind, message: str, since: float | None = None) -> None:
            key = (provider, kind)
            active.add(key)
            if key not in self._since:
                self._since[key] = since if since is not None else now
                self._emit("alert_raised", provider=provider, alert=kind.value, detail=message)
            firing.append(Alert(provider, kind, message, self._since[key]))

        for snapshot in provider_snapshots:
            self.observe(snapshot)
            name = snapshot.provider
            offline_since = self._offline_since.get(name)
            if offline_since is not None and now - offline_since > rules.offline_after_s:
                fire(
                    name,
                    AlertKind.OFFLINE,
                    f"{name} offline for {now - offline_since:.0f} s",
                    offline_since,
                )
            if snapshot.kind in LAST_RESORT_KINDS:
                continue
            rate, calls = history.error_rate_since(name, now - rules.error_window_s)
            if calls >= rules.error_min_calls and rate > rules.error_rate:
                window_min = rules.error_window_s / 60
                fire(
                    name,
                    AlertKind.ERROR_RATE,
                    f"{name} error rate {rate:.0%} over {calls} calls in {window_min:g} min",
                )
            summary = history.summary(name)
            baseline = summary.baseline_latency_ms
            latency = summary.average_latency_ms
            if (
                baseline is not None
                and baseline > 0
                and latency is not None
                and latency > rules.latency_factor * baseline
            ):
                fire(
                    name,
                    AlertKind.LATENCY,
                    f"{name} latency {latency:.0f} ms is over {rules.latency_factor:g}x "
                    f"its baseline {baseline:.0f} ms",
                )
            if snapshot.quota_remaining < rules.quota_floor:
                fire(
                    name,
                    AlertKind.QUOTA,
                    f"{name} quota at {snapshot.quota_remaining:.0%}",
                )
        for key in [key for key in self._since if key not in active]:
            del self._since[key]
            self._emit("alert_cleared", provider=key[0], alert=key[1].value)
        return tuple(firing)
