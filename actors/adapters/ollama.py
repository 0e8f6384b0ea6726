"""Ollama chat API: the local-LLM path.

``POST {base_url}/api/chat``. Ollama streams unless the body says ``"stream": false``, so `complete`
always says so explicitly. Streaming is NDJSON: one JSON object per line with the next piece of
``message.content``; the last has ``"done": true``, ``done_reason`` and the token counts
(``prompt_eval_count``, ``eval_count``). A failure after streaming began arrives as a line
``{"error": "..."}``. No key by default; set ``api_key_env`` for an Ollama behind an auth proxy.
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
    malformed,
    stream_completion,
    text_or_empty,
    token_count,
)
from actors.adapters.sse import NDJSONDecoder
from actors.errors import FailureKind, ProviderError
from actors.messages import Completion, Request, StreamEvent, Usage
from actors.secrets import redact_text

if TYPE_CHECKING:
    from actors.config import ProviderConfig

__all__ = [
    "OLLAMA_DEFAULTS",
    "OllamaAdapter",
    "OllamaStreamParser",
    "build_body",
    "parse_completion",
]

OLLAMA_DEFAULTS = KindDefaults("ollama", "http://localhost:11434", None)

PATH = "/api/chat"


def build_body(request: Request, model: str, *, stream: bool) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": request.prompt})
    return {
        "model": model,
        "messages": messages,
        "stream": stream,
        "options": {"num_predict": request.max_tokens, "temperature": request.temperature},
    }


def _usage(reply: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=token_count(reply.get("prompt_eval_count")),
        output_tokens=token_count(reply.get("eval_count")),
    )


def _raise_if_error(provider: str, reply: dict[str, Any]) -> None:
    if "error" in reply:
        raise ProviderError(
            FailureKind.SERVER_ERROR,
            f"{provider}: error mid-stream: {redact_text(str(reply['error']))}",
        )


def parse_completion(data: Any, model: str, provider: str = "ollama") -> Completion:
    """A non-streamed ``/api/chat`` reply; raises a shape error if it is not one."""
    reply = as_dict(data, "reply")
    _raise_if_error(provider, reply)
    message = as_dict(reply["message"], "message")
    return Completion(
        text=text_or_empty(message.get("content")),
        model=str(reply.get("model") or model),
        finish_reason=str(reply.get("done_reason") or "stop"),
        usage=_usage(reply),
    )


@attrs.define
class OllamaStreamParser:
    provider: str
    model: str
    done: bool = False
    _text: list[str] = attrs.field(factory=list)
    _finish_reason: str = "stop"
    _usage: Usage = attrs.field(factory=Usage)
    _reply_model: str | None = None

    def feed(self, line: Any) -> list[str]:
        reply = as_dict(line, "line")
        _raise_if_error(self.provider, reply)
        self._reply_model = reply.get("model") or self._reply_model
        message = as_dict(reply.get("message") or {}, "message")
        text = text_or_empty(message.get("content"))
        if reply.get("done") is True:
            self.done = True
            self._finish_reason = str(reply.get("done_reason") or "stop")
            self._usage = _usage(reply)
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
            ended=self.done,
            end_marker="done=true",
            finish_reason=self._finish_reason,
            usage=self._usage,
            quota=quota,
        )


class OllamaAdapter(HTTPAdapter):
    defaults: ClassVar[KindDefaults] = OLLAMA_DEFAULTS

    def default_headers(self, config: ProviderConfig) -> dict[str, str]:
        return {"accept": "application/json", "content-type": "application/json"}

    async def complete(self, request: Request, model: str) -> Completion:
        data, _ = await self.post_json(PATH, build_body(request, model, stream=False))
        try:
            return parse_completion(data, model, self.name)
        except SHAPE_ERRORS as exc:
            raise malformed(self.name, f"not an /api/chat reply ({exc!r})") from None

    def stream(self, request: Request, model: str) -> AsyncIterator[StreamEvent]:
        body = build_body(request, model, stream=True)
        return self.stream_completion(
            PATH, body, NDJSONDecoder(), OllamaStreamParser(self.name, model)
        )


@register_kind("ollama")
def build_ollama(config: ProviderConfig, context: AdapterContext) -> Adapter:
    return OllamaAdapter(config, context)
