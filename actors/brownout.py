"""Brownouts across levels: a level whose every provider answers, but far slower than usual.

Within a level the router moves traffic off a slow provider to a faster peer; a level with one
provider has no peer, and the next level is only walked on failure, so a slow primary keeps
every request slow while the next level stands idle. A level's `brownout` policy changes that:

- `demote`: while the level is browned out, requests walk the next level first and this one
  after it. One request every `brownout_probe_s` still goes to the level first, hedged into the
  next level after the threshold, so the level is seen to recover without anyone waiting for it.
- `hedge`: a call to the level that outlasts the threshold starts the next level beside it
  (Dean & Barroso's hedged requests), within `brownout_hedge_budget` (a share of the level's
  requests); the first answer wins and the other call is cancelled.

The signal is the stats alert's (`actors.stats.AlertRules.latency_factor`): a provider is
browned out when the mean of its recent calls (the alert's `recent` calls, counted since the
brownout last ended) is at or over `brownout_factor` times its baseline latency
(`PerformanceHistory.baseline`) and at least `MIN_EXCESS_MS` over it: a factor alone would
call a provider answering in 0.2 ms browned out at 1 ms. A call cancelled after running that long (a hedge's loser)
counts with the time it ran, a lower bound that is already over the threshold. The brownout
ends with the first call that answers under the threshold. Each start and end is an
`alert_raised` / `alert_cleared` event (alert `brownout`, with the evidence). Timed on trio's
clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs
import trio

from actors.config import LevelConfig
from actors.stats import PerformanceHistory

__all__ = ["Brownout", "BrownoutWatch", "HedgeBudget"]

#: At most this many hedges are saved up by a level's budget (a burst after a quiet spell).
HEDGE_BUDGET_CAP = 10.0
#: A brownout is also this much slower than the baseline in absolute terms. Below it a factor
#: measures noise: on a loaded host a loopback provider's healthy p50 moves between 3 and 26 ms
#: (bench/README.md, `brownout.py`), and tens of ms are nothing next to an LLM call's usual
#: hundreds; a real brownout (a provider x10) is seconds over.
MIN_EXCESS_MS = 50.0
_NONE: Mapping[str, Brownout] = MappingProxyType({})


@attrs.frozen
class Brownout:
    """A provider answering `factor` times slower than its baseline, or more."""

    provider: str
    level: str
    #: Mean latency of the calls that made it a brownout, and how many there were.
    latency_ms: float
    calls: int
    baseline_ms: float
    factor: float
    since: float

    @property
    def threshold_ms(self) -> float:
        """How long a call may take before it counts as slow (see `MIN_EXCESS_MS`)."""
        return max(self.baseline_ms * self.factor, self.baseline_ms + MIN_EXCESS_MS)

    @property
    def note(self) -> str:
        return (
            f"browned out: {self.provider} latency {self.latency_ms:,.0f} ms over "
            f"{self.calls} call(s) is over {self.factor:g}x its baseline {self.baseline_ms:,.0f} ms"
        )


class HedgeBudget:
    """Finagle's retry budget, for hedges: each request deposits `share` of a hedge, a hedge
    withdraws one, so hedges stay within `share` of requests over time (after a saved-up burst
    of at most `HEDGE_BUDGET_CAP`)."""

    __slots__ = ("balance", "share")

    def __init__(self, share: float) -> None:
        self.share = share
        self.balance = 0.0

    def deposit(self) -> None:
        self.balance = min(HEDGE_BUDGET_CAP, self.balance + self.share)

    def withdraw(self) -> bool:
        if self.balance < 1.0:
            return False
        self.balance -= 1.0
        return True


class _Watched:
    """One provider's recent latencies since its last brownout ended, and its brownout."""

    __slots__ = ("brownout", "factor", "level", "recent")

    def __init__(self, level: str, factor: float, size: int) -> None:
        self.level = level
        self.factor = factor
        self.recent: deque[float] = deque(maxlen=size)
        self.brownout: Brownout | None = None


