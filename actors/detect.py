"""Predictive failure detection: a change detector per provider over its latency and errors.

Each provider's calls feed two one-sided CUSUMs of log-likelihood ratios (Page's test), one on
the log of each successful call's latency and one on whether each call failed, both against a
baseline learned online (an exponentially weighted mean and variance). Two parameters have a
meaning of their own:

- `shift_sd`, the degradation to detect, in baseline standard deviations: the latency test
  weighs each call as evidence of a log-latency `shift_sd` sds above the baseline's (a Gaussian
  likelihood ratio), the error test of an error rate `shift_sd` sds of the error indicator above
  the baseline rate (a Bernoulli likelihood ratio).
- `arl`, the in-control average run length: the detector fires when a statistic reaches
  ``h = ln(arl)``, and a CUSUM of log-likelihood ratios with threshold h runs at least e^h
  observations on the baseline between false alarms (Lorden, 1971), so `arl` is a floor on
  the healthy calls between false alarms.

The baseline learns from every call but slowly (a memory of some 2,000 calls, against the tens
to hundreds a test needs to fire), so a degradation is found long before the baseline takes it
for normal; it learns nothing while the provider is demoted. Learning from every call keeps it
unbiased on a healthy provider, which the ARL bound needs: a baseline that skipped the calls
that looked bad would sit below the truth and fire on noise. When a test fires, the
provider is demoted for `hold_s` (`Demotion`); then the alarm clears and the test restarts
halfway to its threshold (Lucas and Crosier's fast initial response), so a degradation that
persists fires again within a few calls while a recovered provider drifts back to zero.

Everything is O(1) per call and timed on trio's clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

import attrs
import trio

__all__ = ["DegradationWatch", "Demotion", "Detector", "DetectorSettings"]

#: Weight of each new call in the baseline (once more than 1/ALPHA calls have been seen; before
#: that the baseline is the plain mean of what it has seen): a memory of some 2,000 calls.
ALPHA = 1.0 / 2000.0
#: Calls a test needs before it may fire: its baseline is not worth testing against before.
WARMUP_CALLS = 50
#: The smallest log-latency standard deviation: a change under 5 % is never a shift.
MIN_LOG_SD = 0.05
#: One call's latency evidence is clipped at this many sds, so one outlier cannot fire a test.
CLIP_SD = 4.0


@attrs.frozen
class DetectorSettings:
    """`[routing] predict_*`: see the module docstring."""

    shift_sd: float = 1.0
    arl: float = 1e7
    hold_s: float = 30.0

    @property
    def threshold(self) -> float:
        return math.log(self.arl)


class _Baseline:
    """Exponentially weighted mean and variance, exact while fewer than 1/ALPHA samples."""

    __slots__ = ("mean", "n", "var")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def update(self, x: float) -> None:
        self.n += 1
        alpha = max(1.0 / self.n, ALPHA)
        delta = x - self.mean
        self.mean += alpha * delta
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta)


class _Cusum:
    """A one-sided CUSUM, with what it has seen since it last left zero (the estimated change
    point): how many calls, and the sum of their values (sds of latency, or failures)."""

    __slots__ = ("calls", "statistic", "total")

    def __init__(self) -> None:
        self.statistic = 0.0
        self.calls = 0
        self.total = 0.0

    def add(self, llr: float, value: float) -> None:
        statistic = self.statistic + llr
        if statistic <= 0.0:
            self.statistic, self.calls, self.total = 0.0, 0, 0.0
        else:
            self.statistic = statistic
            self.calls += 1
            self.total += value

    def restart(self, head_start: float) -> None:
        self.statistic, self.calls, self.total = head_start, 0, 0.0


class _LatencyTest:
    """Page's test for a rise of `shift` sds in a Gaussian log-latency."""

    __slots__ = ("baseline", "cusum", "shift")

    def __init__(self, shift: float) -> None:
        self.shift = shift
        self.baseline = _Baseline()
        self.cusum = _Cusum()

    def add(self, latency_ms: float, learn: bool) -> None:
        x = math.log(max(latency_ms, 1e-3))
        baseline = self.baseline
        if baseline.n >= WARMUP_CALLS:
            sd = max(math.sqrt(baseline.var), MIN_LOG_SD)
            z = min(max((x - baseline.mean) / sd, -CLIP_SD), CLIP_SD)
            self.cusum.add(self.shift * (z - self.shift / 2.0), z)
        if learn:
            baseline.update(x)

    def evidence(self) -> str:
        cusum = self.cusum
        mean = cusum.total / cusum.calls if cusum.calls else 0.0
        return f"latency {mean:+.1f} sd over {cusum.calls} calls"


