"""The messages and snapshots that cross actor boundaries.

Everything here is a frozen attrs class: a message is a value, never a shared mutable object, so
an actor can hand one to another without either of them having to copy it.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

import attrs
from attrs.validators import optional

from actors.chat import (
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    check_conversation,
    to_messages,
    to_response_format,
    to_tool_choice,
    to_tools,
)
from actors.validation import (
    FieldError,
    between,
    boolean,
    enum_converter,
    integer,
    non_negative,
    number,
    one_of,
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


class CostTier(enum.StrEnum):
    """How cheap a request asks to be served: the rows of the seed's cost matrix, cheapest
    first (`RoutingConfig.cost`)."""

    ULTRA_LOW = "ultra_low"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


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


_COST = enum_converter(CostTier, "cost")


def _to_cost(value: object) -> CostTier | None:
    return None if value is None else _COST(value)


def _to_stop(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise FieldError("stop", f"{value!r} is not a string or a list of non-empty strings")
    if len(value) > MAX_STOP_SEQUENCES:
        raise FieldError("stop", f"at most {MAX_STOP_SEQUENCES} sequences, not {len(value)}")
    return tuple(value)


def _to_models(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise FieldError("models", f"{value!r} is not a list of model names")
    if not all(isinstance(v, str) and v for v in value):
        raise FieldError("models", f"{value!r} must hold non-empty model names")
    return tuple(value)


def _to_levels(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple | frozenset | set):
        raise FieldError("levels", f"{value!r} is not a list of level names")
    if not all(isinstance(v, str) and v for v in value):
        raise FieldError("levels", f"{value!r} must hold non-empty level names")
    return tuple(value)


#: OpenAI's limit; every other provider takes at least as many.
MAX_STOP_SEQUENCES = 4


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


@attrs.frozen
class Request:
    """What an application asks for. Complexity and quality accept plain strings.

    A conversation is `messages` (roles system, developer, user, assistant, tool; see
    `actors.chat`), or the shorthand `prompt` with an optional `system`, which is the one-turn
    conversation ``[system, user]``. `conversation` is always the whole of it, shorthand
    expanded; `prompt` of a `messages` request is None.
    """

    prompt: str | None = attrs.field(default=None, validator=optional(text))
    complexity: Complexity = attrs.field(default=Complexity.MODERATE, converter=_to_complexity)
    quality: Quality = attrs.field(default=Quality.PRODUCTION, converter=_to_quality)
    budget_usd: float | None = attrs.field(
        default=None, converter=to_float, validator=optional([number, non_negative])
    )
    #: How cheap to be (ultra_low, low, medium, high): among the models at or above the
    #: request's complexity and quality, the cheaper tiers are preferred (see `actors.ranking`).
    #: None: no preference, price plays no part in the order.
    cost: CostTier | None = attrs.field(default=None, converter=_to_cost)
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
    #: The application's scope (e.g. a tenant): replies are never shared across contexts.
    context: Mapping[str, str] | None = attrs.field(
        default=None, validator=optional(string_mapping)
    )
    messages: tuple[Message, ...] = attrs.field(default=(), converter=to_messages)
    tools: tuple[Tool, ...] = attrs.field(default=(), converter=to_tools)
    tool_choice: ToolChoice | None = attrs.field(default=None, converter=to_tool_choice)
    #: False asks for at most one tool call per reply; None leaves the provider's default.
    parallel_tool_calls: bool | None = attrs.field(default=None, validator=optional(boolean))
    response_format: ResponseFormat | None = attrs.field(default=None, converter=to_response_format)
    stop: tuple[str, ...] = attrs.field(default=(), converter=_to_stop)
    top_p: float | None = attrs.field(
        default=None, converter=to_float, validator=optional([number, between(0.0, 1.0)])
    )
    seed: int | None = attrs.field(default=None, validator=optional(integer))
    presence_penalty: float | None = attrs.field(
        default=None, converter=to_float, validator=optional([number, between(-2.0, 2.0)])
    )
    frequency_penalty: float | None = attrs.field(
        default=None, converter=to_float, validator=optional([number, between(-2.0, 2.0)])
    )
    #: The end user, for the provider's abuse monitoring (sent where a provider takes it).
    user: str | None = attrs.field(default=None, validator=optional(string))
    metadata: Mapping[str, str] | None = attrs.field(
        default=None, validator=optional(string_mapping)
    )
    #: Pin one model: only providers offering it are asked, level by level.
    model: str | None = attrs.field(default=None, validator=optional(text))
    #: Models in order of preference (OpenRouter's `models`): only providers offering one of
    #: them are asked, each with the first of them it offers.
    models: tuple[str, ...] = attrs.field(default=(), converter=_to_models)
    #: The levels this request may use, by name (a tenant's policy); empty: every level. The
    #: others are skipped, the last resort's included, and keep no time back for themselves.
    levels: tuple[str, ...] = attrs.field(default=(), converter=_to_levels)
    #: How each level tries its candidates for this request (sequential, race or hedge: a
    #: tenant's policy), instead of the level's configured strategy; None keeps the level's.
    #: Streams always try one candidate after another.
    strategy: str | None = attrs.field(
        default=None, validator=optional(one_of(("sequential", "race", "hedge")))
    )
    #: The whole conversation, shorthand expanded (derived; not an argument).
    conversation: tuple[Message, ...] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.messages:
            if self.prompt is not None:
                raise FieldError("prompt", "give either prompt= or messages=, not both")
            conversation = self.messages
            if self.system:
                conversation = (Message("system", self.system), *conversation)
            check_conversation(conversation)
        elif self.prompt is None:
            raise FieldError("prompt", "a request needs prompt= or messages=")
        elif self.system:
            conversation = (Message("system", self.system), Message("user", self.prompt))
        else:
            conversation = (Message("user", self.prompt),)
        if self.model is not None and self.models:
            raise FieldError("models", "give either model= or models=, not both")
        if self.tool_choice is not None and self.tool_choice.mode == "function":
            if self.tool_choice.name not in {tool.name for tool in self.tools}:
                raise FieldError(
                    "tool_choice", f"{self.tool_choice.name!r} is not one of the request's tools"
                )
        elif (
            self.tool_choice is not None and self.tool_choice.mode == "required" and not self.tools
        ):
            raise FieldError("tool_choice", "'required' needs at least one tool")
        object.__setattr__(self, "conversation", conversation)

    @property
    def last_user_text(self) -> str:
        """The text of the last user message: what templates match and the simulator echoes."""
        for message in reversed(self.conversation):
            if message.role == "user":
                return message.text
        return ""

    @property
    def instructions(self) -> str | None:
        """The system and developer messages' text, joined, or None when there are none."""
        texts = [m.text for m in self.conversation if m.role in ("system", "developer")]
        return "\n\n".join(texts) if texts else None

    @property
    def wants_tool_calls(self) -> bool:
        """Tools are offered and may be called."""
        return bool(self.tools) and (self.tool_choice is None or self.tool_choice.mode != "none")

    def cache_key(self) -> CacheKey:
        """The identity of a request for the last-resort cache: everything that changes the
        answer, so one caller's reply is never served to another.

        The last user message is normalised (case and runs of whitespace do not count); the
        system prompt only for whitespace, since its case can name a tenant or a rule; the
        earlier turns, tools and output format count exactly. `context` is the application's
        scope (e.g. a tenant): requests with different contexts never share an entry. Budget,
        deadline and task id change how a request is served, not what it says.
        """
        if self.prompt is not None:  # the shorthand: no need to walk the conversation
            last, instructions = self.prompt, self.system or None
        else:
            last, instructions = self.last_user_text, self.instructions
        context = self.context
        return CacheKey(
            " ".join(last.lower().split()),
            None if instructions is None else " ".join(instructions.split()),
            self.complexity,
            self.quality,
            self.max_tokens,
            self.temperature,
            tuple(sorted((str(k), repr(v)) for k, v in context.items())) if context else (),
            self._shape_key(),
        )

    def _shape_key(self) -> str:
        """Everything else that changes the answer, as canonical JSON ("" for a plain prompt)."""
        if (
            self.prompt is not None
            and not self.tools
            and self.tool_choice is None
            and self.response_format is None
            and not self.stop
            and self.top_p is None
            and self.seed is None
            and self.presence_penalty is None
            and self.frequency_penalty is None
            and self.model is None
            and not self.models
        ):
            return ""
        history = [
            m.to_openai() for m in self.conversation if m.role not in ("system", "developer")
        ]
        last_user = max(
            (i for i, m in enumerate(history) if m["role"] == "user"), default=len(history)
        )
        rest: dict[str, Any] = {
            "history": history[:last_user] + history[last_user + 1 :],
            "images": [p.data_url for p in self.conversation[-1].images]
            if self.conversation[-1].role == "user"
            else [],
            "tools": [attrs.asdict(t) for t in self.tools],
            "tool_choice": None if self.tool_choice is None else self.tool_choice.to_openai(),
            "response_format": None
            if self.response_format is None
            else self.response_format.to_openai(),
        }
        sampling = [
            self.stop,
            self.top_p,
            self.seed,
            self.presence_penalty,
            self.frequency_penalty,
            self.model,
            self.models,
        ]
        if not any(rest.values()) and all(v is None or v == () for v in sampling):
            return ""
        return _json({**rest, "sampling": sampling})