class BrownoutWatch:
    """The providers of the levels with a brownout policy: fed by the cascade, read by the
    ranker (`brownouts`), the cascade (`threshold_s`, `probe_due`, `budget`) and status."""

    def __init__(
        self,
        levels: Sequence[LevelConfig],
        history: PerformanceHistory,
        *,
        emit: Callable[..., Any],
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._history = history
        self._emit = emit
        self._clock = clock
        self._watched: dict[str, _Watched] = {}
        self._probed: dict[str, float] = {}
        self._budgets: dict[str, HedgeBudget] = {}
        #: How many watched providers are browned out: the ranker asks on every request.
        self._active = 0
        for level in levels:
            if level.brownout == "off":
                continue
            self._budgets[level.name] = HedgeBudget(level.brownout_hedge_budget)
            for name in level.providers:
                # A provider in two such levels is judged by the first one's factor.
                self._watched.setdefault(
                    name, _Watched(level.name, level.brownout_factor, history.recent)
                )

    def threshold_s(self, provider: str) -> float | None:
        """How long a call to `provider` may take before it counts as browned out (None: not
        watched, or no baseline yet)."""
        limit = self._limit_ms(provider)
        return None if limit is None else limit[0] / 1000.0

    def _limit_ms(self, provider: str) -> tuple[float, float] | None:
        """The threshold in ms (`factor` times the baseline, and `MIN_EXCESS_MS` over it) and
        the baseline, or None."""
        watched = self._watched.get(provider)
        baseline = self._history.baseline(provider)
        if watched is None or baseline is None or baseline <= 0:
            return None
        return max(watched.factor * baseline, baseline + MIN_EXCESS_MS), baseline

    def observe(self, provider: str, elapsed_ms: float, *, lower_bound: bool = False) -> None:
        """A call that answered after `elapsed_ms`; with `lower_bound`, one cancelled or timed
        out after running that long, which counts only when that is already over the threshold
        (a hedge's loser cancelled early says nothing of its provider's latency)."""
        watched = self._watched.get(provider)
        limit = self._limit_ms(provider)
        if watched is None or limit is None:
            return
        limit_ms, baseline = limit
        if lower_bound and elapsed_ms < limit_ms:
            return
        if watched.brownout is not None:
            if elapsed_ms < limit_ms:
                self._end(provider, watched)
                watched.recent.append(elapsed_ms)
            return
        watched.recent.append(elapsed_ms)
        mean = sum(watched.recent) / len(watched.recent)
        if mean >= limit_ms:
            self._start(provider, watched, mean, baseline)

    def _start(self, provider: str, watched: _Watched, mean: float, baseline: float) -> None:
        brownout = Brownout(
            provider,
            watched.level,
            mean,
            len(watched.recent),
            baseline,
            watched.factor,
            self._clock(),
        )
        watched.brownout = brownout
        self._active += 1
        self._emit(
            "alert_raised",
            provider=provider,
            alert="brownout",
            detail=brownout.note,
            level=watched.level,
        )

    def _end(self, provider: str, watched: _Watched) -> None:
        brownout = watched.brownout
        watched.brownout = None
        self._active -= 1
        watched.recent.clear()
        lasted = self._clock() - brownout.since if brownout is not None else 0.0
        self._emit(
            "alert_cleared",
            provider=provider,
            alert="brownout",
            level=watched.level,
            lasted_s=round(lasted, 3),
        )

    def brownouts(self, now: float | None = None) -> Mapping[str, Brownout]:
        """The providers browned out now, by name (`now` is for the ranker's signature)."""
        if not self._active:
            return _NONE
        return {
            name: watched.brownout
            for name, watched in self._watched.items()
            if watched.brownout is not None
        }

    def probe_due(self, level: LevelConfig) -> bool:
        """Whether this request is the one in `brownout_probe_s` that tries the demoted level
        first (taking the turn when it is)."""
        now = self._clock()
        last = self._probed.get(level.name)
        if last is not None and now - last < level.brownout_probe_s:
            return False
        self._probed[level.name] = now
        return True

    def budget(self, level: str) -> HedgeBudget | None:
        return self._budgets.get(level)
