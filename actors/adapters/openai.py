"""OpenAI Chat Completions, and everything that speaks it (Mistral, Hugging Face, Groq, vLLM...).

``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>``. Streaming is SSE: one
``data: {chat.completion.chunk}`` per delta, a usage-only chunk when ``stream_options.include_usage``
is set, then ``data: [DONE]``; a compatible server reports a failure mid-stream as
``data: {"error": ...}``. Kinds ``mistral`` and ``huggingface`` speak this format with their
service's default base URL and key variable (see `actors.kinds`); any other compatible endpoint is
``openai`` plus ``base_url``. Reasoning models take ``max_completion_tokens`` and the
``developer`` role (see `actors.adapters.shaping`).

This format expresses everything a `Request` holds but `metadata` (OpenAI keeps metadata only
for stored completions, which we never ask for). Tool calls come back with their ids; streamed,
each arrives as ``delta.tool_calls[{index, id, type, function: {name, arguments}}]``, its first
piece naming it and the arguments split over the pieces that follow. `read_request` reads a
body back into a `Request` (the fake server and a gateway take requests with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.adapters.http import register_wire
from actors.adapters.openai_conversation import (
    wire_messages,
    wire_tools,
)
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
)
from actors.chat import ToolCall, to_messages, to_response_format, to_tool_choice, to_tools
from actors.messages import Completion, Request, Usage

__all__ = ["OpenAIWire"]

PATH = "/chat/completions"


def _usage(data: object) -> Usage:
    if data is None:
        return Usage()
    usage = as_dict(data, "usage")
    details = as_dict(usage.get("completion_tokens_details") or {}, "completion_tokens_details")
    prompt = as_dict(usage.get("prompt_tokens_details") or {}, "prompt_tokens_details")
    return Usage(
        # prompt_tokens already counts the cached tokens, completion_tokens the reasoning ones.
        input_tokens=token_count(usage.get("prompt_tokens")),
        output_tokens=token_count(usage.get("completion_tokens")),
        reasoning_tokens=token_count(details.get("reasoning_tokens")),
        cached_tokens=token_count(prompt.get("cached_tokens")),
    )


def _stream_error(error: object) -> WireError:
    """Compatible servers (vLLM, the HF router) report a failure mid-stream as ``{"error": ...}``."""
    message = error.get("message") if isinstance(error, dict) else error
    return WireError(in_band_kind(error), f"error mid-stream: {message}")


def _sampling(request: Request) -> dict[str, Any]:
    """The optional sampling and output fields, each only when the request sets it."""
    body: dict[str, Any] = {}
    if request.stop:
        body["stop"] = list(request.stop)
    for field in ("top_p", "seed", "presence_penalty", "frequency_penalty", "user"):
        value = getattr(request, field)
        if value is not None:
            body[field] = value
    if request.response_format is not None:
        body["response_format"] = request.response_format.to_openai()
    return body


def _tooling(request: Request) -> dict[str, Any]:
    """Tools and how to use them; tool_choice and parallel_tool_calls only with tools, since the
    API refuses them without."""
    if not request.tools:
        return {}
    body: dict[str, Any] = {"tools": wire_tools(request.tools)}
    if request.tool_choice is not None:
        body["tool_choice"] = request.tool_choice.to_openai()
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls
    return body


def _tool_calls(message: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TypeError("message.tool_calls is not a list")
    return tuple(
        ToolCall(
            str(as_dict(call, "tool_call")["id"]),
            str(as_dict(call["function"], "tool_call.function")["name"]),
            call["function"].get("arguments") or "{}",
        )
        for call in calls
    )


def _finish_reason(raw: object, has_calls: bool) -> str | None:
    """The raw reason; "tool_calls" for a reply that made calls but says "stop" (some compatible
    servers do), so the runtime's reason says what the reply holds."""
    reason = str(raw) if raw else None
    if has_calls and reason in (None, "stop"):
        return "tool_calls"
    return reason


def _refusal(value: object) -> str | None:
    return text_or_empty(value) if value is not None else None


