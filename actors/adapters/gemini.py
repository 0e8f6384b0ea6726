"""Google Gemini API (Generative Language, v1beta).

``POST {base_url}/v1beta/models/{model}:generateContent`` with ``x-goog-api-key`` (a header, never
the ``?key=`` query parameter, so the key stays out of URLs and their logs). Streaming is
``:streamGenerateContent?alt=sse``: each SSE ``data`` is a whole GenerateContentResponse holding
the next piece of text; the last carries ``finishReason`` and ``usageMetadata``. There is no end
sentinel, so a stream that closes before any ``finishReason`` was cut short.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

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
    """Thinking is billed as output: ``thoughtsTokenCount`` counts in `output_tokens` too."""
    usage = as_dict(data or {}, "usageMetadata")
    thoughts = token_count(usage.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=token_count(usage.get("promptTokenCount")),
        output_tokens=token_count(usage.get("candidatesTokenCount")) + thoughts,
        reasoning_tokens=thoughts,
    )


def _candidate_text(reply: dict[str, Any]) -> tuple[str, str | None]:
    """The first candidate's text and raw finish reason (text may be empty)."""
    candidates = reply.get("candidates") or []
    if not isinstance(candidates, list):
        raise TypeError("candidates is not a list")
    if not candidates:
        return "", None
    candidate = as_dict(candidates[0], "candidates[0]")
    content = as_dict(candidate.get("content") or {}, "content")
    parts = content.get("parts") or []
    if not isinstance(parts, list):
        raise TypeError("parts is not a list")
    text = "".join(
        text_or_empty(as_dict(part, "part").get("text"))
        for part in parts
        if not as_dict(part, "part").get("thought")
    )
    finish_reason = candidate.get("finishReason")
    return text, str(finish_reason) if finish_reason is not None else None


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


class GeminiWire(WireDefaults):
    name = "gemini"
    key_header = "x-goog-api-key"
    key_prefix = ""
    reply_name = "a GenerateContentResponse"
    end_marker = "a finishReason"
    finish_reasons = FINISH_REASONS

    def build_request(
        self, request: Request, model: str, shape: RequestShape, *, stream: bool
    ) -> WireRequest:
        generation: dict[str, Any] = {"maxOutputTokens": request.max_tokens}
        if shape.temperature is not None:
            generation["temperature"] = shape.temperature
        body: dict[str, Any] = {
            "contents": [{"role": "user", "parts": [{"text": request.prompt}]}],
            "generationConfig": generation,
        }
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": request.system}]}
        if stream:
            return WireRequest(model_path(model, "streamGenerateContent"), body, {"alt": "sse"})
        return WireRequest(model_path(model, "generateContent"), body)

    def parse_reply(self, data: Any, model: str) -> Completion:
        reply = as_dict(data, "reply")
        _raise_if_failed(reply)
        if not reply.get("candidates"):
            raise KeyError("candidates")
        text, finish_reason = _candidate_text(reply)
        return Completion(
            text=text,
            model=str(reply.get("modelVersion") or model),
            usage=_usage(reply.get("usageMetadata")),
            raw_finish_reason=finish_reason,
        )

    def stream_decoder(self) -> SSEDecoder:
        return SSEDecoder()

    def parse_event(self, item: SSEEvent, state: StreamState) -> Deltas:
        # No end sentinel (`state.done` stays False): the server closes after the chunk with the
        # finish reason, and a trailing usage-only chunk may still follow, so read until it does.
        reply = as_dict(loads_event(item.data), "chunk")
        _raise_if_failed(reply)
        state.reply_model = reply.get("modelVersion") or state.reply_model
        if reply.get("usageMetadata") is not None:
            state.usage = _usage(reply["usageMetadata"])
        text, finish_reason = _candidate_text(reply)
        state.finish_reason = finish_reason or state.finish_reason
        state.ended = state.finish_reason is not None
        return state.add_text(text)


register_wire(GeminiWire())
