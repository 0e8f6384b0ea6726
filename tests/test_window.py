"""SlidingWindow eviction at bucket boundaries, and LatencyWindow percentiles and EWMA."""

from __future__ import annotations

import math

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.window import LatencyWindow, SlidingWindow


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counts_and_rates() -> None:
    clock = FakeClock()
    window = SlidingWindow(10.0, clock=clock)
    window.record()
    window.record(failure=True)
    window.record(failure=True, slow=True)
    window.record(slow=True)
    counts = window.counts()
    assert (counts.calls, counts.failures, counts.slow) == (4, 2, 2)
    assert window.failure_rate == 0.5
    assert window.slow_rate == 0.5


def test_empty_window_rates_are_zero() -> None:
    window = SlidingWindow(10.0, clock=FakeClock())
    assert window.calls == 0
    assert window.failure_rate == 0.0
    assert window.slow_rate == 0.0


def test_call_evicted_exactly_when_its_bucket_leaves_the_window() -> None:
    # 10 s split into 10 buckets of 1 s: a call at t=3.5 lives in bucket 3, counted while the
    # current bucket is 3..12, i.e. until t < 13.0, gone at t == 13.0.
    clock = FakeClock(3.5)
    window = SlidingWindow(10.0, buckets=10, clock=clock)
    window.record(failure=True)
    clock.now = 12.999
    assert window.calls == 1
    assert window.failures == 1
    clock.now = 13.0
    assert window.calls == 0
    assert window.failures == 0


def test_eviction_subtracts_only_the_old_bucket() -> None:
    clock = FakeClock(0.0)
    window = SlidingWindow(10.0, buckets=10, clock=clock)
    window.record(failure=True)  # bucket 0
    clock.now = 5.0
    window.record()  # bucket 5
    window.record(slow=True)
    clock.now = 10.0  # bucket 0 evicted, bucket 5 kept
    counts = window.counts()
    assert (counts.calls, counts.failures, counts.slow) == (2, 0, 1)
    clock.now = 15.0
    assert window.calls == 0


def test_long_idle_gap_clears_everything() -> None:
    clock = FakeClock(1.0)
    window = SlidingWindow(2.0, buckets=4, clock=clock)
    for _ in range(5):
        window.record(failure=True)
    clock.now = 1_000.0
    assert window.counts().calls == 0
    window.record()
    assert (window.calls, window.failures) == (1, 0)


def test_clear_forgets_calls() -> None:
    clock = FakeClock()
    window = SlidingWindow(10.0, clock=clock)
    window.record(failure=True)
    window.clear()
    assert window.calls == 0
    clock.now = 4.0
    window.record()
    assert window.failure_rate == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_s": 0.0}, "window_s"),
        ({"window_s": -1.0}, "window_s"),
        ({"window_s": math.inf}, "window_s"),
        ({"window_s": 1.0, "buckets": 0}, "buckets"),
    ],
)
def test_bad_window_settings_name_the_field(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SlidingWindow(**kwargs)  # type: ignore[arg-type]


async def test_uses_trio_clock_by_default(autojump_clock: trio.abc.Clock) -> None:
    window = SlidingWindow(10.0)
    window.record(failure=True)
    await trio.sleep(5.0)
    window.record()
    assert window.calls == 2
    await trio.sleep(5.5)  # the first call's bucket has left the window
    assert (window.calls, window.failures) == (1, 0)
    await trio.sleep(10.0)
    assert window.calls == 0


class NaiveWindow:
    """Reference model: keep every call, count those whose bucket is still in the window."""

    def __init__(self, window_s: float, buckets: int) -> None:
        self.width = window_s / buckets
        self.buckets = buckets
        self.calls: list[tuple[float, bool, bool]] = []

    def record(self, t: float, failure: bool, slow: bool) -> None:
        self.calls.append((t, failure, slow))

    def counts(self, now: float) -> tuple[int, int, int]:
        oldest = math.floor(now / self.width) - self.buckets + 1
        live = [c for c in self.calls if math.floor(c[0] / self.width) >= oldest]
        return len(live), sum(c[1] for c in live), sum(c[2] for c in live)


operations = st.lists(
    st.tuples(
        # Time steps: often exact bucket multiples, sometimes arbitrary, sometimes long gaps.
        st.one_of(
            st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]),
            st.floats(min_value=0.0, max_value=4.0, allow_nan=False),
            st.floats(min_value=10.0, max_value=40.0, allow_nan=False),
        ),
        st.booleans(),
        st.booleans(),
        st.booleans(),  # record (True) or only read (False)
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    window_s=st.sampled_from([1.0, 3.0, 10.0, 30.0]),
    buckets=st.sampled_from([1, 3, 10]),
    start=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    ops=operations,
)
def test_matches_naive_model(
    window_s: float, buckets: int, start: float, ops: list[tuple[float, bool, bool, bool]]
) -> None:
    clock = FakeClock(start)
    window = SlidingWindow(window_s, buckets=buckets, clock=clock)
    model = NaiveWindow(window_s, buckets)
    for step, failure, slow, record in ops:
        clock.now += step
        if record:
            window.record(failure=failure, slow=slow)
            model.record(clock.now, failure, slow)
        counts = window.counts()
        assert (counts.calls, counts.failures, counts.slow) == model.counts(clock.now)


# --- LatencyWindow -------------------------------------------------------------------------------


def test_latency_empty_summary_is_zero() -> None:
    summary = LatencyWindow().summary()
    assert (summary.ewma_s, summary.p50_s, summary.p95_s, summary.samples) == (0, 0, 0, 0)


def test_latency_percentiles_nearest_rank() -> None:
    latencies = LatencyWindow(size=256)
    for ms in range(100, 0, -1):  # 1..100 ms, recorded out of order
        latencies.record(ms / 1000)
    summary = latencies.summary()
    assert summary.p50_s == pytest.approx(0.050)
    assert summary.p95_s == pytest.approx(0.095)
    assert latencies.percentile(1.0) == pytest.approx(0.100)
    assert summary.samples == 100


def test_latency_window_is_bounded_to_the_newest_samples() -> None:
    latencies = LatencyWindow(size=4)
    for value in (9.0, 9.0, 9.0, 1.0, 2.0, 3.0, 4.0):
        latencies.record(value)
    assert latencies.samples == 4
    assert latencies.percentile(1.0) == 4.0  # the 9.0 samples were overwritten
    assert latencies.summary().p50_s == 2.0


def test_latency_ewma() -> None:
    latencies = LatencyWindow(alpha=0.5)
    latencies.record(1.0)
    assert latencies.ewma_s == 1.0  # starts at the first sample
    latencies.record(3.0)
    assert latencies.ewma_s == 2.0
    latencies.record(0.0)
    assert latencies.ewma_s == 1.0


@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf])
def test_latency_rejects_bad_samples(value: float) -> None:
    with pytest.raises(ValueError, match="latency_s"):
        LatencyWindow().record(value)


def test_latency_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="size"):
        LatencyWindow(size=0)
    with pytest.raises(ValueError, match="alpha"):
        LatencyWindow(alpha=0.0)
