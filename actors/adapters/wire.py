"""The shape every HTTP wire format has: build a request, parse a reply, a stream item, an error.

A `WireFormat` knows one provider API's bytes and nothing of transport: the shared `HTTPAdapter`
sends what `build_request` describes, hands the decoded reply to `parse_reply` (or each decoded
stream item to `parse_event`, which records what it saw in a `StreamState`), and classifies,
redacts and names the provider once for every format.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from actors.chat import ToolCall
from actors.errors import FailureKind, ProviderError
from actors.messages import Completion, Request, TextDelta, ToolCallDelta, Usage

if TYPE_CHECKING:
    from actors.config import ProviderConfig

__all__ = [
    "FINISH_REASONS",
    "Deltas",
    "RequestShape",
    "StreamDecoder",
    "StreamState",
    "WireDefaults",
    "WireError",
    "WireFormat",
    "WireRequest",
    "new_call_id",
    "normalise_finish_reason",
]

#: What `parse_event` returns: the deltas one stream item carried.
Deltas = list[TextDelta | ToolCallDelta]


def new_call_id() -> str:
    """A tool-call id for a provider that gives none (Gemini, Ollama): unique, OpenAI-shaped."""
    return f"call_{uuid.uuid4().hex[:24]}"


@attrs.define
class _PartialCall:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = attrs.field(factory=list)

#: The finish reasons a `Completion` reports; each wire format maps its own onto these.
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})


def normalise_finish_reason(raw: str | None, table: Mapping[str, str]) -> str:
    """`raw` in the runtime's vocabulary: the wire's `table`, else itself if already normal,
    else "stop" (a reason we do not know, such as Ollama's "unload", ended the reply normally)."""
    if raw is None:
        return "stop"
    normal = table.get(raw, raw)
    return normal if normal in FINISH_REASONS else "stop"


@attrs.frozen
class RequestShape:
    """How this model takes a request (see `actors.adapters.shaping`)."""

    #: The body field for the output limit (OpenAI reasoning models: "max_completion_tokens").
    token_field: str = "max_tokens"
    #: The role for the system prompt: "system", "developer", or "user" (folded into the prompt).
    system_role: str = "system"
    #: The temperature to send, already in the provider's range; None to leave it out.
    temperature: float | None = None


@attrs.frozen
class WireRequest:
    """One call as the provider wants it: where to POST, what, and with which query parameters."""

    path: str
    body: Mapping[str, Any]
    params: Mapping[str, str] | None = None


class WireError(Exception):
    """A well-formed reply that says the call failed (an in-band error, a blocked prompt).

    The shared adapter turns it into a `ProviderError` naming the provider, the text redacted.
    """

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@attrs.define
class StreamState:
    """What a stream has said so far; a wire format's `parse_event` fills it in."""

    model: str
    text: list[str] = attrs.field(factory=list)
    reply_model: str | None = None
    #: The provider's own finish reason.
    finish_reason: str | None = None
    usage: Usage = attrs.field(factory=Usage)
    #: The model's refusal, when it refused.
    refusal: str | None = None
    #: The end marker arrived: stop reading.
    done: bool = False
    #: The reply is whole (an end marker or a final finish reason arrived).
    ended: bool = False
    #: Tool calls so far, by the provider's index for them.
    calls: dict[int, _PartialCall] = attrs.field(factory=dict)

    def add_text(self, text: str) -> Deltas:
        """Record a piece of text; the deltas to deliver (none for an empty piece)."""
        if not text:
            return []
        self.text.append(text)
        return [TextDelta(text)]

    def add_tool_call(
        self, index: int, id: str | None = None, name: str | None = None, arguments: str = ""
    ) -> Deltas:
        """Record a piece of tool call `index` (the first piece names it); the delta to deliver.

        Indexes are the provider's; the delta's index counts calls in the order they began.
        A call's first piece without an id gets one made (`new_call_id`).
        """
        call = self.calls.get(index)
        if call is None:
            call = self.calls[index] = _PartialCall(id or new_call_id(), name)
            id = call.id
        elif name and not call.name:
            call.name = name
        if arguments:
            call.arguments.append(arguments)
        position = list(self.calls).index(index)
        return [ToolCallDelta(position, id, name, arguments)]

    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The whole calls; a call without a name is MALFORMED (a `ValueError`)."""
        calls = []
        for call in self.calls.values():
            if not call.name or call.id is None:
                raise ValueError("a streamed tool call has no name")
            calls.append(ToolCall(call.id, call.name, "".join(call.arguments) or "{}"))
        return tuple(calls)

    def completion(self, provider: str, end_marker: str) -> Completion:
        """The whole completion, or CONNECTION when the stream ended before `end_marker`."""
        if not self.ended:
            raise ProviderError(
                FailureKind.CONNECTION, f"{provider}: stream ended before {end_marker}"
            )
        return Completion(
            text="".join(self.text),
            model=self.reply_model or self.model,
            usage=self.usage,
            refusal=self.refusal,
            raw_finish_reason=self.finish_reason,
            tool_calls=self.tool_calls(),
        )


class StreamDecoder(Protocol):
    """Turns body chunks, split anywhere, into items (SSE events, NDJSON values)."""

    def feed(self, chunk: bytes) -> list[Any]: ...

    def close(self) -> list[Any]: ...


class WireDefaults:
    """What most wire formats share; a format subclasses this and overrides what differs."""

    key_header = "authorization"
    key_prefix = "Bearer "
    models_path: str | None = None
    models_params: Mapping[str, str] | None = None
    finish_reasons: Mapping[str, str] = {}
    temperature_range = (0.0, 2.0)

    def headers(self, config: ProviderConfig) -> dict[str, str]:
        return {}


class WireFormat(Protocol):
    """One provider API's request and reply shapes. Parse methods raise `WireError` for a reply
    that reports a failure and a shape error (KeyError, TypeError...) for one of the wrong shape."""

    #: The name the kinds table uses for this format.
    name: str
    #: Header carrying the key, and the prefix before it ("Bearer ").
    key_header: str
    key_prefix: str
    #: What a whole reply is called, for MALFORMED messages ("a chat.completion").
    reply_name: str
    #: What ends a stream, for the CONNECTION message when it is missing ("[DONE]").
    end_marker: str

    @property
    def models_path(self) -> str | None:
        """The models listing a recovery probe GETs (relative to the base URL); None: the API
        has none."""
        ...

    @property
    def models_params(self) -> Mapping[str, str] | None:
        """The listing's query parameters (the smallest page, where the API takes one)."""
        ...
    #: The provider's finish reasons in the runtime's vocabulary (see `normalise_finish_reason`).
    finish_reasons: Mapping[str, str]
    #: The temperatures the provider takes; the request's is clamped into it.
    temperature_range: tuple[float, float]

    def headers(self, config: ProviderConfig) -> dict[str, str]:
        """Headers besides content type and key (an API version)."""
        ...

    def build_request(
        self, request: Request, model: str, shape: RequestShape, *, stream: bool
    ) -> WireRequest: ...

    def parse_reply(self, data: Any, model: str) -> Completion:
        """A whole decoded reply, its finish reason in `raw_finish_reason`; the shared adapter
        normalises it and adds what the headers say (quota)."""
        ...

    def stream_decoder(self) -> StreamDecoder: ...

    def parse_event(self, item: Any, state: StreamState) -> Deltas:
        """One decoded stream item into `state`; the text and tool-call deltas it carried."""
        ...
