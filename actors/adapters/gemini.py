"""Google Gemini API (Generative Language, v1beta).

``POST {base_url}/v1beta/models/{model}:generateContent`` with ``x-goog-api-key`` (a header, never
the ``?key=`` query parameter, so the key stays out of URLs and their logs). Streaming is
``:streamGenerateContent?alt=sse``: each SSE ``data`` is a whole GenerateContentResponse holding
the next piece of text; the last carries ``finishReason`` and ``usageMetadata``. There is no end
sentinel, so a stream that closes before any ``finishReason`` was cut short.

The conversation's shape is `gemini_conversation`'s, tools and output options `gemini_options`'.
A function call arrives whole in one part, mostly without an id: one is made (`new_call_id`), and
its thought signature is remembered by that id to go back with it. A reply of function calls
finishes "STOP", which the shared adapter reports as "tool_calls". `read_request` reads a body
back into a `Request` (the fake server's view of a call, and a future gateway's).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import attrs

from actors.adapters.gemini_conversation import (
    from_contents,
    proto_field,
    system_instruction_texts,
    to_contents,
)
from actors.adapters.gemini_options import (
    generation_fields,
    read_generation,
    read_tool_choice,
    read_tools,
    tool_fields,
)
from actors.adapters.http import register_wire
from actors.adapters.parsing import as_dict, loads_event, text_or_empty, token_count
from actors.adapters.sse import SSEDecoder, SSEEvent
from actors.adapters.status import in_band_kind
from actors.adapters.wire import (
    Deltas,
    RequestShape,
    StreamState,
    WireDefaults,
    WireError,
    WireRequest,
    new_call_id,
)
from actors.chat import Message, TextPart, ToolCall
from actors.errors import FailureKind
from actors.messages import Completion, Request, Usage

__all__ = ["GeminiWire", "model_path"]

#: Gemini finish reasons in the runtime's (OpenAI's) vocabulary; others read as "stop".
FINISH_REASONS: Mapping[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "BLOCKLIST": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "MALFORMED_FUNCTION_CALL": "tool_calls",
}


def model_path(model: str, method: str) -> str:
    """``/v1beta/models/{model}:{method}``; accepts ``gemini-x`` and ``models/gemini-x`` alike."""
    name = model.removeprefix("models/")
    return f"/v1beta/models/{quote(name, safe='-._~')}:{method}"


def _usage(data: object) -> Usage:
    """Thinking is billed as output: ``thoughtsTokenCount`` counts in `output_tokens` too; a
    cached prompt prefix (``cachedContentTokenCount``) is a part of ``promptTokenCount``."""
    usage = as_dict(data or {}, "usageMetadata")
    thoughts = token_count(usage.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=token_count(usage.get("promptTokenCount")),
        output_tokens=token_count(usage.get("candidatesTokenCount")) + thoughts,
        reasoning_tokens=thoughts,
        cached_tokens=token_count(usage.get("cachedContentTokenCount")),
    )


@attrs.frozen
class _Candidate:
    """What the first candidate of a reply (or of a stream chunk) says."""

    #: Text and function-call parts in order; thoughts left out.
    parts: tuple[str | ToolCall, ...] = ()
    finish_reason: str | None = None
    #: (call id, thought signature) of the calls that carried one.
    signatures: tuple[tuple[str, str], ...] = ()

    @property
    def text(self) -> str:
        return "".join(part for part in self.parts if isinstance(part, str))

    @property
    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(part for part in self.parts if isinstance(part, ToolCall))


def _part(part: object) -> str | ToolCall | None:
    """A text part's text, a function call (its id kept, or one made), or None (thoughts)."""
    value = as_dict(part, "part")
    call = value.get("functionCall")
    if call is not None:
        call = as_dict(call, "functionCall")
        args = as_dict(call.get("args") or {}, "functionCall.args")
        return ToolCall(str(call.get("id") or new_call_id()), call["name"], args)
    if value.get("thought"):
        return None
    return text_or_empty(value.get("text"))


def _candidate(reply: dict[str, Any]) -> _Candidate:
    """The first candidate (a reply may have none: a blocked prompt, a usage-only chunk)."""
    candidates = reply.get("candidates") or []
    if not isinstance(candidates, list):
        raise TypeError("candidates is not a list")
    if not candidates:
        return _Candidate()
    candidate = as_dict(candidates[0], "candidates[0]")
    content = as_dict(candidate.get("content") or {}, "content")
    parts = content.get("parts") or []
    if not isinstance(parts, list):
        raise TypeError("parts is not a list")
    found, signatures = [], []
    for raw in parts:
        part = _part(raw)
        if part is None:
            continue
        found.append(part)
        if isinstance(part, ToolCall) and raw.get("thoughtSignature"):
            signatures.append((part.id, str(raw["thoughtSignature"])))
    finish_reason = candidate.get("finishReason")
    return _Candidate(
        tuple(found), str(finish_reason) if finish_reason is not None else None, tuple(signatures)
    )


