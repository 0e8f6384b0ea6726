"""OpenAI Chat Completions, and everything that speaks it (Mistral, Hugging Face, Groq, vLLM...).

``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>``. Streaming is SSE: one
``data: {chat.completion.chunk}`` per delta, a usage-only chunk when ``stream_options.include_usage``
is set, then ``data: [DONE]``. Kinds ``mistral`` and ``huggingface`` speak this format with their
service's default base URL and key variable (see `actors.kinds`); any other compatible endpoint is
``openai`` plus ``base_url``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.adapters.http import register_wire
from actors.adapters.parsing import as_dict, loads_event, text_or_empty, token_count
from actors.adapters.sse import SSEDecoder, SSEEvent
from actors.adapters.wire import StreamState, WireError, WireRequest
from actors.errors import FailureKind
from actors.messages import Completion, Request, Usage

if TYPE_CHECKING:
    from actors.config import ProviderConfig

__all__ = ["OpenAIWire"]

PATH = "/chat/completions"


def _usage(data: object) -> Usage:
    if data is None:
        return Usage()
    usage = as_dict(data, "usage")
    return Usage(
        input_tokens=token_count(usage.get("prompt_tokens")),
        output_tokens=token_count(usage.get("completion_tokens")),
    )


def _stream_error(error: object) -> WireError:
    """Compatible servers (vLLM, the HF router) report a failure mid-stream as ``{"error": ...}``."""
    message = error.get("message") if isinstance(error, dict) else error
    return WireError(FailureKind.SERVER_ERROR, f"error mid-stream: {message}")


class OpenAIWire:
    name = "openai"
    key_header = "authorization"
    key_prefix = "Bearer "
    reply_name = "a chat.completion"
    end_marker = "[DONE]"

    def headers(self, config: ProviderConfig) -> dict[str, str]:
        return {}

    def build_request(self, request: Request, model: str, *, stream: bool) -> WireRequest:
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
        return WireRequest(PATH, body)

    def parse_reply(self, data: Any, model: str) -> Completion:
        reply = as_dict(data, "reply")
        choice = as_dict(reply["choices"][0], "choices[0]")
        message = as_dict(choice["message"], "choices[0].message")
        return Completion(
            text=text_or_empty(message.get("content")),
            model=str(reply.get("model") or model),
            finish_reason=str(choice.get("finish_reason") or "stop"),
            usage=_usage(reply.get("usage")),
        )

    def stream_decoder(self) -> SSEDecoder:
        return SSEDecoder()

    def parse_event(self, item: SSEEvent, state: StreamState) -> list[str]:
        if item.data.strip() == "[DONE]":
            state.done = state.ended = True
            return []
        chunk = as_dict(loads_event(item.data), "chunk")
        if "error" in chunk:
            raise _stream_error(chunk["error"])
        state.reply_model = chunk.get("model") or state.reply_model
        if chunk.get("usage") is not None:
            state.usage = _usage(chunk["usage"])
        deltas: list[str] = []
        for choice in chunk.get("choices") or ():
            choice = as_dict(choice, "choice")
            if choice.get("index", 0) != 0:
                continue
            delta = as_dict(choice.get("delta") or {}, "delta")
            deltas += state.add_text(text_or_empty(delta.get("content")))
            if choice.get("finish_reason"):
                # A server that closes cleanly after the finish reason but before [DONE] still
                # gave us the whole text.
                state.finish_reason = str(choice["finish_reason"])
                state.ended = True
        return deltas


register_wire(OpenAIWire())
