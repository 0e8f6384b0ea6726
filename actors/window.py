"""Bounded windows over recent calls: counters over a sliding time window, and latency samples.

Both are pure and driven by an injected clock (trio's by default), so a breaker or health tracker
built on them can be tested in virtual time. Recording is O(1) and allocates nothing; the
aggregates a snapshot needs are kept as running totals (the time window subtracts a bucket's
counts when it is evicted) or computed on demand (latency percentiles sort a copy only then).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import attrs
import trio

Clock = Callable[[], float]


def nearest_rank(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q`-quantile of already sorted values (None for no values): the one
    definition the runtime's windows, the dashboard and the scenario reports share."""
    if not ordered:
        return None
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


@attrs.frozen
class WindowCounts:
    """Calls, failures and slow calls seen over a sliding window, with the derived rates."""

    calls: int
    failures: int
    slow: int

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_rate(self) -> float:
        return self.slow / self.calls if self.calls else 0.0


class SlidingWindow:
    """Call counters over the last `window_s` seconds, split into `buckets` equal time buckets.

    Like Polly's sampling duration: time is cut into buckets of ``window_s / buckets`` seconds,
    numbered ``floor(t / width)``; a call recorded at ``t`` counts while the current bucket number
    is less than its own plus `buckets`, and is subtracted the moment time moves past that. So
    the window covers between ``window_s - width`` and ``window_s`` seconds of history, and an
    eviction happens exactly at a bucket boundary.
    """

    __slots__ = (
        "_buckets",
        "_calls",
        "_clock",
        "_failures",
        "_head",
        "_slow",
        "_total_calls",
        "_total_failures",
        "_total_slow",
        "_width",
        "window_s",
    )

    def __init__(self, window_s: float, *, buckets: int = 10, clock: Clock = trio.current_time):
        if not window_s > 0 or math.isinf(window_s):
            raise ValueError(f"window_s={window_s!r} must be a positive, finite number of seconds")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ValueError(f"buckets={buckets!r} must be a positive integer")
        self.window_s = float(window_s)
        self._buckets = buckets
        self._width = self.window_s / buckets
        self._clock = clock
        self._calls = [0] * buckets
        self._failures = [0] * buckets
        self._slow = [0] * buckets
        self._total_calls = 0
        self._total_failures = 0
        self._total_slow = 0
        #: Number of the newest bucket the ring holds; None until the first use.
        self._head: int | None = None

    def __repr__(self) -> str:
        return (
            f"<SlidingWindow {self.window_s:g}s/{self._buckets} calls={self.calls} "
            f"failures={self.failures} slow={self.slow}>"
        )

    def bucket_of(self, t: float) -> int:
        """The number of the bucket time `t` falls in."""
        return math.floor(t / self._width)

    def _advance(self, now: float | None = None) -> int:
        """Evict every bucket that time has moved past (as of `now`, the clock's time unless
        the caller already read it); return the current bucket's slot."""
        current = self.bucket_of(self._clock() if now is None else now)
        head = self._head
        if head is None:
            head = current
        elif current > head:
            n = self._buckets
            if current - head >= n:
                self._zero()
            else:
                for number in range(head + 1, current + 1):
                    slot = number % n
                    self._total_calls -= self._calls[slot]
                    self._total_failures -= self._failures[slot]
                    self._total_slow -= self._slow[slot]
                    self._calls[slot] = self._failures[slot] = self._slow[slot] = 0
            head = current
        # A clock that steps back (never trio's) records into the newest bucket.
        self._head = head
        return head % self._buckets

    def _zero(self) -> None:
        for slot in range(self._buckets):
            self._calls[slot] = self._failures[slot] = self._slow[slot] = 0
        self._total_calls = self._total_failures = self._total_slow = 0

    def record(
        self, *, failure: bool = False, slow: bool = False, now: float | None = None
    ) -> tuple[int, int, int]:
        """Count one call that ended now (`now`: the clock's time, when the caller has it);
        return the window's calls, failures and slow calls after it, for a check after every
        call that need not build a `WindowCounts`."""
        slot = self._advance(now)
        self._calls[slot] += 1
        self._total_calls += 1
        if failure:
            self._failures[slot] += 1
            self._total_failures += 1
        if slow:
            self._slow[slot] += 1
            self._total_slow += 1
        return self._total_calls, self._total_failures, self._total_slow

    def clear(self) -> None:
        """Forget every call (a breaker that closes starts from a clean window)."""
        self._zero()
        self._head = None

    @property
    def calls(self) -> int:
        self._advance()
        return self._total_calls

    @property
    def failures(self) -> int:
        self._advance()
        return self._total_failures

    @property
    def slow(self) -> int:
        self._advance()
        return self._total_slow

    @property
    def failure_rate(self) -> float:
        return self.counts().failure_rate

    @property
    def slow_rate(self) -> float:
        return self.counts().slow_rate

    def counts(self, now: float | None = None) -> WindowCounts:
        """The window's totals as of now (`now`: as for `record`), in O(1)."""
        self._advance(now)
        return WindowCounts(self._total_calls, self._total_failures, self._total_slow)


