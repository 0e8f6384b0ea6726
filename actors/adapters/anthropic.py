"""Anthropic Messages API.

``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``. Streaming is SSE with
named events: ``message_start`` (input usage), ``content_block_delta`` (``text_delta`` pieces),
``message_delta`` (stop reason, cumulative output usage), ``message_stop``; ``ping`` keeps the
connection alive and ``error`` reports a failure after the stream began (``overloaded_error`` is
the mid-stream form of HTTP 529). A tool call streams as ``content_block_start`` (a ``tool_use``
block: id and name) and ``content_block_delta`` events of type ``input_json_delta`` (pieces of
its JSON input). Unknown event types are ignored, as Anthropic's versioning policy asks.

The conversation's translation is `anthropic_conversation`; tools, tool choice and JSON output
(a forced tool) are `anthropic_tools`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from actors.adapters.anthropic_conversation import read_conversation, write_conversation
from actors.adapters.anthropic_tools import is_json_tool, read_tools, write_tools
from actors.adapters.http import register_wire
from actors.adapters.parsing import as_dict, loads_event, text_or_empty, token_count
from actors.adapters.sse import SSEDecoder, SSEEvent
from actors.adapters.wire import (
    Deltas,
    RequestShape,
    StreamState,
    WireDefaults,
    WireError,
    WireRequest,
)
from actors.chat import ToolCall
from actors.errors import FailureKind
from actors.messages import Completion, Request, Usage

if TYPE_CHECKING:
    from actors.config import ProviderConfig

__all__ = ["ERROR_TYPES", "AnthropicWire"]

PATH = "/v1/messages"

#: Anthropic stop reasons in the runtime's (OpenAI's) vocabulary.
STOP_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}

#: What a refusal carries when the model said nothing before refusing.
SILENT_REFUSAL = "the model declined to answer (stop_reason: refusal)"

#: The ``error.type`` of an error event, as a failure kind.
ERROR_TYPES: Mapping[str, FailureKind] = {
    "overloaded_error": FailureKind.SERVER_ERROR,
    "api_error": FailureKind.SERVER_ERROR,
    "timeout_error": FailureKind.TIMEOUT,
    "rate_limit_error": FailureKind.RATE_LIMITED,
    "authentication_error": FailureKind.AUTH,
    "billing_error": FailureKind.BILLING,
    "permission_error": FailureKind.AUTH,
    "invalid_request_error": FailureKind.CLIENT_ERROR,
    "not_found_error": FailureKind.CLIENT_ERROR,
    "request_too_large": FailureKind.CLIENT_ERROR,
}


def _refusal(stop_reason: str | None, text: str) -> str | None:
    """A refusal (``stop_reason: "refusal"``) keeps what the model said as its refusal."""
    return (text or SILENT_REFUSAL) if stop_reason == "refusal" else None


def _stream_error(error: object) -> WireError:
    error = error if isinstance(error, dict) else {}
    error_type = str(error.get("type") or "api_error")
    kind = ERROR_TYPES.get(error_type, FailureKind.SERVER_ERROR)
    return WireError(kind, f"{error_type} mid-stream: {error.get('message') or error_type}")


class AnthropicWire(WireDefaults):
    name = "anthropic"
    key_header = "x-api-key"
    key_prefix = ""
    reply_name = "a message"
    models_path = "/v1/models"
    models_params = {"limit": "1"}
    end_marker = "message_stop"
    finish_reasons = STOP_REASONS
    #: Anthropic takes temperature 0-1 (the request allows 0-2): clamped, see `shaping`.
    temperature_range = (0.0, 1.0)

    def headers(self, config: ProviderConfig) -> dict[str, str]:
        return {"anthropic-version": config.anthropic_version}

    def build_request(
        self, request: Request, model: str, shape: RequestShape, *, stream: bool
    ) -> WireRequest:
        system, messages = write_conversation(request.conversation)
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens,
            "messages": messages,
        }
        # Claude models since 4.5 refuse temperature and top_p together: an explicit top_p
        # wins over the temperature every request has (0.7 unless set).
        if shape.temperature is not None and request.top_p is None:
            body["temperature"] = shape.temperature
        body["stream"] = stream
        if system:
            body["system"] = system
        body.update(_sampling(request))
        body.update(write_tools(request))
        return WireRequest(PATH, body)

    def read_request(self, body: Mapping[str, Any]) -> Request:
        """The `Request` an Anthropic body says (the inverse of `build_request`): the body's
        model becomes `Request.model`; hints Anthropic has no field for (seed, penalties,
        metadata other than the user) are not there to read. Shape errors raise KeyError,
        TypeError or ValueError (a `FieldError` names the field)."""
        metadata = body.get("metadata") or {}
        optional = {
            "temperature": body.get("temperature"),
            "top_p": body.get("top_p"),
            "user": metadata.get("user_id"),
        }
        return Request(
            messages=read_conversation(body.get("system"), body["messages"]),
            max_tokens=body["max_tokens"],
            stop=body.get("stop_sequences"),
            model=body.get("model"),
            **{key: value for key, value in optional.items() if value is not None},
            **read_tools(body),
        )

    def parse_reply(self, data: Any, model: str) -> Completion:
        reply = as_dict(data, "reply")
        blocks = reply["content"]
        if not isinstance(blocks, list):
            raise TypeError("content is not a list")
        texts: list[str] = []
        calls: list[ToolCall] = []
        answered_in_json = False
        for block in (as_dict(b, "content block") for b in blocks):
            if block.get("type") == "text":
                texts.append(text_or_empty(block.get("text")))
            elif block.get("type") == "tool_use" and is_json_tool(block.get("name")):
                texts.append(json.dumps(block["input"], ensure_ascii=False))
                answered_in_json = True
            elif block.get("type") == "tool_use":
                calls.append(ToolCall(block["id"], block["name"], block["input"]))
        text = "".join(texts)
        stop_reason = _stop_reason(reply.get("stop_reason"), answered_in_json and not calls)
        return Completion(
            text=text,
            model=str(reply.get("model") or model),
            usage=_usage_update(Usage(), reply.get("usage")),
            refusal=_refusal(stop_reason, text),
            raw_finish_reason=stop_reason,
            tool_calls=tuple(calls),
        )

    def stream_decoder(self) -> SSEDecoder:
        return SSEDecoder()

    def parse_event(self, item: SSEEvent, state: StreamState) -> Deltas:
        name = item.event
        if name == "ping":
            return []
        data = as_dict(loads_event(item.data), "event data")
        name = str(data.get("type") or name) if name == "message" else name
        if name == "error":
            raise _stream_error(data.get("error"))
        if name == "message_start":
            message = as_dict(data["message"], "message")
            state.reply_model = message.get("model") or state.reply_model
            state.usage = _usage_update(Usage(), message.get("usage"))
        elif name == "content_block_start":
            return _block_start(data, state)
        elif name == "content_block_delta":
            return _block_delta(data, state)
        elif name == "message_delta":
            delta = as_dict(data.get("delta") or {}, "delta")
            if delta.get("stop_reason") is not None:
                # A stream stops for "tool_use" with no call recorded only after the JSON tool's.
                answered_in_json = not state.calls
                state.finish_reason = _stop_reason(delta["stop_reason"], answered_in_json)
                state.refusal = _refusal(state.finish_reason, "".join(state.text))
            state.usage = _usage_update(state.usage, data.get("usage"))
        elif name == "message_stop":
            state.done = state.ended = True
        return []


def _block_start(data: dict[str, Any], state: StreamState) -> Deltas:
    """A ``tool_use`` block begins a tool call (its id and name); the JSON tool's begins the
    text, so it is not recorded as a call (its deltas then find no call at their index)."""
    block = as_dict(data["content_block"], "content block")
    if block.get("type") != "tool_use" or is_json_tool(block.get("name")):
        return []
    return state.add_tool_call(int(data["index"]), str(block["id"]), str(block["name"]))


def _block_delta(data: dict[str, Any], state: StreamState) -> Deltas:
    delta = as_dict(data["delta"], "delta")
    if delta.get("type") == "text_delta":
        return state.add_text(text_or_empty(delta.get("text")))
    if delta.get("type") == "input_json_delta":
        fragment = text_or_empty(delta.get("partial_json"))
        index = int(data["index"])
        if index not in state.calls:  # the JSON tool's input: the answer's text
            return state.add_text(fragment)
        return state.add_tool_call(index, arguments=fragment) if fragment else []
    return []


def _stop_reason(value: object, answered_in_json: bool) -> str | None:
    """The stop reason, except that "tool_use" after the JSON tool's call alone (no tool call
    of the request's own) ended a whole answer: "end_turn"."""
    if value is None:
        return None
    return "end_turn" if value == "tool_use" and answered_in_json else str(value)


