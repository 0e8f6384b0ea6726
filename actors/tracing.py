"""OpenTelemetry spans: `uptax.request` for each request, and `uptax.attempt`, its child, for
each try at a provider (the request's `Attempt`s, one span each).

Through `opentelemetry-api` only. Unless the application configures an SDK (or hands the
runtime a tracer provider), the API's tracer is a no-op: its spans do not record, and then a
request costs one span start and a few calls that return at once, with no attempt spans at all.
Attributes are names, levels, outcomes, error kinds and costs: never a prompt, a message, an
error's text (it may quote the provider's reply) or a key.

Spans are parented explicitly rather than made current, because a stream is an async generator
and must not leave its span current for its caller between chunks; a whole reply's attempt span
is made current for the call, so instrumented HTTP clients nest under it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import trio
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, TracerProvider

if TYPE_CHECKING:
    from actors.messages import Attempt, Reply, Request

__all__ = ["NO_TRACE", "RequestTrace", "Tracing"]

#: The instrumentation scope the spans are reported under.
SCOPE = "uptax"
#: Attempt outcomes that are not failures of the provider asked.
_NOT_FAILED = frozenset({"ok", "refused", "cancelled"})
#: Request endings that are the caller's choice, not an error.
_NOT_ERRORS = frozenset({"cancelled"})
_NULL_CONTEXT = contextlib.nullcontext()


class Tracing:
    """The runtime's tracer: from `provider`, or the global one (a no-op until the application
    sets an SDK's, which it may do after the runtime has started)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(SCOPE, tracer_provider=provider)

    def request(self, request: Request, *, stream: bool) -> RequestTrace:
        """The spans of one request, its own started now (a child of the caller's current
        span); `NO_TRACE` when it does not record."""
        span = self._tracer.start_span("uptax.request", record_exception=False)
        if not span.is_recording():
            return NO_TRACE
        span.set_attributes(
            {
                "uptax.stream": stream,
                "uptax.complexity": request.complexity.value,
                "uptax.quality": request.quality.value,
                "uptax.max_tokens": request.max_tokens,
            }
        )
        return RequestTrace(self._tracer, span)


class RequestTrace:
    """One request's span and its attempts' spans. The request span ends once: at its reply or
    error, or at `end` for whatever else ended the request."""

    __slots__ = ("_context", "_ended", "_span", "_tracer", "recording")

    def __init__(self, tracer: trace.Tracer | None, span: Span) -> None:
        self._tracer = tracer
        self._span = span
        self._context = trace.set_span_in_context(span) if tracer is not None else None
        self._ended = tracer is None
        #: Whether the spans record: what only they would use need not be worked out otherwise.
        self.recording = tracer is not None

    def attempt(self, provider: str, model: str, level: str) -> Span:
        """A span for a try at `provider`, started now; end it with `attempt_ended`."""
        if self._tracer is None:
            return trace.INVALID_SPAN
        return self._tracer.start_span(
            "uptax.attempt",
            context=self._context,
            attributes={"uptax.provider": provider, "uptax.model": model, "uptax.level": level},
            record_exception=False,
        )

    def active(self, span: Span) -> contextlib.AbstractContextManager[object]:
        """`span` made current for the call it times (nothing to do when it does not record)."""
        if self._tracer is None:
            return _NULL_CONTEXT
        return trace.use_span(span, record_exception=False, set_status_on_exception=False)

    def attempt_ended(self, span: Span, attempt: Attempt, cost_usd: float = 0.0) -> None:
        if self._tracer is None:
            return
        span.set_attribute("uptax.outcome", attempt.outcome)
        span.set_attribute("uptax.cost_usd", cost_usd)
        if attempt.outcome not in _NOT_FAILED:
            span.set_attribute("uptax.error_kind", attempt.outcome)
            span.set_status(Status(StatusCode.ERROR, attempt.outcome))
        span.end()

    def attempt_broke(self, span: Span, error: BaseException | None = None) -> None:
        """End `span` if its `Attempt` has not: the call ended in something no `Attempt`
        records (`error`: a bug, a stream its reader left), or in nothing at all."""
        if self._tracer is None or not span.is_recording():
            return
        kind = _kind_of(error) if error is not None else "no_reply"
        span.set_attribute("uptax.outcome", kind)
        if kind not in _NOT_ERRORS:
            span.set_attribute("uptax.error_kind", kind)
            span.set_status(Status(StatusCode.ERROR, kind))
        span.end()

    def answered(self, reply: Reply) -> None:
        if self._ended:
            return
        self._ended = True
        self._span.set_attributes(
            {
                "uptax.outcome": "ok",
                "uptax.provider": reply.provider,
                "uptax.model": reply.model,
                "uptax.level": reply.level,
                "uptax.cost_usd": reply.cost_usd,
                "uptax.fallback_used": reply.fallback_used,
                "uptax.attempts": len(reply.attempts),
            }
        )
        self._span.end()

    def failed(self, kind: str, attempts: int) -> None:
        """The request ended in an error of `kind` (`FallbackStats.errors_by_kind`'s)."""
        if self._ended:
            return
        self._ended = True
        span = self._span
        outcome = "cancelled" if kind in ("cancelled", "runtime_closed") else "failed"
        span.set_attributes(
            {
                "uptax.outcome": outcome,
                "uptax.error_kind": kind,
                "uptax.attempts": attempts,
                "uptax.cost_usd": 0.0,
            }
        )
        if kind not in _NOT_ERRORS:
            span.set_status(Status(StatusCode.ERROR, kind))
        span.end()

    def end(self, error: BaseException | None = None) -> None:
        """End the request span if its reply or error has not: `error` ended the request."""
        if not self._ended:
            self.failed(_kind_of(error) if error is not None else "error", 0)


def _kind_of(error: BaseException) -> str:
    if _cancelled(error):
        return "cancelled"
    return type(error).__name__


def _cancelled(error: BaseException) -> bool:
    if isinstance(error, trio.Cancelled | GeneratorExit):
        return True
    if isinstance(error, BaseExceptionGroup):
        return all(_cancelled(e) for e in error.exceptions)
    return False


#: The trace of a request whose span does not record: every method returns at once.
NO_TRACE = RequestTrace(None, trace.INVALID_SPAN)
