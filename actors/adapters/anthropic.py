"""Anthropic Messages API.

``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``. Streaming is SSE with
named events: ``message_start`` (input usage), ``content_block_delta`` (``text_delta`` pieces),
``message_delta`` (stop reason, cumulative output usage), ``message_stop``; ``ping`` keeps the
connection alive and ``error`` reports a failure after the stream began (``overloaded_error`` is
the mid-stream form of HTTP 529). Unknown event types are ignored, as Anthropic's versioning
policy asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

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
    end_marker = "message_stop"
    finish_reasons = STOP_REASONS
    #: Anthropic takes temperature 0-1 (the request allows 0-2): clamped, see `shaping`.
    temperature_range = (0.0, 1.0)

    def headers(self, config: ProviderConfig) -> dict[str, str]:
        return {"anthropic-version": config.anthropic_version}

    def build_request(
        self, request: Request, model: str, shape: RequestShape, *, stream: bool
    ) -> WireRequest:
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": "user", "content": request.prompt}],
        }
        if shape.temperature is not None:
            body["temperature"] = shape.temperature
        body["stream"] = stream
        if request.system:
            body["system"] = request.system
        return WireRequest(PATH, body)

    def parse_reply(self, data: Any, model: str) -> Completion:
        reply = as_dict(data, "reply")
        blocks = reply["content"]
        if not isinstance(blocks, list):
            raise TypeError("content is not a list")
        text = "".join(
            text_or_empty(as_dict(block, "content block").get("text"))
            for block in blocks
            if as_dict(block, "content block").get("type") == "text"
        )
        stop_reason = reply.get("stop_reason")
        stop_reason = str(stop_reason) if stop_reason is not None else None
        return Completion(
            text=text,
            model=str(reply.get("model") or model),
            usage=_usage_update(Usage(), reply.get("usage")),
            refusal=_refusal(stop_reason, text),
            raw_finish_reason=stop_reason,
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
        elif name == "content_block_delta":
            delta = as_dict(data["delta"], "delta")
            if delta.get("type") == "text_delta":
                return state.add_text(text_or_empty(delta.get("text")))
        elif name == "message_delta":
            delta = as_dict(data.get("delta") or {}, "delta")
            if delta.get("stop_reason") is not None:
                state.finish_reason = str(delta["stop_reason"])
                state.refusal = _refusal(state.finish_reason, "".join(state.text))
            state.usage = _usage_update(state.usage, data.get("usage"))
        elif name == "message_stop":
            state.done = state.ended = True
        return []


def _usage_update(usage: Usage, data: object) -> Usage:
    """`usage` with the token counts `data` carries (message_delta's are cumulative)."""
    counts = as_dict(data or {}, "usage")
    changes = {
        field: token_count(counts[key])
        for key, field in (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"))
        if counts.get(key) is not None
    }
    return attrs.evolve(usage, **changes)


register_wire(AnthropicWire())
