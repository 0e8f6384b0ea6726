"""`GET /metrics`: the gateway's Prometheus metrics, through `prometheus_client`.

Each gateway has its own `CollectorRegistry` (never the process-wide default), so two gateways
in one process (tests, embedding) never share or collide on a series. Request metrics are
counted from each request's `RequestRecord`; breaker states and provider health are read from
`rt.status()` when Prometheus scrapes, so they are never stale. Labels are names from the config
(tenants, providers, levels) and fixed outcomes: bounded, and never a key or a prompt.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from actors.messages import BreakerState, HealthStatus
from runtime.embed import Runtime
from runtime.gateway.access import RequestRecord

__all__ = ["GatewayMetrics", "metrics_endpoint"]

#: Request durations: from a cached answer (milliseconds) to a long generation (minutes).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


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
    """Breaker state and health per provider, as Prometheus enum-style gauges (1 for the
    current state, 0 for the others), read from `rt.status()` at scrape time."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def describe(self) -> Iterable[Metric]:
        return ()  # read at scrape time; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
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
        for provider in self._rt.status().providers:
            for state in BreakerState:
                current = 1.0 if provider.breaker == state.value else 0.0
                breaker.add_metric([provider.name, state.value], current)
            for status in HealthStatus:
                current = 1.0 if provider.status == status.value else 0.0
                health.add_metric([provider.name, status.value], current)
        return (breaker, health)


async def metrics_endpoint(http: HTTPRequest) -> Response:
    metrics: GatewayMetrics = http.app.state.gateway.metrics
    body, content_type = metrics.exposition(http.headers.get("accept", ""))
    return Response(body, headers={"content-type": content_type})
