"""Every CircuitBreaker transition, driven by a fake clock and by trio's virtual clock."""

from __future__ import annotations

import math

import pytest
import trio

from actors.breaker import CircuitBreaker
from actors.config import BreakerConfig
from actors.messages import BreakerState

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Transitions = list[tuple[BreakerState, BreakerState, str]]


def make(
    clock: FakeClock | None = None, **settings: float
) -> tuple[CircuitBreaker, FakeClock, Transitions]:
    clock = clock or FakeClock()
    defaults: dict[str, float] = {
        "window_s": 10.0,
        "minimum_calls": 4,
        "failure_rate_threshold": 0.5,
        "consecutive_failures": 0,
        "slow_call_s": 1.0,
        "slow_call_rate_threshold": 1.0,
        "open_s": 5.0,
        "open_multiplier": 2.0,
        "open_max_s": 60.0,
        "half_open_probes": 3,
        "decay_s": 30.0,
    }
    defaults.update(settings)
    seen: Transitions = []
    breaker = CircuitBreaker(
        BreakerConfig(**defaults),  # type: ignore[arg-type]
        clock=clock,
        on_transition=lambda old, new, reason: seen.append((old, new, reason)),
    )
    return breaker, clock, seen


def trip(breaker: CircuitBreaker) -> None:
    """Open a closed breaker with a run of failures (failure rate 100 % over minimum_calls)."""
    while breaker.state is CLOSED:
        assert breaker.try_acquire()
        breaker.on_failure(0.1)


def to_half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    until = breaker.open_until
    assert until is not None
    clock.now = until
    assert breaker.state is HALF_OPEN


# --- closed -> open ----------------------------------------------------------------------------


def test_failure_rate_waits_for_minimum_calls() -> None:
    breaker, _, seen = make(minimum_calls=4, failure_rate_threshold=0.5)
    for _ in range(3):
        breaker.on_failure(0.1)
    assert breaker.state is CLOSED  # 100 % failures, but only 3 calls in the window
    breaker.on_failure(0.1)
    assert breaker.state is OPEN
    assert seen == [(CLOSED, OPEN, "failure_rate")]


def test_failure_rate_below_threshold_stays_closed() -> None:
    breaker, _, seen = make(minimum_calls=4, failure_rate_threshold=0.5)
    for _ in range(3):
        breaker.on_success(0.1)
    breaker.on_failure(0.1)  # 1/4 = 25 %
    breaker.on_success(0.1)
    breaker.on_failure(0.1)  # 2/6 = 33 %
    assert breaker.state is CLOSED
    breaker.on_failure(0.1)  # 3/7 = 43 %
    assert breaker.state is CLOSED
    breaker.on_failure(0.1)  # 4/8 = 50 % >= threshold
    assert breaker.state is OPEN
    assert seen == [(CLOSED, OPEN, "failure_rate")]


def test_a_success_sent_before_the_latest_failure_does_not_end_the_run() -> None:
    # A provider that just went down: the calls it accepted before keep answering for one
    # latency (0.8 s here) while new calls fail at once.
    breaker, clock, seen = make(minimum_calls=100, consecutive_failures=3)
    breaker.on_failure(0.0)
    clock.now += 0.2
    breaker.on_success(0.8)  # sent 0.6 s before that failure
    breaker.on_failure(0.0)
    assert breaker.consecutive_failures == 2
    clock.now += 0.2
    breaker.on_success(0.3)  # sent 0.1 s before the second failure (a failure sent at once)
    breaker.on_failure(0.0)
    assert seen == [(CLOSED, OPEN, "consecutive_failures")]


def test_a_success_sent_with_the_latest_failure_ends_the_run() -> None:
    breaker, clock, _ = make(minimum_calls=100, consecutive_failures=3)
    clock.now += 0.1
    breaker.on_failure(0.1)
    breaker.on_failure(0.1)
    breaker.on_success(0.1)  # all three sent at the same instant
    assert breaker.consecutive_failures == 0


