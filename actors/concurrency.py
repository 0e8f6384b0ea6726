"""Adaptive concurrency: how many calls a provider gets at once when `max_in_flight = "auto"`.

A limit learned per provider, between a floor and a ceiling, from two signals (Netflix's
concurrency-limits, Envoy's adaptive concurrency filter):

- a rate limit (429) cuts the limit by a quarter (AIMD's multiplicative decrease), at most once
  per round: the 429s of calls sent before the last cut say nothing about the new limit;
- latency (Gradient2): the mean latency of the last round against a long-term average; when the
  short term runs over `RTT_TOLERANCE` times the long term, the limit shrinks by their ratio
  (to half at most per round), the provider is queueing our calls.

Otherwise a round in which the limit was used up (a call found every slot taken) raises it by
one (additive increase), or doubles it before the first cut (a slow start, as in TCP); past
the limit the last 429 came at only every `PROBE_ROUNDS` such rounds. A round ends after
`limit` calls have ended, about one round trip whatever the limit. A call finding the limit
used up waits a little for a slot (`PATIENCE`), then goes to the next candidate: a learned
limit is no queue. All integers, all event-driven: the only clock is `trio.current_time()`, so
a scenario replays it exactly. `Bulkhead` holds the slots, whatever sizes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

#: A 429 keeps this share of the limit (rounded down; always one less at least).
BACKOFF = 0.75
#: Used-up rounds it takes to raise the limit past the one the last 429 came at: back to it
#: takes one, but a rate limit found is probed beyond rarely, not every other round.
PROBE_ROUNDS = 8
#: A round's latency may run this many times the long-term one before the limit shrinks.
RTT_TOLERANCE = 1.5
#: The least share of the limit a latency cut keeps.
MIN_GRADIENT = 0.5
#: The long-term latency averages about this many calls.
LONG_WINDOW = 100

#: A call finding the limit used up waits this share of the long-term latency for a slot.
PATIENCE = 0.25

#: Called with the old limit, the new one and why it changed ("rate_limited", "latency",
#: "saturated").
OnChange = Callable[[int, int, str], None]


class AdaptiveLimit:
    """The limit of one provider's calls in flight, and the evidence it is learned from."""

    def __init__(self, floor: int, ceiling: int, *, on_change: OnChange | None = None) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(f"need 1 <= floor <= ceiling, not floor={floor} ceiling={ceiling}")
        self.floor = floor
        self.ceiling = ceiling
        self.limit = floor
        self._on_change = on_change
        #: Until the first cut the limit doubles each used-up round.
        self.slow_start = True
        #: Long-term mean latency (seconds), None before the first call.
        self.long_rtt_s: float | None = None
        #: trio time of the last cut: 429s of calls sent before it are already answered for.
        self._cut_at = -math.inf
        self._round_calls = 0
        self._round_rtt_s = 0.0
        self._saturated = False
        #: The limit the last 429 cut from, and the used-up rounds since then below it.
        self._refused_at: int | None = None
        self._rounds_below = 0

    @property
    def bounds(self) -> tuple[int, int]:
        """The floor and the ceiling of the limit."""
        return (self.floor, self.ceiling)

    @property
    def patience_s(self) -> float:
        """How long a call may wait for a slot before it goes to the next candidate."""
        return 0.0 if self.long_rtt_s is None else PATIENCE * self.long_rtt_s

    def saturated(self) -> None:
        """A call found every slot taken: the limit, not the traffic, held this round back."""
        self._saturated = True

    def on_latency(self, rtt_s: float) -> None:
        """A call ended with an answer (or a timeout) after `rtt_s` seconds."""
        long = self.long_rtt_s
        self.long_rtt_s = rtt_s if long is None else long + (rtt_s - long) * 2 / (LONG_WINDOW + 1)
        self._round_calls += 1
        self._round_rtt_s += rtt_s
        if self._round_calls >= self.limit:
            self._end_round()

    def on_rate_limited(self, started_at: float) -> None:
        """A call sent at `started_at` (trio time) was refused with a 429."""
        if started_at < self._cut_at:
            return
        self.slow_start = False
        self._refused_at, self._rounds_below = self.limit, 0
        self._set(min(self.limit - 1, int(self.limit * BACKOFF)), "rate_limited")

    def _end_round(self) -> None:
        short = self._round_rtt_s / self._round_calls
        saturated = self._saturated
        self._round_calls, self._round_rtt_s, self._saturated = 0, 0.0, False
        long = self.long_rtt_s
        assert long is not None
        if short > RTT_TOLERANCE * long:
            gradient = max(MIN_GRADIENT, RTT_TOLERANCE * long / short)
            self.slow_start = False
            self._set(min(self.limit - 1, int(self.limit * gradient)), "latency")
        elif saturated:
            self._grow()

    def _grow(self) -> None:
        """A used-up round: one more (twice as many in the slow start), but past the limit the
        last 429 came at only after `PROBE_ROUNDS` such rounds."""
        if self.slow_start:
            self._set(self.limit * 2, "saturated")
            return
        refused_at = self._refused_at
        if refused_at is not None and self.limit + 1 > refused_at:
            self._rounds_below += 1
            if self._rounds_below < PROBE_ROUNDS:
                return
            self._rounds_below = 0
        self._set(self.limit + 1, "saturated")

    def _set(self, limit: int, reason: str) -> None:
        new = max(self.floor, min(self.ceiling, limit))
        if new < self.limit:
            self._cut_at = trio.current_time()
        old, self.limit = self.limit, new
        if new != old:
            # A new limit starts a new round: the last one's calls were sent under the old.
            self._round_calls, self._round_rtt_s = 0, 0.0
            if self._on_change is not None:
                self._on_change(old, new, reason)


class Bulkhead:
    """A provider's slots for calls in flight: `trio.CapacityLimiter`'s behaviour (first come,
    first served; a slot given back goes straight to the longest waiter; its checkpoints),
    counted instead of kept per borrowing task. Every request takes a slot and gives it back,
    and the limiter's bookkeeping of which task holds which token cost more than the taking."""

    __slots__ = ("_borrowed", "_lot", "_total")

    def __init__(self, total_tokens: int) -> None:
        self._total = 0
        self._borrowed = 0
        self._lot = trio.lowlevel.ParkingLot()
        self.total_tokens = total_tokens

    def __repr__(self) -> str:
        return f"<Bulkhead {self._borrowed}/{self._total} with {len(self._lot)} waiting>"

    @property
    def total_tokens(self) -> int:
        return self._total

    @total_tokens.setter
    def total_tokens(self, total: int) -> None:
        """A new size: more slots go to waiters at once; fewer let the calls out finish."""
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"total_tokens={total!r} must be an integer >= 0")
        self._total = total
        self._wake_waiters()

    @property
    def borrowed_tokens(self) -> int:
        return self._borrowed

    def acquire_nowait(self) -> None:
        """Take a slot, or raise `trio.WouldBlock`: none free, or others wait for one."""
        if self._borrowed < self._total and not self._lot:
            self._borrowed += 1
        else:
            raise trio.WouldBlock

    async def acquire(self) -> None:
        """Take a slot, waiting in line for one."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.acquire_nowait()
        except trio.WouldBlock:
            await self._lot.park()  # `_wake_waiters` counted the slot as ours
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def release(self) -> None:
        """Give a slot back (to the longest waiter, if any)."""
        if self._borrowed <= 0:
            raise RuntimeError("Bulkhead.release without a slot taken")
        self._borrowed -= 1
        if self._lot:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        free = self._total - self._borrowed
        if free > 0:
            self._borrowed += len(self._lot.unpark(count=free))
