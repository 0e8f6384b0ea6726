"""Google Gemini API (Generative Language, v1beta).

``POST {base_url}/v1beta/models/{model}:generateContent`` with ``x-goog-api-key`` (a header, never
the ``?key=`` query parameter, so the key stays out of URLs and their logs). Streaming is
``:streamGenerateContent?alt=sse``: each SSE ``data`` is a whole GenerateContentResponse holding
the next piece of text; the last carries ``finishReason`` and ``usageMetadata``. There is no end
sentinel, so a stream that closes before any ``finishReason`` was cut short.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

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
    "GEMINI_DEFAULTS",
    "GeminiAdapter",
    "GeminiStreamParser",
    "build_body",
    "model_path",
    "parse_completion",
]

GEMINI_DEFAULTS = KindDefaults(
    "gemini", "https://generativelanguage.googleapis.com", "GEMINI_API_KEY"
)

#: Gemini finish reasons in the runtime's (OpenAI's) vocabulary; others are lower-cased.
FINISH_REASONS: Mapping[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "BLOCKLIST": "content_filter",
    "SPII": "content_filter",
}


def model_path(model: str, method: str) -> str:
    """``/v1beta/models/{model}:{method}``; accepts ``gemini-x`` and ``models/gemini-x`` alike."""
    name = model.removeprefix("models/")
    return f"/v1beta/models/{quote(name, safe='-._~')}:{method}"


def build_body(request: Request) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [{"text": request.prompt}]}],
        "generationConfig": {
            "maxOutputTokens": request.max_tokens,
            "temperature": request.temperature,
        },
    }
    if request.system:
        body["systemInstruction"] = {"parts": [{"text": request.system}]}
    return body


def _finish_reason(value: object) -> str | None:
    if value is None:
        return None
    return FINISH_REASONS.get(str(value), str(value).lower())


def _usage(data: object) -> Usage:
    usage = as_dict(data or {}, "usageMetadata")
    return Usage(
        input_tokens=token_count(usage.get("promptTokenCount")),
        output_tokens=token_count(usage.get("candidatesTokenCount")),
    )


def _candidate_text(reply: dict[str, Any]) -> tuple[str, str | None]:
    """The first candidate's text and finish reason (text may be empty)."""
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
    return text, _finish_reason(candidate.get("finishReason"))


def _blocked(provider: str, reply: dict[str, Any]) -> ProviderError | None:
    """A prompt Gemini refused outright comes back 200 with no candidates and a block reason."""
    feedback = reply.get("promptFeedback")
    if reply.get("candidates") or not isinstance(feedback, dict):
        return None
    reason = feedback.get("blockReason")
    if not reason:
        return None
    return ProviderError(
        FailureKind.CLIENT_ERROR, f"{provider}: prompt blocked by the provider ({reason})"
    )


def parse_completion(
    data: Any, model: str, quota: float | None, provider: str = "gemini"
) -> Completion:
    """A GenerateContentResponse; raises a shape error if it is not one."""
    reply = as_dict(data, "reply")
    blocked = _blocked(provider, reply)
    if blocked is not None:
        raise blocked
    if not reply.get("candidates"):
        raise KeyError("candidates")
    text, finish_reason = _candidate_text(reply)
    return Completion(
        text=text,
        model=str(reply.get("modelVersion") or model),
        finish_reason=finish_reason or "stop",
        usage=_usage(reply.get("usageMetadata")),
        quota_remaining=quota,
    )


@attrs.define
class GeminiStreamParser:
    provider: str
    model: str
    _text: list[str] = attrs.field(factory=list)
    _finish_reason: str | None = None
    _usage: Usage = attrs.field(factory=Usage)
    _reply_model: str | None = None

    @property
    def done(self) -> bool:
        # No end sentinel: the server closes after the chunk with the finish reason, and a
        # trailing usage-only chunk may still follow, so keep reading until it does.
        return False

    def feed(self, event: SSEEvent) -> list[str]:
        reply = as_dict(loads_event(self.provider, event.data), "chunk")
        if "error" in reply:
            error = reply["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise ProviderError(
                FailureKind.SERVER_ERROR,
                f"{self.provider}: error mid-stream: {redact_text(str(message))}",
            )
        blocked = _blocked(self.provider, reply)
        if blocked is not None:
            raise blocked
        self._reply_model = reply.get("modelVersion") or self._reply_model
        if reply.get("usageMetadata") is not None:
            self._usage = _usage(reply["usageMetadata"])
        text, finish_reason = _candidate_text(reply)
        self._finish_reason = finish_reason or self._finish_reason
        if text:
            self._text.append(text)
            return [text]
        return []

    def finish(self, quota: float | None) -> Completion:
        return stream_completion(
            self.provider,
            self.model,
            self._reply_model,
            self._text,
            ended=self._finish_reason is not None,
            end_marker="a finishReason",
            finish_reason=self._finish_reason or "stop",
            usage=self._usage,
            quota=quota,
        )


class GeminiAdapter(HTTPAdapter):
    defaults: ClassVar[KindDefaults] = GEMINI_DEFAULTS
    key_header: ClassVar[str] = "x-goog-api-key"
    key_prefix: ClassVar[str] = ""

    def default_headers(self, config: ProviderConfig) -> dict[str, str]:
        return {"accept": "application/json", "content-type": "application/json"}

    async def complete(self, request: Request, model: str) -> Completion:
        data, headers = await self.post_json(
            model_path(model, "generateContent"), build_body(request)
        )
        try:
            return parse_completion(data, model, quota_remaining(headers), self.name)
        except SHAPE_ERRORS as exc:
            raise malformed(self.name, f"not a GenerateContentResponse ({exc!r})") from None

    def stream(self, request: Request, model: str) -> AsyncIterator[StreamEvent]:
        return self.stream_completion(
            model_path(model, "streamGenerateContent"),
            build_body(request),
            SSEDecoder(),
            GeminiStreamParser(self.name, model),
            params={"alt": "sse"},
        )


@register_kind("gemini")
def build_gemini(config: ProviderConfig, context: AdapterContext) -> Adapter:
    return GeminiAdapter(config, context)
