"""OpenTelemetry spans of requests and attempts, recorded by the SDK's in-memory exporter through
a tracer provider handed to `open_runtime` (the process-wide one can be set only once), on
simulated providers in virtual time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import trio
from gateway_ops_support import ops_config
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from support import make_config

import runtime
from actors.faults import Fault, FaultKind
from actors.tracing import NO_TRACE, Tracing
from runtime.embed import open_runtime

SECRET = "Zanzibar-7f3c-confidential"
REQUEST = runtime.Request(
    prompt=f"Summarise the {SECRET} VAT ruling",
    system=f"You answer for {SECRET}",
    user=f"user-{SECRET}",
    metadata={"case": SECRET},
    task_id=f"task-{SECRET}",
    complexity="moderate",
    quality="production",
    max_tokens=200,
)
#: Every attribute a span may carry: names, levels, outcomes, kinds, figures.
ALLOWED_ATTRIBUTES = {
    "uptax.stream",
    "uptax.complexity",
    "uptax.quality",
    "uptax.max_tokens",
    "uptax.provider",
    "uptax.model",
    "uptax.level",
    "uptax.outcome",
    "uptax.error_kind",
    "uptax.cost_usd",
    "uptax.fallback_used",
    "uptax.attempts",
}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    yield exported
    exported.shutdown()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    traced = TracerProvider()
    traced.add_span_processor(SimpleSpanProcessor(exporter))
    return traced


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def assert_children(request: ReadableSpan, attempts: list[ReadableSpan]) -> None:
    context = request.get_span_context()
    assert context is not None
    for attempt in attempts:
        assert attempt.parent is not None
        assert attempt.parent.span_id == context.span_id
        assert attempt.get_span_context().trace_id == context.trace_id  # type: ignore[union-attr]


def assert_nothing_secret(exporter: InMemorySpanExporter) -> None:
    for span in exporter.get_finished_spans():
        assert set(attributes(span)) <= ALLOWED_ATTRIBUTES, span.name
        assert SECRET not in repr(attributes(span)), span.name
        assert SECRET not in (span.status.description or ""), span.name


async def test_a_reply_after_a_fallback_has_a_span_per_attempt(
    autojump_clock: Any, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    async with open_runtime(ops_config(), tracer_provider=provider) as rt:
        rt.inject_fault("alpha", Fault(FaultKind.OUTAGE))
        reply = await rt.complete(REQUEST)
    assert (reply.provider, reply.fallback_used) == ("beta", True)
    (request,) = spans(exporter, "uptax.request")
    attempts = spans(exporter, "uptax.attempt")
    assert len(attempts) == len(reply.attempts) == 2
    assert_children(request, attempts)
    failed, answered = attempts
    assert attributes(failed) == {
        "uptax.provider": "alpha",
        "uptax.model": "gpt-4o",
        "uptax.level": "primary",
        "uptax.outcome": "server_error",
        "uptax.error_kind": "server_error",
        "uptax.cost_usd": 0.0,
    }
    assert failed.status.status_code is StatusCode.ERROR
    assert attributes(answered) == {
        "uptax.provider": "beta",
        "uptax.model": "claude-sonnet",
        "uptax.level": "secondary",
        "uptax.outcome": "ok",
        "uptax.cost_usd": reply.cost_usd,
    }
    assert answered.status.status_code is StatusCode.UNSET
    assert reply.cost_usd > 0
    assert attributes(request) == {
        "uptax.stream": False,
        "uptax.complexity": "moderate",
        "uptax.quality": "production",
        "uptax.max_tokens": 200,
        "uptax.outcome": "ok",
        "uptax.provider": "beta",
        "uptax.model": "claude-sonnet",
        "uptax.level": "secondary",
        "uptax.cost_usd": reply.cost_usd,
        "uptax.fallback_used": True,
        "uptax.attempts": 2,
    }
    assert request.status.status_code is StatusCode.UNSET
    assert_nothing_secret(exporter)


async def test_a_request_that_fails_at_every_level_has_status_error(
    autojump_clock: Any, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    async with open_runtime(ops_config(), tracer_provider=provider) as rt:
        for name in ("alpha", "beta"):
            rt.inject_fault(name, Fault(FaultKind.OUTAGE))
        with pytest.raises(runtime.AllLevelsFailed) as failure:
            await rt.complete(REQUEST)
    (request,) = spans(exporter, "uptax.request")
    attempts = spans(exporter, "uptax.attempt")
    assert len(attempts) == len(failure.value.attempts) >= 2
    assert_children(request, attempts)
    assert request.status.status_code is StatusCode.ERROR
    assert attributes(request)["uptax.outcome"] == "failed"
    assert attributes(request)["uptax.error_kind"] == "all_levels_failed"
    assert attributes(request)["uptax.attempts"] == len(attempts)
    assert all(span.status.status_code is StatusCode.ERROR for span in attempts)
    assert_nothing_secret(exporter)


async def test_a_stream_span_ends_when_the_stream_ends(
    autojump_clock: Any, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    async with open_runtime(ops_config(), tracer_provider=provider) as rt:
        async with rt.stream(REQUEST) as chunks:
            first = await chunks.__anext__()
            assert first
            assert spans(exporter, "uptax.request") == []  # still streaming
            rest = [text async for text in chunks]
        assert chunks.reply is not None and rest
    (request,) = spans(exporter, "uptax.request")
    (attempt,) = spans(exporter, "uptax.attempt")
    assert_children(request, [attempt])
    assert attributes(request)["uptax.stream"] is True
    assert attributes(request)["uptax.outcome"] == "ok"
    assert attributes(request)["uptax.cost_usd"] == chunks.reply.cost_usd
    assert attributes(attempt)["uptax.outcome"] == "ok"
    assert_nothing_secret(exporter)


async def test_a_cancelled_request_ends_its_spans_as_cancelled(
    autojump_clock: Any, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    async with open_runtime(ops_config(), tracer_provider=provider) as rt:
        rt.inject_fault("alpha", Fault(FaultKind.HANG))
        with trio.move_on_after(5):
            await rt.complete(REQUEST)
    (request,) = spans(exporter, "uptax.request")
    (attempt,) = spans(exporter, "uptax.attempt")
    assert attributes(request)["uptax.outcome"] == "cancelled"
    assert attributes(request)["uptax.error_kind"] == "cancelled"
    assert request.status.status_code is StatusCode.UNSET  # the caller's choice, not an error
    assert attributes(attempt)["uptax.outcome"] == "cancelled"
    assert attempt.status.status_code is StatusCode.UNSET


async def test_a_stream_its_reader_leaves_ends_its_spans_as_cancelled(
    autojump_clock: Any, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    async with open_runtime(ops_config(), tracer_provider=provider) as rt:
        stream = rt.stream(REQUEST)
        async with stream as chunks:
            async for _ in chunks:
                break
    (request,) = spans(exporter, "uptax.request")
    (attempt,) = spans(exporter, "uptax.attempt")
    assert_children(request, [attempt])
    assert attributes(request)["uptax.outcome"] == "cancelled"
    assert attributes(attempt)["uptax.outcome"] == "cancelled"
    assert attempt.end_time is not None and request.end_time is not None


async def test_spans_are_no_ops_unless_an_sdk_is_configured(autojump_clock: Any) -> None:
    """The API's own tracer provider (no SDK) gives spans that do not record: no attempt spans
    are made and nothing is worked out for them."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("this process has set a global tracer provider")
    assert Tracing().request(REQUEST, stream=False) is NO_TRACE
    assert Tracing(trace.NoOpTracerProvider()).request(REQUEST, stream=True) is NO_TRACE
    async with open_runtime(ops_config()) as rt:
        assert rt.cascade.tracing.request(REQUEST, stream=False) is NO_TRACE
        reply = await rt.complete(REQUEST)
    assert reply.provider == "alpha"


async def test_a_race_lost_is_an_attempt_span_cancelled(
    autojump_clock: Any, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    """Both primaries race (openai at 100 ms, anthropic at 120 ms): the loser's span ends as
    cancelled, a child of the same request span, and not as an error."""
    racing = attrs.evolve(REQUEST, strategy="race")
    async with open_runtime(make_config(), tracer_provider=provider) as rt:
        reply = await rt.complete(racing)
    (request,) = spans(exporter, "uptax.request")
    attempts = spans(exporter, "uptax.attempt")
    assert_children(request, attempts)
    outcomes = {attributes(span)["uptax.provider"]: span for span in attempts}
    assert set(outcomes) == {"openai", "anthropic"} and reply.provider == "openai"
    assert attributes(outcomes["openai"])["uptax.outcome"] == "ok"
    lost = outcomes["anthropic"]
    assert attributes(lost)["uptax.outcome"] == "cancelled"
    assert lost.status.status_code is StatusCode.UNSET
