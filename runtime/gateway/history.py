"""The dashboard's memory: a bounded history of one-second samples, a bounded log of the events
an operator cares about, and the current status, kept for as long as the gateway serves.

A sampler task wakes every `interval_s` on trio's clock and turns what happened since its last
wake (the requests that ended, told by a request listener, so nothing goes through the event
bus) and the providers' state into a `Sample`. Samples are JSON documents built once and kept in
a deque of `SAMPLES_KEPT`; events in a deque of `EVENTS_KEPT`: memory stays the same whatever
the uptime. Live subscribers (the server-sent event streams) get each sample, status and event
through a bounded channel; one that does not keep up is closed, never waited for.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Literal

import attrs
import trio

from actors.prices import baseline_cost, baseline_model
from actors.secrets import redact_secrets
from actors.sizing import request_chars
from actors.stats import RequestEnded
from actors.window import nearest_rank
from runtime.embed import Runtime, RuntimeStatus
from runtime.kernel.events import Event

__all__ = [
    "EVENTS_KEPT",
    "SAMPLES_KEPT",
    "LiveHistory",
    "LiveItem",
    "Tenants",
    "open_live_history",
]

#: Fifteen minutes at one sample a second.
SAMPLES_KEPT = 900
EVENTS_KEPT = 200
#: Items a live subscriber may fall behind by before it is dropped.
SUBSCRIBER_BUFFER = 64

#: Events kept whatever their level; any other event is kept when logged at warning or above.
KEPT_EVENTS = frozenset(
    {
        "breaker_opened",
        "breaker_half_open",
        "breaker_closed",
        "breaker_overridden",
        "breaker_awaiting_fleet_probe",
        "breaker_override_from_fleet",
        "provider_unavailable",
        "provider_available",
        "alert_raised",
        "alert_cleared",
        "actor_restarted",
        "actor_exited",
        "fault_injected",
        "fault_healed",
        "operator_action",
    }
)
_LOUD = frozenset({"warning", "error", "critical"})
_FIELD_CHARS = 300

#: The tenants' spend and budgets, as `Status.tenants` lists them.
Tenants = Callable[[], list[dict[str, Any]]]


@attrs.frozen
class LiveItem:
    """What a live subscriber receives: a sample (with its seq), the status, or a log event."""

    kind: Literal["sample", "status", "log"]
    data: str
    seq: int | None = None


class _Interval:
    """The requests that ended since the last sample."""

    __slots__ = ("baseline_usd", "by_level", "by_provider", "errors", "fallbacks", "latencies")

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.by_level: Counter[str] = Counter()
        self.by_provider: dict[str, float] = {}
        self.fallbacks = 0
        self.errors = 0
        self.baseline_usd = 0.0


class _Totals:
    """Everything since the history started."""

    __slots__ = ("baseline_usd", "by_provider", "errors", "fallbacks", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.fallbacks = 0
        self.baseline_usd = 0.0
        self.by_provider: dict[str, float] = {}


class LiveHistory:
    """Samples, events and status for the dashboard; see the module docstring."""

    def __init__(
        self,
        rt: Runtime,
        *,
        interval_s: float = 1.0,
        wall: Callable[[], float] = time.time,
        tenants: Tenants | None = None,
        samples_kept: int = SAMPLES_KEPT,
        events_kept: int = EVENTS_KEPT,
    ) -> None:
        self.rt = rt
        self.interval_s = interval_s
        self.wall = wall
        self.started_at = wall()
        self._tenants = tenants or list
        self.samples: deque[dict[str, Any]] = deque(maxlen=samples_kept)
        self.events: deque[dict[str, Any]] = deque(maxlen=events_kept)
        self.status: dict[str, Any] = {}
        self._sample_seq = 0
        self._event_seq = 0
        self._interval = _Interval()
        self._totals = _Totals()
        self._subscribers: set[trio.MemorySendChannel[LiveItem]] = set()
        self.closed = False
        config = rt.config
        _, model = baseline_model(config)
        self._baseline_price = config.model_info(model)
        self._chars_per_token = config.routing.chars_per_token

    # -- what the runtime tells it ---------------------------------------------------------------

    def request_ended(self, ended: RequestEnded) -> None:
        """The request listener: O(1), no I/O."""
        interval, totals = self._interval, self._totals
        interval.latencies.append(ended.latency_ms)
        totals.requests += 1
        if ended.fallback_used:
            interval.fallbacks += 1
            totals.fallbacks += 1
        reply = ended.reply
        if reply is None:
            interval.errors += 1
            totals.errors += 1
            return
        interval.by_level[reply.level] += 1
        _add(interval.by_provider, reply.provider, reply.cost_usd)
        _add(totals.by_provider, reply.provider, reply.cost_usd)
        usage = reply.usage
        # The prompt's length is needed only for a reply without tokens (cache, templates).
        tokens = usage.input_tokens or usage.output_tokens
        chars = 0 if tokens else request_chars(ended.request)
        baseline = baseline_cost(
            reply, self._baseline_price, prompt_chars=chars, chars_per_token=self._chars_per_token
        )
        interval.baseline_usd += baseline
        totals.baseline_usd += baseline

    def event(self, event: Event) -> None:
        """An event from the runtime's bus: kept and published when an operator cares."""
        if event.event not in KEPT_EVENTS and self.rt.events.level(event.event) not in _LOUD:
            return
        self._event_seq += 1
        document = {
            "seq": self._event_seq,
            "t": round(self.wall() - (trio.current_time() - event.at), 3),
            "event": event.event,
            "level": self.rt.events.level(event.event),
            "fields": _scalar_fields(event.fields),
        }
        self.events.append(document)
        self._publish(LiveItem("log", _dumps(document)))

    # -- sampling ----------------------------------------------------------------------------

    def sample(self) -> dict[str, Any]:
        """Close the current interval: append its sample, refresh the status, publish both."""
        status = self.rt.status()
        interval, self._interval = self._interval, _Interval()
        self._sample_seq += 1
        sample = {
            "seq": self._sample_seq,
            "t": round(self.wall(), 3),
            "providers": self._providers(status),
            "traffic": _traffic(interval, self.interval_s),
            "cost": {
                "usd": _usd(sum(interval.by_provider.values())),
                "baseline_usd": _usd(interval.baseline_usd),
                "by_provider": {name: _usd(usd) for name, usd in interval.by_provider.items()},
            },
        }
        self.samples.append(sample)
        self.status = self.status_of(status)
        self._publish(LiveItem("sample", _dumps(sample), self._sample_seq))
        self._publish(LiveItem("status", _dumps(self.status)))
        return sample

    def _providers(self, status: RuntimeStatus) -> dict[str, Any]:
        now = trio.current_time()
        providers: dict[str, Any] = {}
        for provider in status.providers:
            snapshot = self.rt.provider_snapshot(provider.name)
            open_until = snapshot.breaker.open_until if snapshot is not None else None
            providers[provider.name] = {
                "status": provider.status,
                "breaker": provider.breaker,
                "half_open_in_s": (
                    round(max(0.0, open_until - now), 3) if open_until is not None else None
                ),
                "latency_p50_ms": provider.latency_p50_ms,
                "latency_p95_ms": provider.latency_p95_ms,
                "error_rate": provider.error_rate,
                "quota_remaining": provider.quota_remaining,
                "in_flight": snapshot.calls_in_flight if snapshot is not None else 0,
                # The learned limit beside it when max_in_flight = "auto" (else None).
                "concurrency_limit": (
                    provider.concurrency_limit if provider.concurrency_bounds is not None else None
                ),
                "restarts": provider.restarts,
                "available": provider.available,
            }
        return providers

    def status_of(self, status: RuntimeStatus) -> dict[str, Any]:
        """The dashboard's Status from the runtime's."""
        totals = self._totals
        cost = sum(totals.by_provider.values())
        saving = (1.0 - cost / totals.baseline_usd) * 100.0 if totals.baseline_usd > 0 else None
        return {
            "alerts": [
                {
                    "provider": alert.provider,
                    "kind": alert.kind.value,
                    "message": alert.message,
                    "since_s": round(max(0.0, status.at - alert.since), 3),
                }
                for alert in status.alerts
            ],
            "recommendations": list(status.recommendations),
            "totals": {
                "requests": totals.requests,
                "errors": totals.errors,
                "fallback_rate": (
                    round(totals.fallbacks / totals.requests, 6) if totals.requests else 0.0
                ),
                "cost_usd": _usd(cost),
                "baseline_usd": _usd(totals.baseline_usd),
                "saving_pct": round(saving, 3) + 0.0 if saving is not None else None,
                "by_provider_usd": {name: _usd(usd) for name, usd in totals.by_provider.items()},
            },
            "tenants": self._tenants(),
            **({} if status.fleet is None else {"fleet": _fleet(status.fleet)}),
        }

    # -- live subscribers ------------------------------------------------------------------------

    def _publish(self, item: LiveItem) -> None:
        for channel in tuple(self._subscribers):
            try:
                channel.send_nowait(item)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                # It fell behind (or left): closing its channel ends its stream.
                self._subscribers.discard(channel)
                channel.close()

    @contextlib.contextmanager
    def subscribe(
        self, buffer: int = SUBSCRIBER_BUFFER
    ) -> Iterator[trio.MemoryReceiveChannel[LiveItem]]:
        """Items from now on; the channel ends when the subscriber falls `buffer` items behind
        or the history closes."""
        send, receive = trio.open_memory_channel[LiveItem](buffer)
        if self.closed:
            send.close()
        else:
            self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def last_seq(self) -> int:
        """The newest sample's seq (0 before the first)."""
        return self._sample_seq

    def samples_after(self, seq: int) -> list[dict[str, Any]]:
        """The samples still held whose seq is greater than `seq`, oldest first."""
        return [sample for sample in self.samples if sample["seq"] > seq]

    def close(self) -> None:
        """End every live stream (the gateway is stopping); later subscribers get nothing."""
        self.closed = True
        for channel in self._subscribers:
            channel.close()
        self._subscribers.clear()

    # -- tasks -------------------------------------------------------------------------------

    async def run_sampler(self) -> None:
        next_at = trio.current_time() + self.interval_s
        while True:
            await trio.sleep_until(next_at)
            self.sample()
            # Keep the beat: a late wake does not push every later sample back.
            next_at = max(next_at + self.interval_s, trio.current_time())

    async def run_events(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with self.rt.events.subscribe(buffer=1000) as events:
            task_status.started()
            async for event in events:
                self.event(event)


@contextlib.asynccontextmanager
async def open_live_history(
    rt: Runtime,
    *,
    interval_s: float = 1.0,
    wall: Callable[[], float] = time.time,
    tenants: Tenants | None = None,
) -> AsyncIterator[LiveHistory]:
    """Keep a `LiveHistory` of `rt` while the block runs; its live streams end when it exits."""
    history = LiveHistory(rt, interval_s=interval_s, wall=wall, tenants=tenants)
    history.status = history.status_of(rt.status())
    remove = rt.add_request_listener(history.request_ended)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(history.run_events)
            nursery.start_soon(history.run_sampler)
            try:
                yield history
            finally:
                history.close()
                nursery.cancel_scope.cancel()
    finally:
        remove()


def _fleet(fleet: Mapping[str, Any]) -> dict[str, Any]:
    """What the dashboard shows of the fleet: the store up or degraded, each instance by id
    with the seconds since its last heartbeat (as of this instance's last sync)."""
    return {
        "instance": fleet["instance"],
        "up": fleet["up"],
        "fleet_size": fleet["fleet_size"],
        "last_heartbeat_s": dict(fleet.get("last_heartbeat_s", {})),
    }


def _traffic(interval: _Interval, interval_s: float) -> dict[str, Any]:
    latencies = sorted(interval.latencies)
    requests = len(latencies)
    return {
        "requests": requests,
        "rps": round(requests / interval_s, 3),
        "by_level": dict(interval.by_level),
        "fallbacks": interval.fallbacks,
        "errors": interval.errors,
        "p50_ms": _rounded(nearest_rank(latencies, 0.50)),
        "p95_ms": _rounded(nearest_rank(latencies, 0.95)),
        "p99_ms": _rounded(nearest_rank(latencies, 0.99)),
    }


def _rounded(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 3)


def _scalar_fields(fields: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """The event's fields, secrets masked, each a str, number or bool (others as short text)."""
    masked = redact_secrets(None, "", dict(fields))
    flat: dict[str, str | int | float | bool] = {}
    for key, value in masked.items():
        if value is None:
            continue
        if isinstance(value, str | int | float | bool):
            flat[key] = value[:_FIELD_CHARS] if isinstance(value, str) else value
        else:
            flat[key] = str(value)[:_FIELD_CHARS]
    return flat


def _add(totals: dict[str, float], key: str, usd: float) -> None:
    totals[key] = totals.get(key, 0.0) + usd


def _usd(value: float) -> float:
    return round(value, 8)


def _dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))