class _ErrorTest:
    """Page's test for a rise of the error rate by `shift` sds of the error indicator."""

    __slots__ = ("baseline", "cusum", "shift")

    def __init__(self, shift: float) -> None:
        self.shift = shift
        self.baseline = _Baseline()
        self.cusum = _Cusum()

    def rate(self) -> float:
        """The baseline error rate, never under half a failure in the calls it remembers: a
        few hundred clean calls cannot tell 0.1 % from 0.5 %."""
        baseline = self.baseline
        remembered = min(baseline.n, 1.0 / ALPHA)
        return min(max(baseline.mean, 0.5 / max(remembered, 1.0)), 0.5)

    def add(self, failed: bool, learn: bool) -> None:
        baseline = self.baseline
        if baseline.n >= WARMUP_CALLS:
            p0 = self.rate()
            p1 = min(p0 + self.shift * math.sqrt(p0 * (1.0 - p0)), 0.99)
            llr = math.log(p1 / p0) if failed else math.log((1.0 - p1) / (1.0 - p0))
            self.cusum.add(llr, 1.0 if failed else 0.0)
        if learn:
            baseline.update(1.0 if failed else 0.0)

    def evidence(self) -> str:
        cusum = self.cusum
        rate = cusum.total / cusum.calls if cusum.calls else 0.0
        return f"errors {rate:.0%} (baseline {self.rate():.1%}) over {cusum.calls} calls"


@attrs.frozen
class Demotion:
    """A provider the detector has seen degrade: ranked behind its level's healthy peers."""

    provider: str
    #: "latency" or "errors".
    signal: str
    #: "latency +4.1 sd over 38 calls", "errors 23% (baseline 1.0%) over 41 calls".
    evidence: str
    since: float
    until: float

    @property
    def note(self) -> str:
        return f"predicted degradation: {self.evidence}"


class Detector:
    """The two tests of one provider, and its demotion while one has fired."""

    __slots__ = ("demotion", "errors", "latency", "provider", "settings")

    def __init__(self, provider: str, settings: DetectorSettings) -> None:
        self.provider = provider
        self.settings = settings
        self.latency = _LatencyTest(settings.shift_sd)
        self.errors = _ErrorTest(settings.shift_sd)
        self.demotion: Demotion | None = None

    def record(self, now: float, latency_ms: float, ok: bool) -> Demotion | None:
        """One call's outcome; the demotion it starts, if it makes a test fire."""
        learn = self.demotion is None
        if ok:
            self.latency.add(latency_ms, learn)
        self.errors.add(not ok, learn)
        if not learn:
            return None
        threshold = self.settings.threshold
        for signal, test in (("errors", self.errors), ("latency", self.latency)):
            if test.cusum.statistic >= threshold:
                until = now + self.settings.hold_s
                self.demotion = Demotion(self.provider, signal, test.evidence(), now, until)
                return self.demotion
        return None

    def expire(self, now: float) -> Demotion | None:
        """End a demotion whose hold is over (returned), restarting the tests halfway."""
        demotion = self.demotion
        if demotion is None or demotion.until > now:
            return None
        self.demotion = None
        head_start = self.settings.threshold / 2.0
        for test in (self.latency.cusum, self.errors.cusum):
            if test.statistic > head_start:
                test.restart(head_start)
        return demotion


_NONE: Mapping[str, Demotion] = {}


class DegradationWatch:
    """The detectors of every provider: fed each call's outcome by the cascade, read by the
    ranker and by status (`demotions`). Announces each demotion as an `alert_raised` event
    (alert `predicted_degradation`, with the evidence) and its end as `alert_cleared`."""

    def __init__(
        self,
        settings: DetectorSettings,
        *,
        emit: Callable[..., Any],
        clock: Callable[[], float] = trio.current_time,
        ignore: Collection[str] = (),
    ) -> None:
        self.settings = settings
        self._emit = emit
        self._clock = clock
        #: Providers not watched: the last resort (a cache or a template has no health to lose).
        self._ignore = frozenset(ignore)
        self._detectors: dict[str, Detector] = {}
        self._demoted: dict[str, Demotion] = {}

    def record(self, provider: str, latency_ms: float, ok: bool) -> None:
        detector = self._detectors.get(provider)
        if detector is None:
            if provider in self._ignore:
                return
            detector = self._detectors[provider] = Detector(provider, self.settings)
        now = self._clock()
        if detector.demotion is not None:
            self._expire(detector, now)
        demotion = detector.record(now, latency_ms, ok)
        if demotion is not None:
            self._demoted[provider] = demotion
            self._emit(
                "alert_raised",
                provider=provider,
                alert="predicted_degradation",
                detail=demotion.note,
                signal=demotion.signal,
            )

    def _expire(self, detector: Detector, now: float) -> None:
        ended = detector.expire(now)
        if ended is not None:
            del self._demoted[ended.provider]
            self._emit("alert_cleared", provider=ended.provider, alert="predicted_degradation")

    def demotions(self, now: float | None = None) -> Mapping[str, Demotion]:
        """The providers demoted now, by name (ending the holds that are over)."""
        if not self._demoted:
            return _NONE
        now = self._clock() if now is None else now
        for name in [name for name, d in self._demoted.items() if d.until <= now]:
            self._expire(self._detectors[name], now)
        return dict(self._demoted)

    def detector(self, provider: str) -> Detector | None:
        return self._detectors.get(provider)
