"""`GET /metrics`: the gateway's Prometheus metrics, through `prometheus_client`.

Each gateway has its own `CollectorRegistry` (never the process-wide default), so two gateways
in one process (tests, embedding) never share or collide on a series. Request metrics are
counted from each request's `RequestRecord`; breaker states, provider health, quota, latency
and the runtime's error counts are read from `rt.status()` when Prometheus scrapes, so they are
never stale. Labels are names from the config (tenants, providers, levels) and fixed outcomes:
bounded, and never a key or a prompt. `deploy/prometheus/alerts.yml` and
`deploy/grafana/uptax.json` are written over these names.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from actors.messages import BreakerState, HealthStatus
from actors.state import FleetState
from actors.stats import AlertKind
from runtime.embed import ProviderStatus, Runtime, RuntimeStatus
from runtime.gateway.access import RequestRecord

__all__ = ["GatewayMetrics", "metrics_endpoint"]

#: Request durations: from a cached answer (milliseconds) to a long generation (minutes).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: The ways a request can end in an error (`FallbackStats.errors_by_kind`), exposed at 0 before
#: the first one: a counter series that appears at 1 hides its first increase from `increase()`.
ERROR_KINDS = (
    "all_levels_failed",
    "request_rejected",
    "stream_interrupted",
    "cancelled",
    "runtime_closed",
)


class GatewayMetrics:
    """The gateway's metrics in their own registry; `observe` counts one ended request."""

    def __init__(self, rt: Runtime) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "uptax_requests",
            "Gateway requests by tenant, answering level and provider, and outcome "
            "(ok, refused, failed, cancelled).",
            ["tenant", "level", "provider", "outcome"],
            registry=reg,
        )
        self.duration = Histogram(
            "uptax_request_duration_seconds",
            "Time from a request's arrival to its last byte (a stream's end).",
            buckets=REQUEST_BUCKETS,
            registry=reg,
        )
        self.provider_calls = Histogram(
            "uptax_provider_call_duration_seconds",
            "Duration of each attempt at a provider, whatever its outcome.",
            ["provider"],
            buckets=REQUEST_BUCKETS,
            registry=reg,
        )
        self.provider_outcomes = Counter(
            "uptax_provider_calls",
            "Attempts at each provider by outcome: ok, refused, cancelled (a race lost), "
            "unavailable (not asked), or the failure kind (timeout, server_error, ...).",
            ["provider", "outcome"],
            registry=reg,
        )
        self.fallbacks = Counter(
            "uptax_fallbacks", "Requests answered by a fallback.", ["tenant"], registry=reg
        )
        self.cost = Counter(
            "uptax_cost_usd",
            "What the answers cost, in US dollars, by tenant and provider.",
            ["tenant", "provider"],
            registry=reg,
        )
        self.in_flight = Gauge(
            "uptax_requests_in_flight", "Requests being answered now.", registry=reg
        )
        reg.register(StatusCollector(rt))

    def started(self) -> None:
        self.in_flight.inc()

    def ended(self) -> None:
        self.in_flight.dec()

    def observe(self, record: RequestRecord) -> None:
        self.requests.labels(record.tenant, record.level, record.provider, record.outcome).inc()
        self.duration.observe(record.duration_s)
        for attempt in record.attempts:
            self.provider_calls.labels(attempt.provider).observe(attempt.latency_ms / 1000)
            self.provider_outcomes.labels(attempt.provider, attempt.outcome).inc()
        if record.fallback and record.outcome == "ok":
            self.fallbacks.labels(record.tenant).inc()
        if record.cost_usd > 0:
            self.cost.labels(record.tenant, record.provider).inc(record.cost_usd)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics in the format `accept` asks for (the classic text format by default,
        OpenMetrics when the scraper asks for it), and its content type."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