def test_a_success_sent_after_the_latest_failure_ends_the_run() -> None:
    breaker, clock, _ = make(minimum_calls=100, consecutive_failures=3)
    breaker.on_failure(0.0)
    breaker.on_failure(0.0)
    clock.now += 1.0
    breaker.on_success(0.5)
    assert breaker.consecutive_failures == 0
    assert breaker.state is CLOSED


def test_old_failures_leave_the_window() -> None:
    breaker, clock, _ = make(minimum_calls=4, window_s=10.0)
    for _ in range(3):
        breaker.on_failure(0.1)
    clock.now += 10.0  # all three evicted
    breaker.on_failure(0.1)
    assert breaker.snapshot().calls_in_window == 1
    assert breaker.state is CLOSED


def test_consecutive_failures_trip_below_minimum_calls() -> None:
    breaker, clock, seen = make(minimum_calls=100, consecutive_failures=3)
    breaker.on_failure(0.1)
    breaker.on_failure(0.1)
    clock.now += 1.0
    breaker.on_success(0.1)  # sent after the failures: resets the run
    breaker.on_failure(0.1)
    breaker.on_failure(0.1)
    assert breaker.state is CLOSED
    assert breaker.consecutive_failures == 2
    breaker.on_failure(0.1)
    assert breaker.state is OPEN
    assert seen == [(CLOSED, OPEN, "consecutive_failures")]


def test_consecutive_failures_zero_disables_that_trip() -> None:
    breaker, _, _ = make(minimum_calls=1000, consecutive_failures=0)
    for _ in range(50):
        breaker.on_failure(0.1)
    assert breaker.state is CLOSED


def test_slow_call_rate_trips_when_every_call_is_slow() -> None:
    breaker, _, seen = make(minimum_calls=4, slow_call_s=1.0, slow_call_rate_threshold=1.0)
    for _ in range(3):
        breaker.on_success(1.5)
    breaker.on_success(1.0)  # exactly slow_call_s is not slow
    assert breaker.state is CLOSED
    for _ in range(3):
        breaker.on_success(2.0)
    assert breaker.state is CLOSED  # 6/7 slow
    breaker2, _, seen2 = make(minimum_calls=4, slow_call_s=1.0, slow_call_rate_threshold=1.0)
    for _ in range(4):
        breaker2.on_success(1.01)
    assert breaker2.state is OPEN
    assert seen2 == [(CLOSED, OPEN, "slow_call_rate")]
    assert seen == []


def test_slow_call_rate_threshold_below_one() -> None:
    breaker, _, seen = make(minimum_calls=4, slow_call_rate_threshold=0.5)
    breaker.on_success(0.1)
    breaker.on_success(0.1)
    breaker.on_success(5.0)
    assert breaker.state is CLOSED  # 3 calls < minimum
    breaker.on_success(5.0)  # 2/4 slow
    assert breaker.state is OPEN
    assert seen[-1][2] == "slow_call_rate"


# --- open -> half-open -> closed / open ---------------------------------------------------------


def test_open_refuses_then_turns_half_open_lazily() -> None:
    breaker, clock, seen = make(open_s=5.0)
    trip(breaker)
    assert breaker.open_until == clock.now + 5.0
    assert not breaker.try_acquire()
    clock.now += 4.999
    assert not breaker.try_acquire()
    assert breaker.state is OPEN
    clock.now += 0.001
    assert breaker.try_acquire()  # evaluated lazily: the open period is over
    assert seen[-1] == (OPEN, HALF_OPEN, "open_elapsed")
    assert breaker.open_until is None


