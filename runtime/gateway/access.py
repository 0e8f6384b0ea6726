"""What became of each gateway request, recorded once when it ends: the access-log event
(`gateway_request`) and the Prometheus metrics are both made from the same `RequestRecord`.

A whole reply ends when its handler returns; a streamed one only when its last event is sent (or
the client left), so `RequestWatch` hands itself to the `EventStreamResponse` and finishes from
there. Whatever way a request ends (an answer, a refusal, a failure, a cancelled task), it is
recorded exactly once, and the in-flight gauge goes back down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal

import attrs
import structlog
import trio
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from actors.cascade import Answering
from actors.messages import Attempt, Reply
from runtime.gateway.errors import GatewayError
from runtime.gateway.streaming import EventStreamResponse

__all__ = ["NO_TENANT", "Outcome", "RequestRecord", "RequestWatch", "tenant_of"]

_log = structlog.get_logger("runtime.gateway")

Outcome = Literal["ok", "refused", "failed", "cancelled"]
#: The tenant label of a request no tenant was resolved for (no tenants configured, or refused
#: before authentication).
NO_TENANT = "-"
#: The status logged for a request whose client left before it was answered (nginx's).
CLIENT_CLOSED = 499


@attrs.frozen
class RequestRecord:
    """One request as it ended; `provider`, `model` and `level` are "-" when none answered."""

    method: str
    path: str
    status: int
    outcome: Outcome
    request_id: str
    tenant: str
    duration_s: float
    provider: str = "-"
    model: str = "-"
    level: str = "-"
    fallback: bool = False
    attempts: tuple[Attempt, ...] = ()
    #: Attempts counted by the stream when the reply never completed (the `Answering` count).
    attempt_count: int = 0
    cost_usd: float = 0.0
    #: Why it failed, as its client was told (gateway error messages carry no secrets).
    error: str | None = None

    def log_fields(self) -> dict[str, Any]:
        fields = {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "tenant": self.tenant,
            "provider": self.provider,
            "model": self.model,
            # Not "level": the log line's own severity is written under that key.
            "answer_level": self.level,
            "fallback": self.fallback,
            "attempts": max(len(self.attempts), self.attempt_count),
            "duration_ms": round(self.duration_s * 1000, 3),
            "cost_usd": round(self.cost_usd, 6),
        }
        if self.error is not None:
            fields["error"] = self.error
        return fields


def tenant_of(http: HTTPRequest) -> str:
    """The tenant authentication put on `http.state.tenant` (a name, or an object with a
    `name`), or "-" when there is none (no tenants configured: the master key, or none)."""
    tenant = getattr(http.state, "tenant", None)
    if tenant is None or getattr(tenant, "config", "") is None:  # no tenants are configured
        return NO_TENANT
    name = tenant if isinstance(tenant, str) else getattr(tenant, "name", None)
    return name if isinstance(name, str) and name else NO_TENANT


def outcome_of(status: int) -> Outcome:
    if status == CLIENT_CLOSED:
        return "cancelled"
    if status >= 500:
        return "failed"
    return "refused" if status >= 400 else "ok"


class RequestWatch:
    """Times one request and records it once to `sinks` when it ends (see the module doc)."""

    def __init__(
        self,
        http: HTTPRequest,
        request_id: str,
        sinks: Sequence[Callable[[RequestRecord], None]],
        on_end: Callable[[], None] = lambda: None,
    ) -> None:
        self._http = http
        self._request_id = request_id
        self._sinks = sinks
        self._on_end = on_end
        self._started = time.perf_counter()
        self._failure: BaseException | None = None
        self._error: str | None = None
        self._deferred = False
        self.done = False

    def __enter__(self) -> RequestWatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if error is not None and not self.done:  # cancelled (shutdown) or a bug: a 500
            status = CLIENT_CLOSED if _is_cancellation(error) else 500
            self.finish(status)

    def failed(self, error: GatewayError, cause: BaseException) -> None:
        """The request ends in `error` (its status); `cause` may carry the attempts made."""
        self._failure = cause
        self._error = error.message
        self.finish(error.status)

    def respond(self, response: Response) -> Response:
        """Record `response` now, or, for a stream, when the stream has ended."""
        if isinstance(response, EventStreamResponse):
            self._deferred = True
            response.on_end = self.stream_ended
        else:
            self.finish(response.status_code, getattr(self._http.state, "reply", None))
        return response

    def stream_ended(self, stream: EventStreamResponse) -> None:
        if stream.disconnected:
            self.finish(CLIENT_CLOSED, answering=stream.answering)
        elif stream.error is not None:
            self._error = stream.error.message
            status = stream.error.status if stream.answering is None else 200
            self.finish(status, answering=stream.answering, outcome=outcome_of(stream.error.status))
        else:
            self.finish(200 if stream.reply is not None else 500, stream.reply)

    def finish(
        self,
        status: int,
        reply: Reply | None = None,
        *,
        answering: Answering | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        if self.done:
            return
        self.done = True
        record = self._record(status, reply, answering, outcome or outcome_of(status))
        try:
            for sink in self._sinks:
                sink(record)
        finally:
            self._on_end()

    def _record(
        self, status: int, reply: Reply | None, answering: Answering | None, outcome: Outcome
    ) -> RequestRecord:
        base: dict[str, Any] = {
            "method": self._http.method,
            "path": self._http.url.path,
            "status": status,
            "outcome": outcome,
            "request_id": self._request_id,
            "tenant": tenant_of(self._http),
            "duration_s": time.perf_counter() - self._started,
            "error": self._error,
        }
        if reply is not None:
            return RequestRecord(
                **base,
                provider=reply.provider,
                model=reply.model,
                level=reply.level,
                fallback=reply.fallback_used,
                attempts=reply.attempts,
                cost_usd=reply.cost_usd,
            )
        attempts = tuple(getattr(self._failure, "attempts", ()) or ())
        if answering is not None:
            return RequestRecord(
                **base,
                provider=answering.provider,
                model=answering.model,
                level=answering.level,
                fallback=answering.fallback_used,
                attempts=attempts,
                attempt_count=answering.attempts,
            )
        return RequestRecord(**base, attempts=attempts)


def log_request(record: RequestRecord) -> None:
    """The access log: one `gateway_request` event per request."""
    _log.info("gateway_request", **record.log_fields())


def _is_cancellation(error: BaseException) -> bool:
    if isinstance(error, trio.Cancelled):
        return True
    if isinstance(error, BaseExceptionGroup):
        return all(_is_cancellation(e) for e in error.exceptions)
    return False
