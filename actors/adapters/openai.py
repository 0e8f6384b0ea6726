"""OpenAI Chat Completions, and everything that speaks it (Mistral, Hugging Face, Groq, vLLM...).

``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>``. Streaming is SSE: one
``data: {chat.completion.chunk}`` per delta, a usage-only chunk when ``stream_options.include_usage``
is set, then ``data: [DONE]``. Kinds ``mistral`` and ``huggingface`` are this adapter with their
service's default base URL and key variable; any other compatible endpoint is ``openai`` plus
``base_url``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
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

if TYPE_CHECKING:
    from actors.config import ProviderConfig

__all__ = [
    "HUGGINGFACE_DEFAULTS",
    "MISTRAL_DEFAULTS",
    "OPENAI_DEFAULTS",
    "OpenAIAdapter",
    "OpenAIStreamParser",
    "build_body",
    "parse_completion",
]

OPENAI_DEFAULTS = KindDefaults("openai", "https://api.openai.com/v1", "OPENAI_API_KEY")
MISTRAL_DEFAULTS = KindDefaults("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY")
HUGGINGFACE_DEFAULTS = KindDefaults("huggingface", "https://router.huggingface.co/v1", "HF_TOKEN")

PATH = "/chat/completions"


def build_body(request: Request, model: str, *, stream: bool) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": request.prompt})
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _usage(data: object) -> Usage:
    if data is None:
        return Usage()
    usage = as_dict(data, "usage")
    return Usage(
        input_tokens=token_count(usage.get("prompt_tokens")),
        output_tokens=token_count(usage.get("completion_tokens")),
    )


def parse_completion(data: Any, model: str, quota: float | None) -> Completion:
    """A ``chat.completion`` object; raises a shape error (KeyError, TypeError...) if it is not one."""
    reply = as_dict(data, "reply")
    choice = as_dict(reply["choices"][0], "choices[0]")
    message = as_dict(choice["message"], "choices[0].message")
    return Completion(
        text=text_or_empty(message.get("content")),
        model=str(reply.get("model") or model),
        finish_reason=str(choice.get("finish_reason") or "stop"),
        usage=_usage(reply.get("usage")),
        quota_remaining=quota,
    )


def _stream_error(provider: str, error: object) -> ProviderError:
    """Compatible servers (vLLM, the HF router) report a failure mid-stream as ``{"error": ...}``."""
    message = error.get("message") if isinstance(error, dict) else error
    return ProviderError(FailureKind.SERVER_ERROR, f"{provider}: error mid-stream: {message}")


@attrs.define
class OpenAIStreamParser:
    provider: str
    model: str
    done: bool = False
    _text: list[str] = attrs.field(factory=list)
    _finish_reason: str | None = None
    _usage: Usage = attrs.field(factory=Usage)
    _reply_model: str | None = None

    def feed(self, event: SSEEvent) -> list[str]:
        if event.data.strip() == "[DONE]":
            self.done = True
            return []
        chunk = as_dict(loads_event(self.provider, event.data), "chunk")
        if "error" in chunk:
            raise _stream_error(self.provider, chunk["error"])
        self._reply_model = chunk.get("model") or self._reply_model
        if chunk.get("usage") is not None:
            self._usage = _usage(chunk["usage"])
        deltas: list[str] = []
        for choice in chunk.get("choices") or ():
            choice = as_dict(choice, "choice")
            if choice.get("index", 0) != 0:
                continue
            delta = as_dict(choice.get("delta") or {}, "delta")
            text = text_or_empty(delta.get("content"))
            if text:
                self._text.append(text)
                deltas.append(text)
            if choice.get("finish_reason"):
                self._finish_reason = str(choice["finish_reason"])
        return deltas

    def finish(self, quota: float | None) -> Completion:
        # A server that closes cleanly after the finish reason but before [DONE] still gave
        # us the whole text; one that closes before either cut the reply short.
        return stream_completion(
            self.provider,
            self.model,
            self._reply_model,
            self._text,
            ended=self.done or self._finish_reason is not None,
            end_marker="[DONE]",
            finish_reason=self._finish_reason or "stop",
            usage=self._usage,
            quota=quota,
        )


class OpenAIAdapter(HTTPAdapter):
    defaults: ClassVar[KindDefaults] = OPENAI_DEFAULTS

    def default_headers(self, config: ProviderConfig) -> dict[str, str]:
        return {"accept": "application/json", "content-type": "application/json"}

    async def complete(self, request: Request, model: str) -> Completion:
        data, headers = await self.post_json(PATH, build_body(request, model, stream=False))
        try:
            return parse_completion(data, model, quota_remaining(headers))
        except SHAPE_ERRORS as exc:
            raise malformed(self.name, f"not a chat.completion ({exc!r})") from None

    def stream(self, request: Request, model: str) -> AsyncIterator[StreamEvent]:
        body = build_body(request, model, stream=True)
        return self.stream_completion(
            PATH, body, SSEDecoder(), OpenAIStreamParser(self.name, model)
        )


@register_kind("openai")
def build_openai(config: ProviderConfig, context: AdapterContext) -> Adapter:
    return OpenAIAdapter(config, context, defaults=OPENAI_DEFAULTS)


@register_kind("mistral")
def build_mistral(config: ProviderConfig, context: AdapterContext) -> Adapter:
    return OpenAIAdapter(config, context, defaults=MISTRAL_DEFAULTS)


@register_kind("huggingface")
def build_huggingface(config: ProviderConfig, context: AdapterContext) -> Adapter:
    return OpenAIAdapter(config, context, defaults=HUGGINGFACE_DEFAULTS)