class CacheKey(NamedTuple):
    """What the last-resort cache files a reply under (see `Request.cache_key`). A tuple, not
    an attrs class: the cache hashes and compares keys in C, and builds one per reply. Its
    repr (what a fleet's shared key is a digest of) reads as an attrs class's would."""

    prompt: str
    system: str | None
    complexity: Complexity
    quality: Quality
    max_tokens: int
    temperature: float
    context: tuple[tuple[str, str], ...]
    #: The conversation before the last user turn, tools, output format and sampling, as
    #: canonical JSON; "" for a plain prompt.
    shape: str = ""


@attrs.frozen
class Usage:
    input_tokens: int = 0
    #: Every billed output token, reasoning ("thinking") tokens included.
    output_tokens: int = 0
    #: The part of `output_tokens` the model spent reasoning, where the provider reports it.
    reasoning_tokens: int = 0
    #: The part of `input_tokens` read from the provider's prompt cache (billed less).
    cached_tokens: int = 0


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
    #: The tools the model asked to call, ids kept (or made, for a provider that has none).
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def message(self) -> Message:
        """The assistant message: the text (if any) and the tool calls."""
        return assistant_message(self.text, self.tool_calls)


def assistant_message(text: str, tool_calls: tuple[ToolCall, ...] = ()) -> Message:
    return Message("assistant", (TextPart(text),) if text else (), tool_calls)


