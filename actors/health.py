"""A provider's health as the seed defines it, kept by its actor from the calls it makes.

Status follows the seed's rules: a success resets the run of consecutive failures (healthy), two
in a row make the provider degraded and three critical; a provider that cannot be asked at all
(no credentials, auth rejected, actor down) is offline until marked available again. Next to the
status it keeps what the router ranks on: latency (EWMA, p50, p95 over recent samples), error
rate over a sliding time window, and the quota remaining.
"""

from __future__ import annotations

import math

import attrs
import trio

from actors.messages import HealthStatus
from actors.window import Clock, LatencyWindow, SlidingWindow


@attrs.frozen
class HealthSnapshot:
    """The health fields of a `actors.messages.ProviderSnapshot`, as of `at`."""

    at: float
    status: HealthStatus
    latency_ms: float
    latency_p50_ms: float
    latency_p95_ms: float
    error_rate: float
    calls_in_window: int
    quota_remaining: float
    consecutive_failures: int
    last_check: float | None
    available: bool
    reason: str


class HealthTracker:
    """Health of one provider, updated per call and read as a frozen `HealthSnapshot`."""

    def __init__(
        self,
        *,
        clock: Clock = trio.current_time,
        window_s: float = 60.0,
        buckets: int = 10,
        latency_samples: int = 256,
        latency_alpha: float = 0.2,
        latency_stale_s: float = 30.0,
        degraded_after: int = 2,
        critical_after: int = 3,
    ) -> None:
        if isinstance(degraded_after, bool) or not isinstance(degraded_after, int):
            raise ValueError(f"degraded_after={degraded_after!r} must be a positive integer")
        if not 1 <= degraded_after <= critical_after:
            raise ValueError(
                f"degraded_after={degraded_after!r} and critical_after={critical_after!r} "
                "must satisfy 1 <= degraded_after <= critical_after"
            )
        self._clock = clock
        self._errors = SlidingWindow(window_s, buckets=buckets, clock=clock)
        self._latency = LatencyWindow(latency_samples, alpha=latency_alpha)
        self._latency_stale_s = latency_stale_s
        self.degraded_after = degraded_after
        self.critical_after = critical_after
        self._consecutive_failures = 0
        self._quota_remaining = 1.0
        self._last_check: float | None = None
        #: Whether the provider can be asked at all (see `mark_unavailable`).
        self.available = True
        self._reason = ""

    def __repr__(self) -> str:
        return f"<HealthTracker status={self.status} consecutive_failures={self._consecutive_failures}>"

    @property
    def status(self) -> HealthStatus:
        if not self.available:
            return HealthStatus.OFFLINE
        if self._consecutive_failures >= self.critical_after:
            return HealthStatus.CRITICAL
        if self._consecutive_failures >= self.degraded_after:
            return HealthStatus.DEGRADED
        return HealthStatus.HEALTHY

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    @property
    def quota_remaining(self) -> float:
        return self._quota_remaining

    @property
    def last_check(self) -> float | None:
        return self._last_check

    def record_success(self, latency_s: float, *, now: float | None = None) -> HealthStatus:
        """A call answered after `latency_s` seconds; returns the status after it. `now`, here
        and below: the clock's time, when the caller has just read it."""
        if now is None:
            now = self._clock()
        self._record_latency(latency_s, now)
        self._errors.record(failure=False, now=now)
        self._consecutive_failures = 0
        self._last_check = now
        return self.status

    def record_failure(
        self, latency_s: float | None = None, *, now: float | None = None
    ) -> HealthStatus:
        """A call failed in a way that is the provider's fault; returns the status after it.

        `latency_s` joins the latency samples when given: pass it for a slow failure (a timeout
        says the provider is slow), leave it out for a fast error that would flatter the mean.
        """
        if now is None:
            now = self._clock()
        if latency_s is not None:
            self._record_latency(latency_s, now)
        self._errors.record(failure=True, now=now)
        self._consecutive_failures += 1
        self._last_check = now
        return self.status

    def _record_latency(self, latency_s: float, now: float) -> None:
        """A sample after more than `latency_stale_s` without one starts the average afresh:
        the router already stopped trusting the old average (it scores it neutral), and one
        outlier from before a long silence must not keep a recovered provider looking slow."""
        last = self._last_check
        stale = last is not None and now - last > self._latency_stale_s
        self._latency.record(latency_s, alpha=1.0 if stale else None)

    def set_quota(self, fraction: float) -> None:
        """Record the fraction (0..1) of the provider's rate-limit quota left."""
        if not isinstance(fraction, int | float) or isinstance(fraction, bool):
            raise ValueError(f"quota fraction={fraction!r} must be a number between 0 and 1")
        if math.isnan(fraction) or not 0.0 <= fraction <= 1.0:
            raise ValueError(f"quota fraction={fraction!r} must be between 0 and 1")
        self._quota_remaining = float(fraction)

    def mark_unavailable(self, reason: str) -> None:
        """The provider cannot be asked at all (no credentials, auth rejected, actor down)."""
        self.available = False
        self._reason = reason

    def mark_available(self) -> None:
        self.available = True
        self._reason = ""

    def restore(
        self,
        *,
        consecutive_failures: int,
        quota_remaining: float,
        last_check: float | None,
        available: bool,
        reason: str,
    ) -> None:
        """Take up a previous incarnation's counters (its windows start afresh)."""
        self._consecutive_failures = consecutive_failures
        self._quota_remaining = quota_remaining
        self._last_check = last_check
        self.available = available
        self._reason = reason

    def snapshot(self) -> HealthSnapshot:
        latency = self._latency.summary()
        counts = self._errors.counts()
        return HealthSnapshot(
            at=self._clock(),
            status=self.status,
            latency_ms=latency.ewma_s * 1000.0,
            latency_p50_ms=latency.p50_s * 1000.0,
            latency_p95_ms=latency.p95_s * 1000.0,
            error_rate=counts.failure_rate,
            calls_in_window=counts.calls,
            quota_remaining=self._quota_remaining,
            consecutive_failures=self._consecutive_failures,
            last_check=self._last_check,
            available=self.available,
            reason=self._reason,
        )