class _Signatures:
    """The thought signatures of recent function calls, by call id, to send back with them
    (Gemini 3 refuses its own calls without): a bounded memory, oldest forgotten first."""

    def __init__(self, limit: int = 4096) -> None:
        self._by_id: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def remember(self, pairs: Iterable[tuple[str, str]]) -> None:
        for call_id, signature in pairs:
            self._by_id[call_id] = signature
            self._by_id.move_to_end(call_id)
        while len(self._by_id) > self._limit:
            self._by_id.popitem(last=False)

    def get(self, call_id: str) -> str | None:
        return self._by_id.get(call_id)


def _raise_if_failed(reply: dict[str, Any]) -> None:
    """An in-band error, or a prompt Gemini refused outright (200, no candidates, a block reason)."""
    if "error" in reply:
        error = reply["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise WireError(in_band_kind(error), f"error mid-stream: {message}")
    feedback = reply.get("promptFeedback")
    if reply.get("candidates") or not isinstance(feedback, dict):
        return
    reason = feedback.get("blockReason")
    if reason:
        raise WireError(FailureKind.CLIENT_ERROR, f"prompt blocked by the provider ({reason})")


def _one_text_turn(messages: list[Message], system: list[str]) -> bool:
    """A conversation the prompt shorthand says: one user text, at most one system text."""
    first = messages[0]
    return (
        len(messages) == 1
        and len(system) <= 1
        and first.role == "user"
        and len(first.content) == 1
        and isinstance(first.content[0], TextPart)
        and bool(first.text.strip())  # the shorthand takes no blank prompt
    )


class GeminiWire(WireDefaults):
    name = "gemini"
    key_header = "x-goog-api-key"
    key_prefix = ""
    reply_name = "a GenerateContentResponse"
    models_path = "/v1beta/models"
    models_params = {"pageSize": "1"}
    end_marker = "a finishReason"
    finish_reasons = FINISH_REASONS

    def __init__(self) -> None:
        self.signatures = _Signatures()

    def build_request(
        self, request: Request, model: str, shape: RequestShape, *, stream: bool
    ) -> WireRequest:
        system, contents = to_contents(
            request.conversation,
            fold_system=shape.system_role == "user",
            signature_of=self.signatures.get,
        )
        generation: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
        if shape.temperature is not None:
            generation["temperature"] = shape.temperature
        generation.update(generation_fields(request))
        body: dict[str, Any] = {"contents": contents, "generationConfig": generation}
        if system:
            body["systemInstruction"] = {"parts": [{"text": text} for text in system]}
        body.update(tool_fields(request))
        if stream:
            return WireRequest(model_path(model, "streamGenerateContent"), body, {"alt": "sse"})
        return WireRequest(model_path(model, "generateContent"), body)

    def read_request(self, body: Mapping[str, Any]) -> Request:
        """A ``generateContent`` body back into a `Request`: the inverse of `build_request` for
        all Gemini expresses (a one-turn text conversation reads as the prompt shorthand).

        Raises `FieldError` naming the body field for what the API would refuse.
        """
        system = system_instruction_texts(proto_field(body, "systemInstruction"))
        messages = from_contents(body.get("contents"))
        options: dict[str, Any] = read_generation(proto_field(body, "generationConfig"))
        tools = read_tools(body.get("tools"))
        choice = read_tool_choice(proto_field(body, "toolConfig"))
        if choice is not None and tools:
            options["tool_choice"] = choice
        if _one_text_turn(messages, system):
            return Request(
                prompt=messages[0].text,
                system=system[0] if system else None,
                tools=tools,
                **options,
            )
        leading = [Message("system", text) for text in system]
        return Request(messages=[*leading, *messages], tools=tools, **options)

    def parse_reply(self, data: Any, model: str) -> Completion:
        reply = as_dict(data, "reply")
        _raise_if_failed(reply)
        if not reply.get("candidates"):
            raise KeyError("candidates")
        candidate = _candidate(reply)
        self.signatures.remember(candidate.signatures)
        return Completion(
            text=candidate.text,
            model=str(reply.get("modelVersion") or model),
            usage=_usage(reply.get("usageMetadata")),
            raw_finish_reason=candidate.finish_reason,
            tool_calls=candidate.calls,
        )

    def stream_decoder(self) -> SSEDecoder:
        return SSEDecoder()

    def parse_event(self, item: SSEEvent, state: StreamState) -> Deltas:
        # No end sentinel (`state.done` stays False): the server closes after the chunk with the
        # finish reason, and a trailing usage-only chunk may still follow, so read until it does.
        # A function call arrives whole, in one part: it is one tool-call delta.
        reply = as_dict(loads_event(item.data), "chunk")
        _raise_if_failed(reply)
        state.reply_model = reply.get("modelVersion") or state.reply_model
        if reply.get("usageMetadata") is not None:
            state.usage = _usage(reply["usageMetadata"])
        candidate = _candidate(reply)
        self.signatures.remember(candidate.signatures)
        state.finish_reason = candidate.finish_reason or state.finish_reason
        state.ended = state.finish_reason is not None
        deltas: Deltas = []
        for part in candidate.parts:
            if isinstance(part, ToolCall):
                deltas += state.add_tool_call(len(state.calls), part.id, part.name, part.arguments)
            else:
                deltas += state.add_text(part)
        return deltas


register_wire(GeminiWire())
