"""OpenAI's Chat Completions shape, out: a `Reply` as a ``chat.completion``, stream deltas as
``chat.completion.chunk`` events ending in ``data: [DONE]``, a failure after the first event as
an in-band ``{"error": ...}`` event (what OpenAI-compatible servers send), and `/v1/models`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from actors.adapters.openai import OpenAIWire
from actors.cascade import Answering
from actors.chat import ToolCall
from actors.messages import Reply, Request, TextDelta, ToolCallDelta, Usage
from runtime.gateway.errors import Dialect, GatewayError, error_body
from runtime.gateway.streaming import sse

__all__ = ["READER", "OpenAIStream", "chunk", "completion", "read", "stream_error", "usage"]

#: Reads a Chat Completions body into a `Request` (the inverse of what the adapter sends).
READER = OpenAIWire()


def usage(value: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": value.input_tokens,
        "completion_tokens": value.output_tokens,
        "total_tokens": value.input_tokens + value.output_tokens,
    }
    if value.cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": value.cached_tokens}
    if value.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": value.reasoning_tokens}
    return out


def _calls(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def completion(reply: Reply, request_id: str, created: int | None = None) -> dict[str, Any]:
    """The whole reply as a ``chat.completion``."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if reply.text or not reply.tool_calls else None,
        "refusal": reply.refusal,
    }
    if reply.tool_calls:
        message["tool_calls"] = _calls(reply.tool_calls)
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": reply.model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
        ],
        "usage": usage(reply.usage),
    }


def chunk(
    request_id: str,
    model: str,
    created: int,
    delta: Mapping[str, Any],
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with one choice."""
    return {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}
        ],
    }


def delta_of(event: TextDelta | ToolCallDelta) -> dict[str, Any]:
    """A runtime delta in a chunk's ``delta`` shape."""
    if isinstance(event, TextDelta):
        return {"content": event.text}
    call: dict[str, Any] = {"index": event.index, "function": {"arguments": event.arguments}}
    if event.id is not None:
        call["id"] = event.id
        call["type"] = "function"
    if event.name is not None:
        call["function"]["name"] = event.name
    return {"tool_calls": [call]}


def stream_error(error: GatewayError) -> dict[str, Any]:
    """A failure after the first event, in-band as OpenAI-compatible servers send it."""
    return error_body(error, "openai")


def wants_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def has_limit(body: Mapping[str, Any]) -> bool:
    return body.get("max_completion_tokens", body.get("max_tokens")) is not None


def read(body: Mapping[str, Any]) -> Request:
    """The body as a `Request` (a `FieldError` naming the field when it is not one)."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise GatewayError(400, "model: a model name is required", param="model")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise GatewayError(400, "stream: must be true or false", param="stream")
    return READER.read_request(body)


class OpenAIStream:
    """A streamed reply as ``chat.completion.chunk`` events (see `StreamRenderer`)."""

    dialect: Dialect = "openai"

    def __init__(self, request_id: str, model: str, include_usage: bool) -> None:
        self._id = request_id
        self._model = model
        self._created = int(time.time())
        self._include_usage = include_usage

    def _chunk(self, delta: Mapping[str, Any], finish: str | None = None) -> dict[str, Any]:
        body = chunk(self._id, self._model, self._created, delta, finish)
        if self._include_usage:
            body["usage"] = None
        return body

    def start(self, answering: Answering) -> list[bytes]:
        self._model = answering.model
        return [sse(self._chunk({"role": "assistant", "content": ""}))]

    def delta(self, event: TextDelta | ToolCallDelta) -> list[bytes]:
        return [sse(self._chunk(delta_of(event)))]

    def done(self, reply: Reply) -> list[bytes]:
        self._model = reply.model
        events = [sse(self._chunk({}, reply.finish_reason))]
        if self._include_usage:
            last = self._chunk({})
            last["choices"] = []
            last["usage"] = usage(reply.usage)
            events.append(sse(last))
        return [*events, b"data: [DONE]\n\n"]

    def error(self, error: GatewayError) -> list[bytes]:
        return [sse(stream_error(error))]
