"""HealthTracker: the seed's status rules, latency, error rate window, quota, availability."""

from __future__ import annotations

import math

import pytest
import trio

from actors.health import HealthTracker
from actors.messages import HealthStatus


class FakeClock:
    def __init__(self, now: float = 50.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_new_provider_is_healthy_with_full_quota() -> None:
    snapshot = HealthTracker(clock=FakeClock()).snapshot()
    assert snapshot.status is HealthStatus.HEALTHY
    assert snapshot.quota_remaining == 1.0
    assert snapshot.last_check is None
    assert (snapshot.error_rate, snapshot.latency_ms, snapshot.consecutive_failures) == (0, 0, 0)
    assert snapshot.available


def test_seed_status_rules() -> None:
    health = HealthTracker(clock=FakeClock())
    assert health.record_failure() is HealthStatus.HEALTHY  # one failure is not degraded
    assert health.record_failure() is HealthStatus.DEGRADED  # two in a row
    assert health.record_failure() is HealthStatus.CRITICAL  # three in a row
    assert health.record_failure() is HealthStatus.CRITICAL
    assert health.consecutive_failures == 4
    assert health.record_success(0.1) is HealthStatus.HEALTHY  # a success resets the run
    assert health.consecutive_failures == 0
    health.record_failure()
    assert health.status is HealthStatus.HEALTHY


def test_offline_while_unavailable_whatever_the_calls() -> None:
    health = HealthTracker(clock=FakeClock())
    health.mark_unavailable("no credentials")
    health.record_success(0.1)
    snapshot = health.snapshot()
    assert snapshot.status is HealthStatus.OFFLINE
    assert not snapshot.available
    assert snapshot.reason == "no credentials"
    health.mark_available()
    assert health.status is HealthStatus.HEALTHY
    assert health.snapshot().reason == ""


def test_custom_thresholds() -> None:
    health = HealthTracker(clock=FakeClock(), degraded_after=1, critical_after=5)
    assert health.record_failure() is HealthStatus.DEGRADED
    for _ in range(3):
        health.record_failure()
    assert health.status is HealthStatus.DEGRADED
    assert health.record_failure() is HealthStatus.CRITICAL


def test_bad_thresholds_are_named() -> None:
    with pytest.raises(ValueError, match="degraded_after"):
        HealthTracker(degraded_after=0)
    with pytest.raises(ValueError, match="critical_after"):
        HealthTracker(degraded_after=3, critical_after=2)


def test_error_rate_over_the_sliding_window() -> None:
    clock = FakeClock(0.0)
    health = HealthTracker(clock=clock, window_s=60.0)
    health.record_failure()
    health.record_failure()
    clock.now = 30.0
    health.record_success(0.1)
    health.record_success(0.1)
    assert health.snapshot().error_rate == 0.5
    assert health.snapshot().calls_in_window == 4
    clock.now = 60.0  # the failures' bucket (0..6 s) has left the window
    snapshot = health.snapshot()
    assert snapshot.error_rate == 0.0
    assert snapshot.calls_in_window == 2


def test_latency_ewma_and_percentiles_in_ms() -> None:
    health = HealthTracker(clock=FakeClock(), latency_alpha=0.5)
    health.record_success(0.100)
    health.record_success(0.300)
    snapshot = health.snapshot()
    assert snapshot.latency_ms == pytest.approx(200.0)
    assert snapshot.latency_p50_ms == pytest.approx(100.0)
    assert snapshot.latency_p95_ms == pytest.approx(300.0)


def test_failure_latency_only_when_given() -> None:
    health = HealthTracker(clock=FakeClock(), latency_alpha=0.5)
    health.record_success(0.1)
    health.record_failure()  # a fast error: no latency sample
    assert health.snapshot().latency_ms == pytest.approx(100.0)
    health.record_failure(30.0)  # a timeout: the provider is slow
    assert health.snapshot().latency_ms == pytest.approx(15_050.0)


def test_last_check_is_the_last_call_time() -> None:
    clock = FakeClock(10.0)
    health = HealthTracker(clock=clock)
    health.record_success(0.1)
    clock.now = 12.5
    health.record_failure()
    assert health.snapshot().last_check == 12.5
    assert health.snapshot().at == 12.5


def test_quota() -> None:
    health = HealthTracker(clock=FakeClock())
    health.set_quota(0.15)
    assert health.snapshot().quota_remaining == 0.15
    health.set_quota(0)
    assert health.quota_remaining == 0.0
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="quota"):
            health.set_quota(bad)
    with pytest.raises(ValueError, match="quota"):
        health.set_quota("0.5")  # type: ignore[arg-type]
    assert health.quota_remaining == 0.0


async def test_uses_trio_clock_by_default(autojump_clock: trio.abc.Clock) -> None:
    health = HealthTracker(window_s=10.0)
    health.record_failure()
    await trio.sleep(3.0)
    health.record_success(0.2)
    snapshot = health.snapshot()
    assert snapshot.last_check == trio.current_time()
    assert snapshot.error_rate == 0.5
    await trio.sleep(10.0)
    assert health.snapshot().error_rate == 0.0


def test_a_sample_after_a_stale_silence_restarts_the_latency_average() -> None:
    now = [0.0]
    health = HealthTracker(clock=lambda: now[0], latency_alpha=0.2, latency_stale_s=30.0)
    health.record_success(20.0)  # a brownout's 20 s call
    now[0] = 10.0
    health.record_success(0.5)  # within the stale period: an ordinary EWMA step
    assert health.snapshot().latency_ms == pytest.approx(0.8 * 20_000 + 0.2 * 500)
    now[0] = 41.0
    health.record_success(0.5)  # after 31 s of silence: the old average is dropped
    assert health.snapshot().latency_ms == pytest.approx(500)
