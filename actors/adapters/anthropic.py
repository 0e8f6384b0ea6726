"""Anthropic Messages API.

``POST {base_url}/v1/messages`` with ``x-api-key`` and ``anthropic-version``. Streaming is SSE with
named events: ``message_start`` (input usage), ``content_block_delta`` (``text_delta`` pieces),
``message_delta`` (stop reason, cumulative output usage), ``message_stop``; ``ping`` keeps the
connection alive and ``error`` reports a failure after the stream began (``overloaded_error`` is
the mid-stream form of HTTP 529). Unknown event types are ignored, as Anthropic's versioning
policy asks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from actors.adapters.base import Adapter, AdapterContext, register_kind
from actors.adapters.http import (
    SHAPE_ERRORS,
    HTTPAdapter,
    KindDefaults,
    as_dict,
    loads_event,
    malformed,
    quota_remaining,
    stream_completion,
    text_or_empty,
    token_count,
)
from actors.adapters.sse import SSEDecoder, SSEEvent
from actors.errors import FailureKind, ProviderError
from actors.messages import Completion, Request, StreamEvent, Usage
from actors.secrets import redact_text

if TYPE_CHECKING:
    from actors.config import ProviderConfig

__all__ = [
    "ANTHROPIC_DEFAULTS",
    "ERROR_TYPES",
    "AnthropicAdapter",
    "AnthropicStreamParser",
    "build_body",
    "parse_completion",
]

ANTHROPIC_DEFAULTS = KindDefaults("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY")

PATH = "/v1/messages"

#: Anthropic stop reasons in the runtime's (OpenAI's) vocabulary.
STOP_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

#: The ``error.type`` of an error event, as a failure kind.
ERROR_TYPES: Mapping[str, FailureKind] = {
    "overloaded_error": FailureKind.SERVER_ERROR,
    "api_error": FailureKind.SERVER_ERROR,
    "timeout_error": FailureKind.TIMEOUT,
    "rate_limit_error": FailureKind.RATE_LIMITED,
    "authentication_error": FailureKind.AUTH,
    "permission_error": FailureKind.AUTH,
    "invalid_request_error": FailureKind.CLIENT_ERROR,
    "not_found_error": FailureKind.CLIENT_ERROR,
    "request_too_large": FailureKind.CLIENT_ERROR,
}


def build_body(request: Request, model: str, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": [{"role": "user", "content": request.prompt}],
        "temperature": request.temperature,
        "stream": stream,
    }
    if request.system:
        body["system"] = request.system
    return body


def _stop_reason(value: object) -> str | None:
    if value is None:
        return None
    return STOP_REASONS.get(str(value), str(value))


def parse_completion(data: Any, model: str, quota: float | None) -> Completion:
    """A ``message`` object; raises a shape error (KeyError, TypeError...) if it is not one."""
    reply = as_dict(data, "reply")
    blocks = reply["content"]
    if not isinstance(blocks, list):
        raise TypeError("content is not a list")
    text = "".join(
        text_or_empty(as_dict(block, "content block").get("text"))
        for block in blocks
        if as_dict(block, "content block").get("type") == "text"
    )
    usage = as_dict(reply.get("usage") or {}, "usage")
    return Completion(
        text=text,
        model=str(reply.get("model") or model),
        finish_reason=_stop_reason(reply.get("stop_reason")) or "stop",
        usage=Usage(
            input_tokens=token_count(usage.get("input_tokens")),
            output_tokens=token_count(usage.get("output_tokens")),
        ),
        quota_remaining=quota,
    )


@attrs.define
class AnthropicStreamParser:
    provider: str
    model: str
    done: bool = False
    _text: list[str] = attrs.field(factory=list)
    _stop_reason: str | None = None
    _input_tokens: int = 0
    _output_tokens: int = 0
    _reply_model: str | None = None

    def feed(self, event: SSEEvent) -> list[str]:
        name = event.event
        if name == "ping":
            return []
        data = as_dict(loads_event(self.provider, event.data), "event data")
        name = str(data.get("type") or name) if name == "message" else name
        if name == "error":
            raise self._error(data.get("error"))
        if name == "message_start":
            message = as_dict(data["message"], "message")
            self._reply_model = message.get("model") or self._reply_model
            usage = as_dict(message.get("usage") or {}, "usage")
            self._input_tokens = token_count(usage.get("input_tokens"))
            self._output_tokens = token_count(usage.get("output_tokens"))
        elif name == "content_block_delta":
            delta = as_dict(data["delta"], "delta")
            if delta.get("type") == "text_delta":
                text = text_or_empty(delta.get("text"))
                if text:
                    self._text.append(text)
                    return [text]
        elif name == "message_delta":
            delta = as_dict(data.get("delta") or {}, "delta")
            self._stop_reason = _stop_reason(delta.get("stop_reason")) or self._stop_reason
            usage = as_dict(data.get("usage") or {}, "usage")
            if usage.get("output_tokens") is not None:
                self._output_tokens = token_count(usage["output_tokens"])
            if usage.get("input_tokens") is not None:
                self._input_tokens = token_count(usage["input_tokens"])
        elif name == "message_stop":
            self.done = True
        return []

    def _error(self, error: object) -> ProviderError:
        error = error if isinstance(error, dict) else {}
        error_type = str(error.get("type") or "api_error")
        kind = ERROR_TYPES.get(error_type, FailureKind.SERVER_ERROR)
        message = redact_text(str(error.get("message") or error_type))
        return ProviderError(kind, f"{self.provider}: {error_type} mid-stream: {message}")

    def finish(self, quota: float | None) -> Completion:
        return stream_completion(
            self.provider,
            self.model,
            self._reply_model,
            self._text,
            ended=self.done,
            end_marker="message_stop",
            finish_reason=self._stop_reason or "stop",
            usage=Usage(input_tokens=self._input_tokens, output_tokens=self._output_tokens),
            quota=quota,
        )


class AnthropicAdapter(HTTPAdapter):
    defaults: ClassVar[KindDefaults] = ANTHROPIC_DEFAULTS
    key_header: ClassVar[str] = "x-api-key"
    key_prefix: ClassVar[str] = ""

    def default_headers(self, config: ProviderConfig) -> dict[str, str]:
        return {
            "accept": "application/json",
            "content-type": "application/json",
            "anthropic-version": config.anthropic_version,
        }

    async def complete(self, request: Request, model: str) -> Completion:
        data, headers = await self.post_json(PATH, build_body(request, model, stream=False))
        try:
            return parse_completion(data, model, quota_remaining(headers))
        except SHAPE_ERRORS as exc:
            raise malformed(self.name, f"not a message ({exc!r})") from None

    def stream(self, request: Request, model: str) -> AsyncIterator[StreamEvent]:
        body = build_body(request, model, stream=True)
        return self.stream_completion(
            PATH, body, SSEDecoder(), AnthropicStreamParser(self.name, model)
        )


@register_kind("anthropic")
def build_anthropic(config: ProviderConfig, context: AdapterContext) -> Adapter:
    return AnthropicAdapter(config, context)
