"""OpenAI Chat Completions, and everything that speaks it (Mistral, Hugging Face, Groq, vLLM...).

``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>``. Streaming is SSE: one
``data: {chat.completion.chunk}`` per delta, a usage-only chunk when ``stream_options.include_usage``
is set, then ``data: [DONE]``; a compatible server reports a failure mid-stream as
``data: {"error": ...}``. Kinds ``mistral`` and ``huggingface`` speak this format with their
service's default base URL and key variable (see `actors.kinds`); any other compatible endpoint is
``openai`` plus ``base_url``. Reasoning models take ``max_completion_tokens`` and the
``developer`` role (see `actors.adapters.shaping`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
)
from actors.messages import Completion, Request, Usage

__all__ = ["OpenAIWire"]

PATH = "/chat/completions"


def _usage(data: object) -> Usage:
    if data is None:
        return Usage()
    usage = as_dict(data, "usage")
    details = as_dict(usage.get("completion_tokens_details") or {}, "completion_tokens_details")
    return Usage(
        input_tokens=token_count(usage.get("prompt_tokens")),
        # completion_tokens already counts the reasoning tokens.
        output_tokens=token_count(usage.get("completion_tokens")),
        reasoning_tokens=token_count(details.get("reasoning_tokens")),
    )


def _stream_error(error: object) -> WireError:
    """Compatible servers (vLLM, the HF router) report a failure mid-stream as ``{"error": ...}``."""
    message = error.get("message") if isinstance(error, dict) else error
    return WireError(in_band_kind(error), f"error mid-stream: {message}")


def _messages(request: Request, shape: RequestShape) -> list[dict[str, str]]:
    prompt = request.last_user_text
    if not request.system:
        return [{"role": "user", "content": request.last_user_text}]
    if shape.system_role == "user":
        return [{"role": "user", "content": f"{request.system}\n\n{prompt}"}]
    return [
        {"role": shape.system_role, "content": request.system},
        {"role": "user", "content": request.last_user_text},
    ]


def _refusal(value: object) -> str | None:
    return text_or_empty(value) if value is not None else None


class OpenAIWire(WireDefaults):
    name = "openai"
    reply_name = "a chat.completion"
    end_marker = "[DONE]"
    #: Already the runtime's vocabulary, but for the legacy "function_call".
    finish_reasons: Mapping[str, str] = {"function_call": "tool_calls"}

    def build_request(
        self, request: Request, model: str, shape: RequestShape, *, stream: bool
    ) -> WireRequest:
        body: dict[str, Any] = {
            "model": model,
            "messages": _messages(request, shape),
            shape.token_field: request.max_tokens,
        }
        if shape.temperature is not None:
            body["temperature"] = shape.temperature
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
        finish_reason = choice.get("finish_reason")
        return Completion(
            text=text_or_empty(message.get("content")),
            model=str(reply.get("model") or model),
            usage=_usage(reply.get("usage")),
            refusal=_refusal(message.get("refusal")),
            raw_finish_reason=str(finish_reason) if finish_reason else None,
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
            refusal = _refusal(delta.get("refusal"))
            if refusal is not None:
                state.refusal = (state.refusal or "") + refusal
            if choice.get("finish_reason"):
                # A server that closes cleanly after the finish reason but before [DONE] still
                # gave us the whole text.
                state.finish_reason = str(choice["finish_reason"])
                state.ended = True
        return deltas


register_wire(OpenAIWire())
