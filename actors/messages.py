"""The messages and snapshots that cross actor boundaries.

Everything here is a frozen attrs class: a message is a value, never a shared mutable object, so
an actor can hand one to another without either of them having to copy it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs
from attrs.validators import optional

from actors.validation import (
    between,
    enum_converter,
    non_negative,
    number,
    positive_int,
    string,
    string_mapping,
    text,
    to_float,
)


class Complexity(enum.StrEnum):
    TRIVIAL = "trivial"
    SIMPLE = "simple"
    MODERATE = "moderate"
    COMPLEX = "complex"
    EXPERT = "expert"
    EPIC = "epic"


class Quality(enum.StrEnum):
    DRAFT = "draft"
    PRODUCTION = "production"
    CRITICAL = "critical"


class HealthStatus(enum.StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"
    OFFLINE = "offline"


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    #: Operator overrides: held open, held closed (admits everything, still records, never trips),
    #: or disabled (admits everything, records nothing).
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"
    DISABLED = "disabled"


_COMPLEXITY = enum_converter(Complexity, "complexity")
_QUALITY = enum_converter(Quality, "quality")


def _to_complexity(value: object) -> Complexity:
    return _COMPLEXITY(value)


def _to_quality(value: object) -> Quality:
    return _QUALITY(value)


@attrs.frozen
class Request:
    """What an application asks for. Complexity and quality accept plain strings."""

    prompt: str = attrs.field(validator=text)
    complexity: Complexity = attrs.field(default=Complexity.MODERATE, converter=_to_complexity)
    quality: Quality = attrs.field(default=Quality.PRODUCTION, converter=_to_quality)
    budget_usd: float | None = attrs.field(
        default=None, converter=to_float, validator=optional([number, non_negative])
    )
    max_tokens: int = attrs.field(default=500, validator=positive_int)
    temperature: float = attrs.field(
        default=0.7, converter=to_float, validator=[number, between(0.0, 2.0)]
    )
    #: Seconds the whole request may take; None means the runtime's configured deadline.
    deadline_s: float | None = attrs.field(
        default=None, converter=to_float, validator=optional([number, non_negative])
    )
    system: str | None = attrs.field(default=None, validator=optional(string))
    task_id: str | None = attrs.field(default=None, validator=optional(string))
    context: Mapping[str, str] | None = attrs.field(
        default=None, validator=optional(string_mapping)
    )

    def cache_key(self) -> CacheKey:
        """The identity of a request for the last-resort cache: everything that changes the
        answer, so one caller's reply is never served to another.

        The prompt is normalised (case and runs of whitespace do not count); the system prompt
        only for whitespace, since its case can name a tenant or a rule. `context` is the
        application's scope (e.g. a tenant): requests with different contexts never share an
        entry. Budget, deadline and task id change how a request is served, not what it says.
        """
        return CacheKey(
            prompt=" ".join(self.prompt.lower().split()),
            system=None if self.system is None else " ".join(self.system.split()),
            complexity=self.complexity,
            quality=self.quality,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            context=tuple(sorted((str(k), repr(v)) for k, v in (self.context or {}).items())),
        )


@attrs.frozen
class CacheKey:
    """What the last-resort cache files a reply under (see `Request.cache_key`)."""

    prompt: str
    system: str | None
    complexity: Complexity
    quality: Quality
    max_tokens: int
    temperature: float
    context: tuple[tuple[str, str], ...]


@attrs.frozen
class Usage:
    input_tokens: int = 0
    #: Every billed output token, reasoning ("thinking") tokens included.
    output_tokens: int = 0
    #: The part of `output_tokens` the model spent reasoning, where the provider reports it.
    reasoning_tokens: int = 0


@attrs.frozen
class Completion:
    """What an adapter returns for one successful call."""

    text: str
    model: str
    finish_reason: str = "stop"
    usage: Usage = Usage()
    #: Fraction (0..1) of the provider's rate-limit quota left, when its reply said so.
    quota_remaining: float | None = None
    #: The model's refusal, when it refused (OpenAI `message.refusal`, Anthropic's refusal).
    refusal: str | None = None
    #: The provider's own finish reason, before normalising into `finish_reason` (stop, length,
    #: tool_calls, content_filter).
    raw_finish_reason: str | None = None


@attrs.frozen
class TextDelta:
    """One piece of streamed text."""

    text: str


@attrs.frozen
class StreamDone:
    """The end of a stream: the whole completion, with usage."""

    completion: Completion


StreamEvent = TextDelta | StreamDone


@attrs.frozen
class Attempt:
    """One try at one provider, whatever became of it."""

    provider: str
    model: str
    level: str
    #: "ok", or the FailureKind value of what went wrong.
    outcome: str
    latency_ms: float
    detail: str = ""


@attrs.frozen
class Reply:
    """The answer to a request."""

    text: str
    provider: str
    model: str
    level: str
    fallback_used: bool
    attempts: tuple[Attempt, ...]
    latency_ms: float
    cost_usd: float
    usage: Usage = Usage()
    #: stop, length, tool_calls or content_filter.
    finish_reason: str = "stop"
    #: The model's refusal text, when it refused and the level does not fall back on refusals.
    refusal: str | None = None


@attrs.frozen
class BreakerSnapshot:
    state: BreakerState
    #: Failure and slow-call rates over the sliding window (0..1), and the calls they are over.
    failure_rate: float
    slow_call_rate: float
    calls_in_window: int
    consecutive_failures: int
    #: Times tripped since the count last decayed; the open time grows with it.
    trips: int
    #: trio time at which an open breaker turns half-open, when open.
    open_until: float | None
    half_open_probes_left: int


@attrs.frozen
class ProviderSnapshot:
    """A provider actor's state: the heartbeat it publishes, and what status and the REPL show."""

    provider: str
    kind: str
    models: tuple[str, ...]
    at: float
    status: HealthStatus
    breaker: BreakerSnapshot
    #: Exponentially weighted mean, and percentiles over the recent window, of call latency.
    latency_ms: float
    latency_p50_ms: float
    latency_p95_ms: float
    error_rate: float
    #: Fraction of the provider's quota left (1.0 when it never told us otherwise).
    quota_remaining: float
    consecutive_failures: int
    last_check: float | None
    #: Whether the provider can be asked at all (credentials present, actor running, not auth-failed).
    available: bool
    reason: str = ""
    #: trio time before which the provider asked us to stay away (Retry-After), if any.
    retry_after_until: float | None = None
    calls_in_flight: int = 0
    #: Age (seconds) of the oldest call still in flight: a brownout shows here long before the
    #: slow calls finish and reach the latency average.
    oldest_call_s: float = 0.0
    restarts: int = 0