@attrs.frozen
class TextDelta:
    """One piece of streamed text."""

    text: str


@attrs.frozen
class ToolCallDelta:
    """A piece of a streamed tool call: the first for a call carries its `id` and `name`, and
    every one a fragment of its JSON `arguments` (concatenated in order, they are the whole)."""

    #: Which call of the reply this belongs to (0, 1, ... in the order they began).
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@attrs.frozen
class StreamDone:
    """The end of a stream: the whole completion, with usage."""

    completion: Completion


StreamEvent = TextDelta | ToolCallDelta | StreamDone


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
    #: The tools the model asked to call (see `message`).
    tool_calls: tuple[ToolCall, ...] = ()
    #: The provider's own finish reason ("end_turn", "MAX_TOKENS"...), when it gave one.
    raw_finish_reason: str | None = None

    @property
    def message(self) -> Message:
        """The assistant message, in the one shape every provider's answer is turned into: its
        text and its tool calls (ids, names, JSON arguments). Append it to the conversation to
        go on, on whichever provider answers next."""
        return assistant_message(self.text, self.tool_calls)


@attrs.frozen
class ReplyDone:
    """The last event of `stream.events()`: the whole reply (message, usage, cost)."""

    reply: Reply

    @property
    def message(self) -> Message:
        return self.reply.message

    @property
    def usage(self) -> Usage:
        return self.reply.usage


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
    #: Recovery probes sent while its breaker was open (`actors.recovery`), and what the
    #: completion probes among them cost.
    recovery_probes: int = 0
    probe_cost_usd: float = 0.0
    #: The limit on calls in flight now (`max_in_flight`, or its learned value), and the floor
    #: and ceiling it is learned between when `max_in_flight = "auto"` (else None).
    concurrency_limit: int = 0
    concurrency_bounds: tuple[int, int] | None = None
