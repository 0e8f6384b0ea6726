"""Fallback statistics, performance history, recommendations and alerts (the seed's rules)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import cattrs
import pytest

from actors.config import parse_config
from actors.messages import (
    Attempt,
    BreakerSnapshot,
    BreakerState,
    HealthStatus,
    ProviderSnapshot,
    Reply,
)
from actors.stats import (
    ALL_NORMAL,
    INVESTIGATE_PRIMARIES,
    Alert,
    AlertKind,
    AlertRules,
    AlertWatch,
    FallbackStats,
    PerformanceHistory,
    Sample,
    recommendations,
)

BREAKER = BreakerSnapshot(BreakerState.CLOSED, 0.0, 0.0, 0, 0, 0, None, 0)


def snapshot(
    name: str, *, kind: str = "simulated", at: float = 0.0, **fields: Any
) -> ProviderSnapshot:
    values: dict[str, Any] = {
        "provider": name,
        "kind": kind,
        "models": ("m",),
        "at": at,
        "status": HealthStatus.HEALTHY,
        "breaker": BREAKER,
        "latency_ms": 100.0,
        "latency_p50_ms": 100.0,
        "latency_p95_ms": 150.0,
        "error_rate": 0.0,
        "quota_remaining": 1.0,
        "consecutive_failures": 0,
        "last_check": at,
        "available": True,
    }
    values.update(fields)
    return ProviderSnapshot(**values)


def attempt(provider: str, level: str, outcome: str = "ok") -> Attempt:
    return Attempt(provider, "m", level, outcome, 10.0)


def reply(provider: str, level: str, *failed: Attempt) -> Reply:
    attempts = (*failed, attempt(provider, level))
    return Reply(
        text="t",
        provider=provider,
        model="m",
        level=level,
        fallback_used=len(attempts) > 1,
        attempts=attempts,
        latency_ms=10.0,
        cost_usd=0.0,
    )


# --- FallbackStats ---


def test_stats_count_replies_errors_levels_providers_and_failure_kinds() -> None:
    stats = FallbackStats()
    stats.record_reply(reply("openai", "primary"))
    stats.record_reply(reply("openai", "primary"))
    stats.record_reply(reply("gemini", "secondary", attempt("openai", "primary", "timeout")))
    stats.record_error(
        (attempt("openai", "primary", "server_error"), attempt("cache", "last", "no_match")),
        "all_levels_failed",
    )
    stats.record_error((attempt("openai", "primary", "client_error"),), "request_rejected")
    snap = stats.snapshot()
    assert (snap.total_requests, snap.successes, snap.failures) == (5, 3, 2)
    assert snap.fallback_used == 2
    assert snap.fallback_rate == pytest.approx(0.4)
    assert snap.by_level == {"primary": 2, "secondary": 1}
    assert snap.by_provider == {"openai": 2, "gemini": 1}
    assert snap.failures_by_kind == {
        "timeout": 1,
        "server_error": 1,
        "no_match": 1,
        "client_error": 1,
    }
    assert snap.errors_by_kind == {"all_levels_failed": 1, "request_rejected": 1}


def test_stats_snapshot_is_frozen_and_json_ready() -> None:
    stats = FallbackStats()
    assert stats.snapshot().fallback_rate == 0.0
    stats.record_reply(reply("openai", "primary"))
    snap = stats.snapshot()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snap.total_requests = 9  # type: ignore[misc]
    data = cattrs.unstructure(snap)
    assert json.loads(json.dumps(data))["by_provider"] == {"openai": 1}
    stats.record_reply(reply("openai", "primary"))
    assert snap.by_provider == {"openai": 1}  # a snapshot does not change afterwards


# --- PerformanceHistory ---


def test_history_stays_bounded_per_provider() -> None:
    history = PerformanceHistory(size=5)
    for index in range(12):
        history.record("a", float(index), 10.0 * index, ok=index % 2 == 0)
    history.record("b", 0.0, 1.0)
    samples = history.samples("a")
    assert len(samples) == 5
    assert samples[0] == Sample(7.0, 70.0, False) and samples[-1] == Sample(11.0, 110.0, False)
    assert history.summary("a").samples == 5
    assert history.providers() == ("a", "b")


def test_summary_is_over_the_last_ten() -> None:
    history = PerformanceHistory(size=100)
    for index in range(20):
        history.record("a", float(index), 1000.0, ok=False)  # old and bad: outside the last 10
    for index in range(10):
        history.record("a", 20.0 + index, 100.0 + index, ok=index != 9)
    summary = history.summary("a")
    assert summary.recent == 10 and summary.samples == 30
    assert summary.average_latency_ms == pytest.approx(104.5)
    assert summary.success_rate == pytest.approx(0.9)
    assert summary.recent_failures == 1
    empty = history.summary("nobody")
    assert (empty.samples, empty.average_latency_ms, empty.success_rate) == (0, None, None)


def test_history_size_and_baselines_from_config() -> None:
    config = parse_config(
        {
            "runtime": {"history_size": 7},
            "providers": [
                {"name": "sim", "kind": "simulated", "models": ["m"], "latency_ms": 250},
                {"name": "fast", "kind": "simulated", "models": ["m"], "latency_ms": 0},
                {"name": "cache", "kind": "cache"},
            ],
            "levels": [{"name": "l", "providers": ["sim", "fast", "cache"], "timeout_s": 1}],
        }
    )
    history = PerformanceHistory.for_config(config)
    assert history.size == 7
    assert history.baseline("sim") == 250.0
    assert history.baseline("fast") is None and history.baseline("cache") is None


def test_baseline_is_first_observed_median_unless_configured() -> None:
    history = PerformanceHistory(baseline_samples=5)
    for latency in (100.0, 300.0, 120.0, 110.0):
        history.record("a", 0.0, latency)
    history.record("a", 0.0, 9999.0, ok=False)  # failures do not shape the baseline
    assert history.baseline("a") is None
    history.record("a", 0.0, 90.0)
    assert history.baseline("a") == 110.0
    history.record("a", 0.0, 5000.0)
    assert history.baseline("a") == 110.0  # fixed once observed
    history.set_baseline("a", 80.0)
    assert history.summary("a").baseline_latency_ms == 80.0


# --- recommendations ---


def test_all_normal_when_no_rule_applies() -> None:
    history = PerformanceHistory()
    history.record("openai", 0.0, 100.0)
    result = recommendations([snapshot("openai")], FallbackStats(), history)
    assert result == (ALL_NORMAL,)


@pytest.mark.parametrize("status", [HealthStatus.CRITICAL, HealthStatus.OFFLINE])
def test_critical_or_offline_needs_attention(status: HealthStatus) -> None:
    history = PerformanceHistory()
    history.record("openai", 0.0, 100.0, ok=False)
    result = recommendations([snapshot("openai", status=status)], FallbackStats(), history)
    assert result == ("openai needs attention",)


def test_recent_failures_mean_monitor() -> None:
    history = PerformanceHistory()
    history.record("gemini", 0.0, 100.0, ok=False)
    for _ in range(9):
        history.record("gemini", 0.0, 100.0)
    history.record("cache", 0.0, 0.0, ok=False)  # a cache miss is not a health problem
    snaps = [snapshot("openai"), snapshot("gemini"), snapshot("cache", kind="cache")]
    assert recommendations(snaps, FallbackStats(), history) == ("monitor gemini",)
    history.record("gemini", 1.0, 100.0)  # the failure leaves the last ten
    assert recommendations(snaps, FallbackStats(), history) == (ALL_NORMAL,)
    degraded = [snapshot("openai", status=HealthStatus.DEGRADED, consecutive_failures=2)]
    assert recommendations(degraded, FallbackStats(), history) == ("monitor openai",)


def test_fallback_rate_over_ten_percent_means_investigate_primaries() -> None:
    stats = FallbackStats()
    for _ in range(9):
        stats.record_reply(reply("openai", "primary"))
    stats.record_reply(reply("gemini", "secondary", attempt("openai", "primary", "timeout")))
    history = PerformanceHistory()
    assert recommendations([], stats, history) == (ALL_NORMAL,)  # exactly 10 % is not over
    stats.record_reply(reply("gemini", "secondary", attempt("openai", "primary", "timeout")))
    assert recommendations([], stats, history) == (INVESTIGATE_PRIMARIES,)
    assert recommendations([], stats.snapshot(), history) == (INVESTIGATE_PRIMARIES,)
    both = recommendations([snapshot("openai", status=HealthStatus.OFFLINE)], stats, history)
    assert both == ("openai needs attention", INVESTIGATE_PRIMARIES)


# --- alerts ---


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def watch(clock: FakeClock, events: list[tuple[str, dict[str, Any]]] | None = None) -> AlertWatch:
    def emit(event: str, **fields: Any) -> None:
        if events is not None:
            events.append((event, fields))

    return AlertWatch(clock=clock, emit=emit)


def test_offline_alert_only_after_a_minute_and_reports_since() -> None:
    clock = FakeClock()
    events: list[tuple[str, dict[str, Any]]] = []
    alerts = watch(clock, events)
    history = PerformanceHistory()
    clock.now = 100.0
    alerts.observe(snapshot("openai", at=100.0, status=HealthStatus.OFFLINE))
    clock.now = 160.0
    offline = snapshot("openai", at=160.0, status=HealthStatus.OFFLINE, quota_remaining=1.0)
    assert alerts.alerts([offline], history) == ()  # exactly 60 s is not more than a minute
    clock.now = 161.0
    (alert,) = alerts.alerts([offline], history)
    assert alert == Alert("openai", AlertKind.OFFLINE, "openai offline for 61 s", 100.0)
    assert events == [
        ("alert_raised", {"provider": "openai", "alert": "offline", "detail": alert.message})
    ]
    assert alerts.alerts([snapshot("openai", at=162.0)], history) == ()
    assert events[-1] == ("alert_cleared", {"provider": "openai", "alert": "offline"})
    clock.now = 170.0
    again = snapshot("openai", at=170.0, status=HealthStatus.OFFLINE)
    assert alerts.alerts([again], history) == ()  # the minute starts over


def test_error_rate_alert_over_five_minutes_with_minimum_calls() -> None:
    clock = FakeClock()
    alerts = watch(clock)
    history = PerformanceHistory()
    for index in range(8):
        history.record("openai", float(index), 100.0, ok=index >= 2)  # 2 failures of 8
    clock.now = 10.0
    assert alerts.alerts([snapshot("openai")], history) == ()  # too few calls to judge
    for index in range(2):
        history.record("openai", 8.0 + index, 100.0)  # 2 of 10 = 20 %
    (alert,) = alerts.alerts([snapshot("openai")], history)
    assert alert.kind is AlertKind.ERROR_RATE and alert.since == 10.0
    assert "20%" in alert.message
    clock.now = 20.0
    (still,) = alerts.alerts([snapshot("openai")], history)
    assert still.since == 10.0  # since when the condition has held
    clock.now = 2.0 + 300.0  # the two failures (at 0 and 1) have left the 5-minute window
    for index in range(10):
        history.record("openai", 300.0 + index / 10, 100.0)
    assert alerts.alerts([snapshot("openai")], history) == ()


def test_error_rate_of_exactly_ten_percent_does_not_alert() -> None:
    clock = FakeClock()
    history = PerformanceHistory()
    for index in range(10):
        history.record("openai", 0.0, 100.0, ok=index != 0)
    assert watch(clock).alerts([snapshot("openai")], history) == ()


def test_latency_alert_over_five_times_baseline() -> None:
    clock = FakeClock()
    alerts = watch(clock)
    history = PerformanceHistory()
    history.set_baseline("openai", 100.0)
    for _ in range(10):
        history.record("openai", 0.0, 500.0)
    assert alerts.alerts([snapshot("openai")], history) == ()  # 5x is not over 5x
    history.record("openai", 0.0, 600.0)
    (alert,) = alerts.alerts([snapshot("openai")], history)
    assert alert.kind is AlertKind.LATENCY
    assert alert.message == "openai latency 510 ms is over 5x its baseline 100 ms"


def test_no_latency_alert_without_a_baseline() -> None:
    history = PerformanceHistory(baseline_samples=100)
    for _ in range(10):
        history.record("openai", 0.0, 10_000.0)
    assert watch(FakeClock()).alerts([snapshot("openai")], history) == ()


def test_quota_alert_below_twenty_percent() -> None:
    alerts = watch(FakeClock())
    history = PerformanceHistory()
    assert alerts.alerts([snapshot("openai", quota_remaining=0.2)], history) == ()
    (alert,) = alerts.alerts([snapshot("openai", quota_remaining=0.05)], history)
    assert (alert.kind, alert.message) == (AlertKind.QUOTA, "openai quota at 5%")


def test_last_resort_misses_raise_no_alerts() -> None:
    history = PerformanceHistory()
    for _ in range(20):
        history.record("cache", 0.0, 0.0, ok=False)
    assert watch(FakeClock()).alerts([snapshot("cache", kind="cache")], history) == ()


def test_custom_rules() -> None:
    clock = FakeClock()
    alerts = AlertWatch(AlertRules(quota_floor=0.5), clock=clock, emit=lambda *a, **k: None)
    (alert,) = alerts.alerts([snapshot("openai", quota_remaining=0.4)], PerformanceHistory())
    assert alert.kind is AlertKind.QUOTA
    assert cattrs.unstructure(alert) == {
        "provider": "openai",
        "kind": "quota",
        "message": "openai quota at 40%",
        "since": 0.0,
    }