def _sampling(request: Request) -> dict[str, Any]:
    """stop, top_p and user in Anthropic's fields (seed, penalties and metadata: no field)."""
    out: dict[str, Any] = {}
    if request.stop:
        out["stop_sequences"] = list(request.stop)
    if request.top_p is not None:
        out["top_p"] = request.top_p
    if request.user is not None:
        out["metadata"] = {"user_id": request.user}
    return out


def _usage_update(usage: Usage, data: object) -> Usage:
    """`usage` with the token counts `data` carries (message_delta's are cumulative).

    Anthropic's ``input_tokens`` leaves out the cached tokens: ours is all of them, the tokens
    read from the cache (`cached_tokens`) and written to it included. Thinking tokens are
    ``output_tokens_details.thinking_tokens`` (a part of ``output_tokens``)."""
    counts = as_dict(data or {}, "usage")
    changes: dict[str, int] = {}
    if counts.get("output_tokens") is not None:
        changes["output_tokens"] = token_count(counts["output_tokens"])
    inputs = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    if counts.get("input_tokens") is not None:
        changes["input_tokens"] = sum(token_count(counts.get(key)) for key in inputs)
        changes["cached_tokens"] = token_count(counts.get("cache_read_input_tokens"))
    details = counts.get("output_tokens_details")
    if details is not None:
        thinking = as_dict(details, "output_tokens_details").get("thinking_tokens")
        changes["reasoning_tokens"] = token_count(thinking)
    return attrs.evolve(usage, **changes)


register_wire(AnthropicWire())