class OpenAIWire(WireDefaults):
    name = "openai"
    reply_name = "a chat.completion"
    models_path = "/models"
    end_marker = "[DONE]"
    #: Already the runtime's vocabulary, but for the legacy "function_call".
    finish_reasons: Mapping[str, str] = {"function_call": "tool_calls"}

    def build_request(
        self, request: Request, model: str, shape: RequestShape, *, stream: bool
    ) -> WireRequest:
        body: dict[str, Any] = {
            "model": model,
            "messages": wire_messages(request.conversation, shape.system_role),
            shape.token_field: request.max_tokens,
        }
        if shape.temperature is not None:
            body["temperature"] = shape.temperature
        body |= _sampling(request) | _tooling(request)
        body["stream"] = stream
        if stream:
            body["stream_options"] = {"include_usage": True}
        return WireRequest(PATH, body)

    def parse_reply(self, data: Any, model: str) -> Completion:
        reply = as_dict(data, "reply")
        if "error" in reply:
            raise _stream_error(reply["error"])
        choice = as_dict(reply["choices"][0], "choices[0]")
        message = as_dict(choice["message"], "choices[0].message")
        calls = _tool_calls(message)
        return Completion(
            text=text_or_empty(message.get("content")),
            model=str(reply.get("model") or model),
            usage=_usage(reply.get("usage")),
            refusal=_refusal(message.get("refusal")),
            raw_finish_reason=_finish_reason(choice.get("finish_reason"), bool(calls)),
            tool_calls=calls,
        )

    def stream_decoder(self) -> SSEDecoder:
        return SSEDecoder()

    def parse_event(self, item: SSEEvent, state: StreamState) -> Deltas:
        if item.data.strip() == "[DONE]":
            state.done = state.ended = True
            return []
        chunk = as_dict(loads_event(item.data), "chunk")
        if "error" in chunk:
            raise _stream_error(chunk["error"])
        state.reply_model = chunk.get("model") or state.reply_model
        if chunk.get("usage") is not None:
            state.usage = _usage(chunk["usage"])
        deltas: Deltas = []
        for choice in chunk.get("choices") or ():
            choice = as_dict(choice, "choice")
            if choice.get("index", 0) != 0:
                continue
            delta = as_dict(choice.get("delta") or {}, "delta")
            deltas += state.add_text(text_or_empty(delta.get("content")))
            deltas += _call_deltas(delta.get("tool_calls"), state)
            refusal = _refusal(delta.get("refusal"))
            if refusal is not None:
                state.refusal = (state.refusal or "") + refusal
            if choice.get("finish_reason"):
                # A server that closes cleanly after the finish reason but before [DONE] still
                # gave us the whole text.
                state.finish_reason = _finish_reason(choice["finish_reason"], bool(state.calls))
                state.ended = True
        return deltas

    def read_request(self, body: Mapping[str, Any]) -> Request:
        """A Chat Completions body back into a `Request` (a `FieldError` naming the field when
        it is not one): the inverse of `build_request` for everything this format expresses.

        The body's `model` comes back as the request's pinned `model`, a system prompt as the
        conversation's first message (the `system=` shorthand is not told apart), and what the
        wire does not carry (complexity, budget, metadata...) as the defaults.
        """
        optional = {
            field: body[field]
            for field in (
                "temperature",
                "top_p",
                "seed",
                "presence_penalty",
                "frequency_penalty",
                "user",
                "parallel_tool_calls",
                "stop",
                "model",
            )
            if body.get(field) is not None
        }
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is not None:
            optional["max_tokens"] = limit
        return Request(
            messages=to_messages(body.get("messages")),
            tools=to_tools(body.get("tools")),
            tool_choice=to_tool_choice(body.get("tool_choice")),
            response_format=to_response_format(body.get("response_format")),
            **optional,
        )


def _call_deltas(calls: object, state: StreamState) -> Deltas:
    """Streamed tool-call pieces: the first of a call carries its id and name, every one a
    fragment of its arguments."""
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise TypeError("delta.tool_calls is not a list")
    deltas: Deltas = []
    for call in calls:
        call = as_dict(call, "delta.tool_calls[]")
        function = as_dict(call.get("function") or {}, "delta.tool_calls[].function")
        deltas += state.add_tool_call(
            _call_index(call, state),
            call.get("id") or None,
            function.get("name") or None,
            text_or_empty(function.get("arguments")),
        )
    return deltas


def _call_index(call: Mapping[str, Any], state: StreamState) -> int:
    """The call's index; for a compatible server that sends none (whole calls, one per chunk),
    the call with this id, or the next one for a new id."""
    if call.get("index") is not None:
        return token_count(call["index"])
    known = [index for index, seen in state.calls.items() if seen.id == call.get("id")]
    if known:
        return known[0]
    if call.get("id") or not state.calls:
        return max(state.calls, default=-1) + 1
    return max(state.calls)


register_wire(OpenAIWire())