@attrs.frozen
class LatencySummary:
    """Latency of recent calls, in seconds; all 0.0 before the first sample."""

    ewma_s: float
    p50_s: float
    p95_s: float
    samples: int


class LatencyWindow:
    """The last `size` latency samples (for percentiles) and an exponentially weighted mean.

    The EWMA follows the trend with weight `alpha` on the newest sample and starts at the first
    sample; the percentiles are nearest-rank over the samples held, sorted only when asked for.
    """

    __slots__ = ("_count", "_ewma", "_next", "_samples", "alpha", "size")

    def __init__(self, size: int = 256, *, alpha: float = 0.2):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size={size!r} must be a positive integer")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha={alpha!r} must be in (0, 1]")
        self.size = size
        self.alpha = float(alpha)
        self._samples = [0.0] * size
        self._next = 0
        self._count = 0
        self._ewma: float | None = None

    def __repr__(self) -> str:
        return f"<LatencyWindow samples={self._count}/{self.size} ewma_s={self.ewma_s:.4f}>"

    def record(self, latency_s: float, *, alpha: float | None = None) -> None:
        """Add one sample, replacing the oldest once the window is full. `alpha`, when given,
        weighs this sample in the EWMA instead of the window's own (a sample after a long
        silence should count for more than one in a steady stream)."""
        if not 0.0 <= latency_s < math.inf:  # NaN fails both comparisons
            raise ValueError(f"latency_s={latency_s!r} must be a finite number >= 0")
        self._samples[self._next] = latency_s
        self._next = (self._next + 1) % self.size
        if self._count < self.size:
            self._count += 1
        ewma = self._ewma
        weight = self.alpha if alpha is None else alpha
        self._ewma = latency_s if ewma is None else ewma + weight * (latency_s - ewma)

    def clear(self) -> None:
        self._next = 0
        self._count = 0
        self._ewma = None

    @property
    def samples(self) -> int:
        return self._count

    @property
    def ewma_s(self) -> float:
        return 0.0 if self._ewma is None else self._ewma

    def percentile(self, q: float) -> float:
        """The nearest-rank `q`-quantile (0 < q <= 1) of the samples held; 0.0 when empty."""
        if not 0.0 < q <= 1.0:
            raise ValueError(f"q={q!r} must be in (0, 1]")
        return nearest_rank(sorted(self._samples[: self._count]), q) or 0.0

    def summary(self) -> LatencySummary:
        """EWMA, p50 and p95 as of now (one sort)."""
        ordered = sorted(self._samples[: self._count])
        return LatencySummary(
            ewma_s=self.ewma_s,
            p50_s=nearest_rank(ordered, 0.50) or 0.0,
            p95_s=nearest_rank(ordered, 0.95) or 0.0,
            samples=self._count,
        )