class StatusCollector(Collector):
    """What `rt.status()` says, read at scrape time: breaker state and health per provider as
    enum-style gauges (1 for the current state, 0 for the others), quota, latency against its
    baseline, restarts, and the runtime's requests that ended in an error, by kind."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def describe(self) -> Iterable[Metric]:
        return ()  # read at scrape time; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        status = self._rt.status()
        yield from _states(status.providers)
        yield from _provider_figures(status.providers)
        yield from _latencies(status)
        yield _errors(status)
        if self._rt.degradation_watch is not None:
            yield _predicted(status)
        if self._rt.fleet is not None:
            yield from _fleet(self._rt.fleet)


def _fleet(fleet: FleetState) -> tuple[Metric, ...]:
    """Whether the shared state store answers (0: this instance runs on its local state), and
    how many instances the fleet had at the last heartbeat read."""
    up = GaugeMetricFamily(
        "uptax_state_store_up",
        "1 while the shared state store answers, 0 while this instance runs on local state",
        labels=["instance"],
    )
    up.add_metric([fleet.instance], 1.0 if fleet.up else 0.0)
    size = GaugeMetricFamily(
        "uptax_fleet_instances", "Instances in the fleet at the last heartbeat read"
    )
    size.add_metric([], float(fleet.fleet_size))
    return up, size


def _states(providers: Iterable[ProviderStatus]) -> tuple[Metric, ...]:
    breaker = GaugeMetricFamily(
        "uptax_breaker_state",
        "Circuit breaker state per provider (1 for the current state).",
        labels=["provider", "state"],
    )
    health = GaugeMetricFamily(
        "uptax_provider_health",
        "Health status per provider (1 for the current status).",
        labels=["provider", "status"],
    )
    for provider in providers:
        for state in BreakerState:
            current = 1.0 if provider.breaker == state.value else 0.0
            breaker.add_metric([provider.name, state.value], current)
        for status in HealthStatus:
            current = 1.0 if provider.status == status.value else 0.0
            health.add_metric([provider.name, status.value], current)
    return (breaker, health)


def _provider_figures(providers: Iterable[ProviderStatus]) -> tuple[Metric, ...]:
    quota = GaugeMetricFamily(
        "uptax_provider_quota_remaining_ratio",
        "Share of each provider's quota left (0 to 1), from its rate-limit headers.",
        labels=["provider"],
    )
    errors = GaugeMetricFamily(
        "uptax_provider_error_ratio",
        "Each provider's error rate as its health check sees it (0 to 1).",
        labels=["provider"],
    )
    failures = GaugeMetricFamily(
        "uptax_provider_consecutive_failures",
        "Failures in a row per provider since its last success.",
        labels=["provider"],
    )
    restarts = CounterMetricFamily(
        "uptax_provider_restarts",
        "Restarts of each provider's actor by its supervisor.",
        labels=["provider"],
    )
    limit = GaugeMetricFamily(
        "uptax_provider_concurrency_limit",
        "Calls each provider may have in flight now: max_in_flight, or its learned value "
        'when max_in_flight = "auto".',
        labels=["provider"],
    )
    for provider in providers:
        quota.add_metric([provider.name], provider.quota_remaining)
        errors.add_metric([provider.name], provider.error_rate)
        failures.add_metric([provider.name], provider.consecutive_failures)
        restarts.add_metric([provider.name], provider.restarts)
        limit.add_metric([provider.name], provider.concurrency_limit)
    return (quota, errors, failures, restarts, limit)


def _latencies(status: RuntimeStatus) -> tuple[Metric, ...]:
    """Latency per provider: p50 and p95 of its health window, the average of its last calls
    and the baseline that the runtime's "latency over 5x baseline" alert compares it with."""
    quantiles = GaugeMetricFamily(
        "uptax_provider_latency_seconds",
        "Latency quantiles per provider over its health window.",
        labels=["provider", "quantile"],
    )
    recent = GaugeMetricFamily(
        "uptax_provider_latency_recent_seconds",
        "Average latency of each provider's last calls (10 by default).",
        labels=["provider"],
    )
    baseline = GaugeMetricFamily(
        "uptax_provider_latency_baseline_seconds",
        "Each provider's latency baseline: configured, or the median of its first calls.",
        labels=["provider"],
    )
    for provider in status.providers:
        if provider.latency_p95_ms > 0:  # else no call has been timed yet
            quantiles.add_metric([provider.name, "0.5"], provider.latency_p50_ms / 1000)
            quantiles.add_metric([provider.name, "0.95"], provider.latency_p95_ms / 1000)
        summary = status.performance.get(provider.name)
        if summary is None:
            continue
        if summary.average_latency_ms is not None:
            recent.add_metric([provider.name], summary.average_latency_ms / 1000)
        if summary.baseline_latency_ms is not None:
            baseline.add_metric([provider.name], summary.baseline_latency_ms / 1000)
    return (quantiles, recent, baseline)


def _errors(status: RuntimeStatus) -> Metric:
    errors = CounterMetricFamily(
        "uptax_request_errors",
        "Requests the runtime ended in an error since it started, by kind (all_levels_failed, "
        "request_rejected, stream_interrupted, cancelled, runtime_closed).",
        labels=["kind"],
    )
    counts = status.stats.errors_by_kind
    for kind in sorted({*ERROR_KINDS, *counts}):
        errors.add_metric([kind], counts.get(kind, 0))
    return errors


def _predicted(status: RuntimeStatus) -> Metric:
    """With `[routing] predict`: which providers a change detector has demoted."""
    predicted = GaugeMetricFamily(
        "uptax_provider_predicted_degradation",
        "1 while a provider is demoted for a predicted degradation ([routing] predict), else 0.",
        labels=["provider"],
    )
    demoted = {a.provider for a in status.alerts if a.kind is AlertKind.PREDICTED_DEGRADATION}
    for provider in status.providers:
        predicted.add_metric([provider.name], 1.0 if provider.name in demoted else 0.0)
    return predicted


async def metrics_endpoint(http: HTTPRequest) -> Response:
    metrics: GatewayMetrics = http.app.state.gateway.metrics
    body, content_type = metrics.exposition(http.headers.get("accept", ""))
    return Response(body, headers={"content-type": content_type})