def test_half_open_admits_only_probes_concurrently() -> None:
    breaker, clock, _ = make(half_open_probes=3)
    trip(breaker)
    to_half_open(breaker, clock)
    assert [breaker.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert breaker.snapshot().half_open_probes_left == 0


def test_all_probes_succeed_closes_with_a_clean_window() -> None:
    breaker, clock, seen = make(half_open_probes=3)
    trip(breaker)
    to_half_open(breaker, clock)
    for _ in range(3):
        assert breaker.try_acquire()
    breaker.on_success(0.1)
    breaker.on_success(0.1)
    assert breaker.state is HALF_OPEN
    assert not breaker.try_acquire()  # two done, one still out: no capacity left
    breaker.on_success(0.1)
    assert breaker.state is CLOSED
    assert seen[-1] == (HALF_OPEN, CLOSED, "probes_succeeded")
    snapshot = breaker.snapshot()
    assert snapshot.calls_in_window == 0
    assert snapshot.failure_rate == 0.0
    assert snapshot.consecutive_failures == 0


def test_probe_failure_reopens_with_doubled_open_time() -> None:
    breaker, clock, seen = make(open_s=5.0, open_multiplier=2.0)
    trip(breaker)
    assert breaker.open_until == clock.now + 5.0
    to_half_open(breaker, clock)
    assert breaker.try_acquire()
    assert breaker.try_acquire()
    breaker.on_success(0.1)
    breaker.on_failure(0.1)
    assert breaker.state is OPEN
    assert breaker.open_until == clock.now + 10.0
    assert breaker.trips == 2
    assert seen[-1] == (HALF_OPEN, OPEN, "probe_failed")
    to_half_open(breaker, clock)
    assert breaker.try_acquire()
    breaker.on_failure(0.1)
    assert breaker.open_until == clock.now + 20.0


def test_slow_probe_reopens() -> None:
    breaker, clock, seen = make(slow_call_s=1.0)
    trip(breaker)
    to_half_open(breaker, clock)
    assert breaker.try_acquire()
    breaker.on_success(3.0)
    assert breaker.state is OPEN
    assert seen[-1] == (HALF_OPEN, OPEN, "probe_slow")


def test_open_time_growth_is_capped() -> None:
    breaker, clock, _ = make(open_s=5.0, open_multiplier=3.0, open_max_s=60.0)
    trip(breaker)
    durations = []
    for _ in range(5):
        until = breaker.open_until
        assert until is not None
        durations.append(until - clock.now)
        to_half_open(breaker, clock)
        assert breaker.try_acquire()
        breaker.on_failure(0.1)
    assert durations == [5.0, 15.0, 45.0, 60.0, 60.0]


def test_huge_trip_counts_do_not_overflow() -> None:
    breaker, _, _ = make(open_s=5.0, open_multiplier=10.0, open_max_s=60.0)
    assert breaker.open_duration(10_000) == 60.0
    assert breaker.open_duration(1) == 5.0


def test_ignored_outcome_gives_back_a_probe_permit() -> None:
    breaker, clock, _ = make(half_open_probes=1)
    trip(breaker)
    to_half_open(breaker, clock)
    assert breaker.try_acquire()
    assert not breaker.try_acquire()
    breaker.on_ignored()  # e.g. a 400 from the caller's request
    assert breaker.state is HALF_OPEN
    assert breaker.try_acquire()
    breaker.on_success(0.1)
    assert breaker.state is CLOSED


def test_results_while_open_are_not_recorded() -> None:
    breaker, _, _ = make()
    trip(breaker)
    before = breaker.snapshot()
    breaker.on_failure(0.1)  # a call admitted before the trip, ending now
    breaker.on_success(0.1)
    after = breaker.snapshot()
    assert after.calls_in_window == before.calls_in_window
    assert after.state is OPEN


def test_stale_result_in_half_open_without_a_permit_is_ignored() -> None:
    breaker, clock, _ = make()
    trip(breaker)
    to_half_open(breaker, clock)
    breaker.on_failure(0.1)  # no probe was admitted: a pre-trip call finishing late
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot().half_open_probes_left == 3


# --- trip count decay ---------------------------------------------------------------------------


def close_via_probes(breaker: CircuitBreaker, clock: FakeClock) -> None:
    to_half_open(breaker, clock)
    for _ in range(breaker.config.half_open_probes):
        assert breaker.try_acquire()
    for _ in range(breaker.config.half_open_probes):
        breaker.on_success(0.1)
    assert breaker.state is CLOSED


def test_trip_count_decays_one_step_per_decay_s_closed() -> None:
    breaker, clock, _ = make(open_s=5.0, decay_s=30.0, open_max_s=1000.0)
    trip(breaker)
    to_half_open(breaker, clock)
    assert breaker.try_acquire()
    breaker.on_failure(0.1)
    to_half_open(breaker, clock)
    assert breaker.try_acquire()
    breaker.on_failure(0.1)
    assert breaker.trips == 3
    close_via_probes(breaker, clock)
    assert breaker.trips == 3
    clock.now += 29.9
    assert breaker.trips == 3
    clock.now += 0.1
    assert breaker.trips == 2
    clock.now += 30.0
    assert breaker.trips == 1
    # The next trip opens for open_s * 2**(2-1), not the 40 s a fourth trip would have.
    trip(breaker)
    until = breaker.open_until
    assert until is not None
    assert until - clock.now == 10.0


def test_trip_count_decays_fully_after_a_long_closed_stretch() -> None:
    breaker, clock, _ = make(decay_s=30.0)
    trip(breaker)
    close_via_probes(breaker, clock)
    clock.now += 10_000.0
    assert breaker.trips == 0
    trip(breaker)
    assert breaker.trips == 1
    assert breaker.open_until == clock.now + 5.0


def test_no_decay_while_open() -> None:
    breaker, clock, _ = make(decay_s=1.0, open_s=50.0, open_max_s=50.0)
    trip(breaker)
    clock.now += 49.0
    assert breaker.trips == 1


# --- operator overrides -------------------------------------------------------------------------


def test_force_open_refuses_and_records_nothing() -> None:
    breaker, _, seen = make()
    breaker.force_open()
    assert breaker.state is BreakerState.FORCED_OPEN
    assert not breaker.try_acquire()
    breaker.on_failure(0.1)
    assert breaker.snapshot().calls_in_window == 0
    assert seen == [(CLOSED, BreakerState.FORCED_OPEN, "forced_open")]


def test_forced_open_never_turns_half_open() -> None:
    breaker, clock, _ = make()
    trip(breaker)
    breaker.force_open()
    clock.now += 10_000.0
    assert breaker.state is BreakerState.FORCED_OPEN
    assert breaker.open_until is None


def test_force_closed_admits_records_and_never_trips() -> None:
    breaker, _, seen = make(consecutive_failures=2)
    trip(breaker)
    breaker.force_closed()
    for _ in range(20):
        assert breaker.try_acquire()
        breaker.on_failure(0.1)
    snapshot = breaker.snapshot()
    assert snapshot.state is BreakerState.FORCED_CLOSED
    assert snapshot.calls_in_window >= 20
    assert snapshot.failure_rate == 1.0
    assert snapshot.consecutive_failures >= 20
    assert seen[-1] == (OPEN, BreakerState.FORCED_CLOSED, "forced_closed")


def test_disable_admits_and_records_nothing() -> None:
    breaker, _, seen = make(consecutive_failures=1)
    breaker.disable()
    for _ in range(10):
        assert breaker.try_acquire()
        breaker.on_failure(0.1)
    snapshot = breaker.snapshot()
    assert snapshot.state is BreakerState.DISABLED
    assert snapshot.calls_in_window == 0
    assert snapshot.consecutive_failures == 0
    assert seen == [(CLOSED, BreakerState.DISABLED, "disabled")]


def test_reset_clears_window_and_trips() -> None:
    breaker, clock, seen = make()
    trip(breaker)
    to_half_open(breaker, clock)
    assert breaker.try_acquire()
    breaker.on_failure(0.1)
    assert breaker.trips == 2
    breaker.reset()
    snapshot = breaker.snapshot()
    assert snapshot.state is CLOSED
    assert (snapshot.trips, snapshot.calls_in_window, snapshot.consecutive_failures) == (0, 0, 0)
    assert snapshot.open_until is None
    assert seen[-1] == (OPEN, CLOSED, "reset")
    assert breaker.try_acquire()


def test_reset_lifts_an_override() -> None:
    breaker, _, seen = make()
    breaker.force_open()
    breaker.reset()
    assert breaker.state is CLOSED
    assert seen[-1] == (BreakerState.FORCED_OPEN, CLOSED, "reset")


def test_auto_lifts_override_and_keeps_the_window() -> None:
    breaker, _, seen = make(minimum_calls=4)
    breaker.on_failure(0.1)
    breaker.force_closed()
    breaker.on_failure(0.1)
    breaker.on_failure(0.1)
    breaker.auto()
    assert breaker.state is CLOSED
    assert seen[-1] == (BreakerState.FORCED_CLOSED, CLOSED, "auto")
    assert breaker.snapshot().calls_in_window == 3
    breaker.on_failure(0.1)  # the kept window reaches minimum_calls: 4/4 failures
    assert breaker.state is OPEN


def test_auto_without_override_changes_nothing() -> None:
    breaker, _, seen = make()
    trip(breaker)
    breaker.auto()
    assert breaker.state is OPEN
    assert seen == [(CLOSED, OPEN, "failure_rate")]


# --- Retry-After holds --------------------------------------------------------------------------


def test_hold_open_until_refuses_without_counting_a_trip() -> None:
    breaker, clock, seen = make()
    breaker.hold_open_until(clock.now + 7.0)
    assert breaker.state is OPEN
    assert not breaker.try_acquire()
    assert breaker.trips == 0
    assert breaker.open_until == clock.now + 7.0
    clock.now += 7.0
    assert breaker.try_acquire()  # back to closed, not a half-open probe
    assert breaker.state is CLOSED
    assert seen == [(CLOSED, OPEN, "retry_after"), (OPEN, CLOSED, "retry_after_elapsed")]


def test_hold_never_shortens_a_longer_open_period() -> None:
    breaker, clock, _ = make(open_s=30.0)
    trip(breaker)
    assert breaker.open_until == clock.now + 30.0
    breaker.hold_open_until(clock.now + 2.0)
    assert breaker.open_until == clock.now + 30.0
    breaker.hold_open_until(clock.now + 45.0)  # a longer hold extends it
    assert breaker.open_until == clock.now + 45.0
    assert breaker.trips == 1
    clock.now += 45.0
    assert breaker.state is HALF_OPEN  # a trip still ends in probes


def test_hold_never_shortens_a_longer_hold() -> None:
    breaker, clock, _ = make()
    breaker.hold_open_until(clock.now + 20.0)
    breaker.hold_open_until(clock.now + 1.0)
    assert breaker.open_until == clock.now + 20.0


def test_hold_in_half_open_returns_to_half_open() -> None:
    breaker, clock, seen = make()
    trip(breaker)
    to_half_open(breaker, clock)
    assert breaker.try_acquire()
    breaker.on_ignored()  # the probe got a 429
    breaker.hold_open_until(clock.now + 3.0)
    assert breaker.state is OPEN
    assert breaker.trips == 1
    clock.now += 3.0
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot().half_open_probes_left == 3
    assert [reason for _, _, reason in seen][-2:] == ["retry_after", "open_elapsed"]


def test_hold_in_the_past_or_under_override_is_a_no_op() -> None:
    breaker, clock, seen = make()
    breaker.hold_open_until(clock.now - 1.0)
    assert breaker.state is CLOSED
    breaker.force_closed()
    breaker.hold_open_until(clock.now + 10.0)
    assert breaker.state is BreakerState.FORCED_CLOSED
    assert breaker.try_acquire()
    assert seen == [(CLOSED, BreakerState.FORCED_CLOSED, "forced_closed")]
    with pytest.raises(ValueError, match="NaN"):
        breaker.hold_open_until(math.nan)


def test_hold_does_not_reset_trip_decay() -> None:
    breaker, clock, _ = make(decay_s=30.0)
    trip(breaker)
    close_via_probes(breaker, clock)
    clock.now += 20.0
    breaker.hold_open_until(clock.now + 5.0)
    clock.now += 5.0
    assert breaker.state is CLOSED
    clock.now += 5.0  # 30 s since closing, 5 of them held
    assert breaker.trips == 0


# --- snapshot and trio's clock ------------------------------------------------------------------


def test_snapshot_fields() -> None:
    breaker, _, _ = make(minimum_calls=10, slow_call_s=1.0)
    breaker.on_success(0.1)
    breaker.on_success(2.0)
    breaker.on_failure(0.1)
    breaker.on_failure(3.0)
    snapshot = breaker.snapshot()
    assert snapshot.state is CLOSED
    assert snapshot.calls_in_window == 4
    assert snapshot.failure_rate == 0.5
    assert snapshot.slow_call_rate == 0.5
    assert snapshot.consecutive_failures == 2
    assert (snapshot.trips, snapshot.open_until, snapshot.half_open_probes_left) == (0, None, 0)


async def test_full_cycle_in_trio_virtual_time(autojump_clock: trio.abc.Clock) -> None:
    seen: Transitions = []
    breaker = CircuitBreaker(
        BreakerConfig(minimum_calls=2, open_s=5.0, half_open_probes=1),
        on_transition=lambda old, new, reason: seen.append((old, new, reason)),
    )
    start = trio.current_time()
    breaker.on_failure(0.1)
    breaker.on_failure(0.1)
    assert breaker.open_until == start + 5.0
    await trio.sleep_until(start + 4.0)
    assert not breaker.try_acquire()
    await trio.sleep_until(start + 5.0)
    assert breaker.try_acquire()
    breaker.on_success(0.1)
    assert breaker.state is CLOSED
    assert [reason for _, _, reason in seen] == ["failure_rate", "open_elapsed", "probes_succeeded"]


def test_a_panic_success_ends_the_open_period() -> None:
    breaker, _, seen = make()
    trip(breaker)
    assert not breaker.try_acquire()
    breaker.on_unadmitted_success(2.0)  # slower than slow_call_s: no evidence, still open
    assert breaker.state is OPEN
    breaker.on_unadmitted_success(0.1)
    assert breaker.state is HALF_OPEN
    assert seen[-1] == (OPEN, HALF_OPEN, "open_elapsed")
    for _ in range(3):
        assert breaker.try_acquire()
        breaker.on_success(0.1)
    assert breaker.state is CLOSED


def test_a_panic_success_does_not_end_a_retry_after_hold() -> None:
    breaker, clock, _ = make()
    breaker.hold_open_until(clock.now + 30)
    breaker.on_unadmitted_success(0.1)
    assert breaker.state is OPEN


# --- permits belong to the period they were taken in; panic calls hold a probe place -----------


def test_a_permit_from_an_earlier_half_open_period_is_no_probe_of_this_one() -> None:
    breaker, clock, _ = make(half_open_probes=1)
    trip(breaker)
    to_half_open(breaker, clock)
    assert breaker.try_acquire()
    stale = breaker.period
    breaker.on_failure(0.1, period=stale)  # the probe fails: open again
    to_half_open(breaker, clock)
    assert breaker.try_acquire()  # this period's one probe
    assert not breaker.try_acquire()
    # A call from the earlier period ending now gives back no permit and decides nothing.
    breaker.on_success(0.1, period=stale)
    breaker.on_ignored(period=stale)
    assert breaker.state is HALF_OPEN
    assert not breaker.try_acquire()
    breaker.on_success(0.1, period=breaker.period)
    assert breaker.state is CLOSED


def test_a_panic_call_goes_out_only_while_open_and_holds_a_probe_place() -> None:
    breaker, clock, _ = make(half_open_probes=1)
    assert not breaker.try_panic()  # closed: an ordinary permit is the way out
    trip(breaker)
    assert not breaker.try_acquire()
    assert breaker.would_admit(panic=True) and not breaker.would_admit()
    assert breaker.try_panic()
    to_half_open(breaker, clock)
    # The panic call is still out: it is this half-open period's one call at the provider.
    assert breaker.snapshot().half_open_probes_left == 0
    assert not breaker.would_admit(panic=True)
    assert not breaker.try_acquire()
    assert not breaker.try_panic()  # half-open: the probes decide, panic or not
    breaker.end_panic(0.1, success=False)
    assert breaker.try_acquire()


def test_a_panic_call_never_passes_a_forced_open_breaker() -> None:
    breaker, _, _ = make()
    breaker.force_open()
    assert not breaker.would_admit(panic=True)
    assert not breaker.try_panic()


def test_a_panic_success_reported_through_end_panic_ends_the_open_period() -> None:
    breaker, _, _ = make()
    trip(breaker)
    assert breaker.try_panic()
    breaker.end_panic(0.1, success=True)
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot().half_open_probes_left == 3


# -- recovery probes -------------------------------------------------------------------------------


def test_a_successful_recovery_probe_turns_an_open_breaker_half_open_at_once() -> None:
    breaker, clock, seen = make()
    trip(breaker)
    clock.now += 1.0
    assert breaker.wants_recovery_probe
    assert breaker.on_recovery_probe(success=True, hold_s=2.0)
    assert breaker.state is HALF_OPEN
    assert seen[-1] == (OPEN, HALF_OPEN, "recovery_probe")
    assert not breaker.wants_recovery_probe
    for _ in range(3):  # the half-open calls confirm it, as after any open period
        assert breaker.try_acquire()
        breaker.on_success(0.1)
    assert breaker.state is CLOSED


def test_a_failed_recovery_probe_keeps_the_breaker_open_without_a_trip() -> None:
    breaker, clock, seen = make(open_s=5.0)
    trip(breaker)
    assert breaker.trips == 1
    # Probes keep failing past the open period's end: it stays open, a probe interval ahead.
    for _ in range(20):
        clock.now += 1.0
        breaker.on_recovery_probe(success=False, hold_s=2.0)
        assert breaker.state is OPEN
        assert breaker.open_until == max(105.0, clock.now + 2.0)
    assert breaker.trips == 1
    assert [reason for *_, reason in seen] == ["failure_rate"]
    # Without probes the period ends, and the next trip is not doubled by the failed probes.
    clock.now += 2.0
    assert breaker.state is HALF_OPEN
    assert breaker.try_acquire()
    breaker.on_failure(0.1)
    assert breaker.open_until == clock.now + breaker.open_duration(2) == clock.now + 10.0


def test_a_failed_recovery_probe_never_shortens_the_open_period() -> None:
    breaker, clock, _ = make(open_s=5.0)
    trip(breaker)
    breaker.on_recovery_probe(success=False, hold_s=1.0)
    assert breaker.open_until == clock.now + 5.0


def test_probes_are_not_wanted_during_a_retry_after_hold_or_an_override() -> None:
    breaker, clock, _ = make()
    breaker.hold_open_until(clock.now + 10.0)
    assert breaker.state is OPEN and not breaker.wants_recovery_probe
    assert not breaker.on_recovery_probe(success=True, hold_s=1.0)
    assert breaker.state is OPEN
    breaker.force_open()
    assert not breaker.wants_recovery_probe
    breaker.auto()
    assert not breaker.wants_recovery_probe  # closed


def test_a_probe_success_refuted_by_the_half_open_calls_is_not_trusted_until_closed() -> None:
    """A models listing that answers while completions fail lets one trial through, not one
    every probe interval: the open periods then run their course, doubling as before."""
    breaker, clock, _ = make(open_s=5.0)
    trip(breaker)
    assert breaker.on_recovery_probe(success=True, hold_s=1.0)
    assert breaker.try_acquire()
    breaker.on_failure(0.1)
    assert breaker.state is OPEN and breaker.trips == 2
    assert not breaker.wants_recovery_probe
    assert not breaker.on_recovery_probe(success=True, hold_s=1.0)
    assert breaker.state is OPEN
    clock.now += 10.0
    assert breaker.state is HALF_OPEN
    for _ in range(3):
        assert breaker.try_acquire()
        breaker.on_success(0.1)
    assert breaker.state is CLOSED
    trip(breaker)
    assert breaker.wants_recovery_probe  # trusted again once it closed
