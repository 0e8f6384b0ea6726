"""A circuit breaker driven by trio's clock: the state machine a provider actor consults per call.

resilience4j's vocabulary (failure rate and slow-call rate over a sliding time window, gated by a
minimum number of calls; a limited number of half-open probes; forced and disabled states) with
Envoy's growing open time (each trip multiplies it, up to a cap, and the trip count decays while
the breaker stays closed). Time-based transitions are evaluated lazily, whenever the state is
read or a permit is asked for, so the breaker needs no task of its own; `open_until` tells the
owner when to look again.

A run of consecutive failures is ended only by a success from a call sent no earlier than the
latest failed one: when a provider goes down, the calls it had already accepted keep answering for one
latency, and letting each of them reset the run kept a breaker closed through that whole
latency, sending every new call to the down provider meanwhile.

Reasons passed to `on_transition`:

- closed -> open: ``failure_rate``, ``consecutive_failures``, ``slow_call_rate``,
  ``fleet_consecutive_failures`` (the fleet's run, `trip_for_fleet`)
- open -> half-open: ``open_elapsed``; half-open -> closed: ``probes_succeeded``
- half-open -> open: ``probe_failed``, ``probe_slow`` (a probe slower than ``slow_call_s``)
- any -> open, and back: ``retry_after``, ``retry_after_elapsed`` (`hold_open_until`); in a
  fleet the hold may instead be ``unavailable`` (another instance's auth or billing failure) or
  ``fleet_probing`` (half-open while another instance holds the probe claim)
- closed or half-open -> open: ``fleet_open`` (another instance tripped, `hold_open_as_tripped`)
- open or half-open -> closed: ``fleet_closed`` (another instance's probes succeeded,
  `close_for_fleet`)
- open -> half-open: ``recovery_probe`` (a recovery probe succeeded, `on_recovery_probe`)
- operator: ``forced_open``, ``forced_closed``, ``disabled``, ``reset``, ``auto``
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from actors.config import BreakerConfig
from actors.messages import BreakerSnapshot, BreakerState
from actors.window import Clock, SlidingWindow

TransitionCallback = Callable[[BreakerState, BreakerState, str], None]

_OVERRIDES = frozenset(
    {BreakerState.FORCED_OPEN, BreakerState.FORCED_CLOSED, BreakerState.DISABLED}
)
#: States in which the breaker admits every call (and the trip count may decay).
_ADMIT_ALL = frozenset({BreakerState.CLOSED, BreakerState.FORCED_CLOSED, BreakerState.DISABLED})


class CircuitBreaker:
    """Decides whether a call may go to a provider, from how its recent calls ended.

    The owner calls `try_acquire` when a call really goes out (not before it queues for a slot:
    a permit taken early would let a call admitted while closed or open reach the provider once
    it is half-open), notes `period`, and calls exactly one of `on_success`, `on_failure` or
    `on_ignored` after a call it was admitted for, passing that period back. Only failures that
    say something about the provider (see `actors.errors.BREAKER_FAILURES`) should be reported
    as failures; the rest are `on_ignored`, which only gives back a half-open probe permit.

    A panic call (the plan's last hope past an open breaker) goes out through `try_panic` and
    ends with `end_panic`; while it is in flight it holds one of the half-open probe places, so
    a breaker that turns half-open meanwhile never has more than `half_open_probes` calls out.
    """

    def __init__(
        self,
        config: BreakerConfig,
        *,
        clock: Clock = trio.current_time,
        on_transition: TransitionCallback | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._on_transition = on_transition
        self._window = SlidingWindow(config.window_s, clock=clock)
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        #: When the latest failed call was sent: a success from a call sent before it is older
        #: news than that failure and does not end the run of consecutive failures.
        self._last_failure_sent = -math.inf
        self._trips = 0
        #: When the open period ends (trip or Retry-After hold); None unless OPEN.
        self._open_until: float | None = None
        #: Whether the current open period is only a Retry-After hold (it ends in CLOSED).
        self._hold_only = False
        self._probes_in_flight = 0
        self._probe_successes = 0
        #: Panic calls (`try_panic`) still in flight.
        self._panic_in_flight = 0
        #: Counts state changes: a permit taken in one half-open period is no probe of the next.
        self._period = 0
        #: Start of the closed stretch the trip count decays over.
        self._decay_from = clock()
        #: Panic calls waiting for a half-open breaker to have room (`wait_for_room`).
        self._room = trio.lowlevel.ParkingLot()
        #: The half-open period was opened by a recovery probe's success (`on_recovery_probe`).
        self._probe_led = False
        #: Real calls refuted a recovery probe's success: probes are not trusted until closed.
        self._probes_refuted = False
        #: In a fleet: whether this instance may send the half-open probes now (it holds the
        #: fleet's claim, `actors.state`); None outside a fleet.
        self.probe_gate: Callable[[], bool] | None = None
        #: When this breaker last learnt of a trip: its own, or one the fleet holds it open for.
        self._trip_seen_at = -math.inf

    def __repr__(self) -> str:
        return f"<CircuitBreaker state={self._state} trips={self._trips}>"

    # --- reading -------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state, after applying any time-based transition that is due."""
        self._refresh()
        return self._state

    @property
    def open_until(self) -> float | None:
        """trio time at which an open breaker stops refusing calls; None when not open."""
        self._refresh()
        return self._open_until

    @property
    def trips(self) -> int:
        self._refresh()
        return self._trips

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    @property
    def period(self) -> int:
        """The number of the current state period; it changes with every transition. An owner
        reads it right after `try_acquire` and passes it back with the call's outcome."""
        self._refresh()
        return self._period

    def snapshot(self) -> BreakerSnapshot:
        self._refresh()
        counts = self._window.counts()
        probes_left = 0
        if self._state is BreakerState.HALF_OPEN:
            probes_left = self._probe_capacity()
        return BreakerSnapshot(
            state=self._state,
            failure_rate=counts.failure_rate,
            slow_call_rate=counts.slow_rate,
            calls_in_window=counts.calls,
            consecutive_failures=self._consecutive_failures,
            trips=self._trips,
            open_until=self._open_until,
            half_open_probes_left=probes_left,
        )

    def restore(self, snapshot: BreakerSnapshot) -> None:
        """Take up where a previous incarnation left off: its state, trips and open period.

        The window's contents are not in a snapshot; the rates start afresh, but a breaker that
        was open stays open until the same time, and an override stays in force. A half-open
        breaker comes back open until now, so the next read turns it half-open with a full set
        of probe permits.
        """
        self._trips = snapshot.trips
        self._consecutive_failures = snapshot.consecutive_failures
        state = snapshot.state
        if state is BreakerState.HALF_OPEN:
            state, self._open_until = BreakerState.OPEN, self._clock()
        elif state is BreakerState.OPEN:
            self._open_until = (
                snapshot.open_until if snapshot.open_until is not None else self._clock()
            )
        else:
            self._open_until = None
        self._hold_only = False
        self._state = state

    # --- calls ---------------------------------------------------------------------------------

    def try_acquire(self, now: float | None = None) -> bool:
        """Whether a call may go now; in half-open this takes one of the limited probe permits.
        (`now`, here and below: the clock's time, when the caller has just read it.)"""
        return self.acquire(now) is not None

    def acquire(self, now: float | None = None) -> int | None:
        """`try_acquire`, then `period` (the same instant: one look at the clock): the period
        the permit belongs to, or None when the call may not go."""
        self._refresh(now)
        state = self._state
        if state in _ADMIT_ALL:
            return self._period
        if state is BreakerState.HALF_OPEN and self._probe_capacity() > 0:
            self._probes_in_flight += 1
            return self._period
        return None

    def would_admit(self, *, panic: bool = False, now: float | None = None) -> bool:
        """Whether `try_acquire` (or, for a panic call, `try_panic`) would let a call out now;
        takes nothing."""
        self._refresh(now)
        state = self._state
        if state in _ADMIT_ALL:
            return True
        if state is BreakerState.HALF_OPEN:
            return self._probe_capacity() > 0
        return panic and state is BreakerState.OPEN

    def try_panic(self) -> bool:
        """Whether a panic call may go out past the breaker now: only while it is open (not
        forced open, and not half-open, where the probes decide). True counts the call in flight
        until `end_panic`."""
        self._refresh()
        if self._state is not BreakerState.OPEN:
            return False
        self._panic_in_flight += 1
        return True

    async def wait_for_room(self) -> None:
        """Return when a panic call may go out (`would_admit(panic=True)`), waiting while the
        breaker is half-open with every probe place taken: its probes end soon, one way or the
        other, and a request with nothing else left is better served waiting for them than
        failing. The caller bounds the wait with its deadline."""
        while not self.would_admit(panic=True) and self.state is BreakerState.HALF_OPEN:
            await self._room.park()

    def end_panic(self, duration_s: float, *, success: bool) -> None:
        """A call let out by `try_panic` ended; a success is evidence, see
        `on_unadmitted_success`."""
        self._panic_in_flight = max(0, self._panic_in_flight - 1)
        self._room.unpark_all()
        if success:
            self.on_unadmitted_success(duration_s)

    def on_success(
        self, duration_s: float, *, period: int | None = None, now: float | None = None
    ) -> None:
        """An admitted call succeeded after `duration_s` seconds (`period`: see `period`)."""
        now = self._refresh(now)
        slow = duration_s > self.config.slow_call_s
        state = self._state
        if state is BreakerState.HALF_OPEN:
            if not self._release_probe(period):
                return
            if slow:
                self._consecutive_failures = 0
                self._trip("probe_slow")
                return
            self._consecutive_failures = 0
            self._probe_successes += 1
            if self._probe_successes >= self.config.half_open_probes:
                self._window.clear()
                self._transition(BreakerState.CLOSED, "probes_succeeded")
            return
        if state in (BreakerState.CLOSED, BreakerState.FORCED_CLOSED):
            if now - duration_s >= self._last_failure_sent:
                self._consecutive_failures = 0
            self._check_trip(self._window.record(failure=False, slow=slow, now=now))

    def on_unadmitted_success(self, duration_s: float) -> None:
        """A call that went out while the breaker was open (a panic call: nothing else was
        left) succeeded. That is evidence the provider answers again: the open period ends now
        and the breaker turns half-open, where its probes decide. A slow success is no such
        evidence and changes nothing."""
        self._refresh()
        if (
            self._state is BreakerState.OPEN
            and not self._hold_only
            and duration_s <= self.config.slow_call_s
        ):
            self._open_until = self._clock()
            self._refresh()

    def on_failure(
        self, duration_s: float, *, period: int | None = None, now: float | None = None
    ) -> None:
        """An admitted call failed, in a way that counts against the provider."""
        now = self._refresh(now)
        slow = duration_s > self.config.slow_call_s
        state = self._state
        if state is BreakerState.HALF_OPEN:
            if self._release_probe(period):
                self._consecutive_failures += 1
                self._trip("probe_failed")
            return
        if state in (BreakerState.CLOSED, BreakerState.FORCED_CLOSED):
            self._consecutive_failures += 1
            self._last_failure_sent = max(self._last_failure_sent, now - duration_s)
            self._check_trip(self._window.record(failure=True, slow=slow, now=now))

    def on_ignored(self, *, period: int | None = None) -> None:
        """An admitted call ended in a way that says nothing about the provider (a client error,
        a rate limit, a cancellation): give back its half-open permit, count nothing."""
        self._refresh()
        if self._state is BreakerState.HALF_OPEN:
            self._release_probe(period)

    # --- operator overrides and Retry-After ----------------------------------------------------

    def force_open(self) -> None:
        """Refuse every call until `auto` or `reset`."""
        self._enter_override(BreakerState.FORCED_OPEN)

    def force_closed(self) -> None:
        """Admit every call; keep recording, never trip."""
        self._enter_override(BreakerState.FORCED_CLOSED)

    def disable(self) -> None:
        """Admit every call and record nothing."""
        self._enter_override(BreakerState.DISABLED)

    def reset(self) -> None:
        """Back to a fresh closed breaker: no override, empty window, no trips."""
        self._window.clear()
        self._trips = 0
        self._consecutive_failures = 0
        self._decay_from = self._clock()
        self._to_closed("reset")

    def auto(self) -> None:
        """Lift an operator override: back to closed, keeping the window and the trip count."""
        if self._state in _OVERRIDES:
            self._to_closed("auto")

    def hold_open_until(self, until: float, reason: str = "retry_after") -> None:
        """Refuse calls until trio time `until` (a Retry-After, unless `reason` says what else),
        without counting a trip.

        Never shortens a longer open period already running, and does nothing under an operator
        override. A hold that started from closed ends in closed; one that extends a trip, or
        interrupts a half-open, ends in half-open as the trip would have.
        """
        if math.isnan(until):
            raise ValueError("hold_open_until: until is NaN")
        self._refresh()
        state = self._state
        if state in _OVERRIDES or until <= self._clock():
            return
        if state is BreakerState.OPEN:
            assert self._open_until is not None
            self._open_until = max(self._open_until, until)
            return
        self._hold_only = state is BreakerState.CLOSED
        self._open_until = until
        self._transition(BreakerState.OPEN, reason)

    def hold_open_as_tripped(self, until: float) -> None:
        """Refuse calls until trio time `until` as after a trip, ending half-open, without
        counting one: another instance of the fleet tripped (`actors.state`). Never shortens a
        longer open period; nothing under an operator override."""
        if math.isnan(until):
            raise ValueError("hold_open_as_tripped: until is NaN")
        self._refresh()
        if self._state in _OVERRIDES or until <= self._clock():
            return
        self._hold_only = False
        self._trip_seen_at = self._clock()
        if self._state is BreakerState.OPEN:
            assert self._open_until is not None
            self._open_until = max(self._open_until, until)
            return
        self._open_until = until
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._transition(BreakerState.OPEN, "fleet_open")

    def trip_for_fleet(self) -> None:
        """A failure of ours made the fleet's run of consecutive failures long enough
        (`actors.state`): trip as after a run of our own, if closed."""
        self._refresh()
        if self._state is BreakerState.CLOSED:
            self._trip("fleet_consecutive_failures")

    def close_for_fleet(self, closed_at: float) -> None:
        """The instance that held the fleet's half-open probe claim saw its probes succeed at
        trio time `closed_at` (`actors.state`): close as after probes of our own, whether
        half-open or still open (waiting for the claim, or for a trip's period to end). Not
        when a trip was learnt of since (the newer news), nor when only a Retry-After holds
        the breaker open (it ends closed), nor under an operator override."""
        self._refresh()
        state = self._state
        if state is BreakerState.OPEN and self._hold_only:
            return
        if state in (BreakerState.OPEN, BreakerState.HALF_OPEN) and (
            self._trip_seen_at <= closed_at
        ):
            self._consecutive_failures = 0
            self._window.clear()
            self._to_closed("fleet_closed")

    def probe_gate_opened(self) -> None:
        """`probe_gate` now admits: panic calls waiting for room look again."""
        self._room.unpark_all()

    # --- recovery probes -----------------------------------------------------------------------

    @property
    def wants_recovery_probe(self) -> bool:
        """Whether a recovery probe would be heard now: open after a trip (not a Retry-After
        hold, which asks us to wait, nor an operator's override), and no probe's success has
        been refuted by real calls since the breaker last closed."""
        self._refresh()
        return (
            self._state is BreakerState.OPEN and not self._hold_only and not self._probes_refuted
        )

    def on_recovery_probe(self, *, success: bool, hold_s: float) -> bool:
        """A recovery probe (a cheap call made while open, not a permitted call) ended.

        A success ends the open period at once: the breaker turns half-open, where its
        half-open calls confirm the recovery as after any open period. A failure keeps it open
        for at least `hold_s` more, so real calls wait for the next probe instead of the
        period's end, without counting a trip (the next open period does not double). If the
        half-open calls after a probe's success fail, probes are not trusted again until the
        breaker closes (its open periods run their course): a models endpoint that answers
        while completions fail must not let a trial call through every interval. True when
        the probe changed the state.
        """
        if not self.wants_recovery_probe:
            return False
        if not success:
            assert self._open_until is not None
            self._open_until = max(self._open_until, self._clock() + hold_s)
            return False
        self._open_until = None
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._transition(BreakerState.HALF_OPEN, "recovery_probe")
        self._probe_led = True
        return True

    # --- internals -----------------------------------------------------------------------------

    def _probe_capacity(self) -> int:
        if self.probe_gate is not None and not self.probe_gate():
            return 0
        taken = self._probes_in_flight + self._probe_successes + self._panic_in_flight
        return max(0, self.config.half_open_probes - taken)

    def _release_probe(self, period: int | None) -> bool:
        """Give back a probe permit; False when the call held none (it was admitted before this
        half-open period began: `period`, when given, tells)."""
        if self._probes_in_flight <= 0 or (period is not None and period != self._period):
            return False
        self._probes_in_flight -= 1
        self._room.unpark_all()
        return True

    def _refresh(self, now: float | None = None) -> float:
        """Apply any time-based transition due at `now` (read from the clock unless given);
        return `now`, so a caller reads the clock once."""
        if now is None:
            now = self._clock()
        if self._state is BreakerState.OPEN:
            assert self._open_until is not None
            if now < self._open_until:
                return now
            if self._hold_only:
                self._to_closed("retry_after_elapsed")
            else:
                self._open_until = None
                self._probes_in_flight = 0
                self._probe_successes = 0
                self._transition(BreakerState.HALF_OPEN, "open_elapsed")
        if self._state in _ADMIT_ALL and self._trips > 0:
            steps = math.floor((now - self._decay_from) / self.config.decay_s)
            if steps > 0:
                decayed = min(steps, self._trips)
                self._trips -= decayed
                self._decay_from += steps * self.config.decay_s
        return now

    def _check_trip(self, totals: tuple[int, int, int]) -> None:
        """Trip a closed breaker whose run of failures, or whose window (`totals`: its calls,
        failures and slow calls), says so."""
        if self._state is not BreakerState.CLOSED:
            return
        config = self.config
        if 0 < config.consecutive_failures <= self._consecutive_failures:
            self._trip("consecutive_failures")
            return
        calls, failures, slow = totals
        if calls < config.minimum_calls:
            return
        if failures and failures / calls >= config.failure_rate_threshold:
            self._trip("failure_rate")
        elif slow and slow / calls >= config.slow_call_rate_threshold:
            self._trip("slow_call_rate")

    def open_duration(self, trips: int) -> float:
        """How long the `trips`-th trip (counting from 1) keeps the breaker open."""
        config = self.config
        exponent = max(0, trips - 1)
        try:
            grown = config.open_s * config.open_multiplier**exponent
        except OverflowError:
            grown = math.inf
        return min(grown, config.open_max_s)

    def _trip(self, reason: str) -> None:
        if self._state is BreakerState.HALF_OPEN and self._probe_led:
            self._probes_refuted = True
        self._trips += 1
        self._trip_seen_at = now = self._clock()
        self._open_until = now + self.open_duration(self._trips)
        self._hold_only = False
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._transition(BreakerState.OPEN, reason)

    def _to_closed(self, reason: str) -> None:
        self._open_until = None
        self._hold_only = False
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._transition(BreakerState.CLOSED, reason)

    def _enter_override(self, state: BreakerState) -> None:
        self._refresh()
        self._open_until = None
        self._hold_only = False
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._transition(state, state.value)

    def _transition(self, new: BreakerState, reason: str) -> None:
        old = self._state
        self._state = new
        self._period += 1
        self._probe_led = False
        if new in _ADMIT_ALL:
            self._probes_refuted = False
        self._room.unpark_all()
        if new in _ADMIT_ALL and old not in _ADMIT_ALL and reason != "retry_after_elapsed":
            # A closed stretch starts; a Retry-After hold does not interrupt the one before it.
            self._decay_from = self._clock()
        if old is not new and self._on_transition is not None:
            self._on_transition(old, new, reason)
