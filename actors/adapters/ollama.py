"""Ollama chat API: the local-LLM path.

``POST {base_url}/api/chat``. Ollama streams unless the body says ``"stream": false``, so `complete`
always says so explicitly. Streaming is NDJSON: one JSON object per line with the next piece of
``message.content``; the last has ``"done": true``, ``done_reason`` and the token counts
(``prompt_eval_count``, ``eval_count``). A failure after streaming began arrives as a line
``{"error": "..."}``. No key by default; set ``api_key_env`` for an Ollama behind an auth proxy.
"""

from __future__ import annotations

from typing import Any

from actors.adapters.http import register_wire
from actors.adapters.parsing import as_dict, text_or_empty, token_count
from actors.adapters.sse import NDJSONDecoder
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

__all__ = ["OllamaWire"]

PATH = "/api/chat"


def _usage(reply: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=token_count(reply.get("prompt_eval_count")),
        output_tokens=token_count(reply.get("eval_count")),
    )


def _raise_if_error(reply: dict[str, Any]) -> None:
    if "error" in reply:
        raise WireError(in_band_kind(reply["error"]), f"error mid-stream: {reply['error']}")


def _done_reason(reply: dict[str, Any]) -> str | None:
    reason = reply.get("done_reason")
    return str(reason) if reason else None


class OllamaWire(WireDefaults):
    name = "ollama"
    reply_name = "an /api/chat reply"
    end_marker = "done=true"
    # finish reasons: ``done_reason`` is "stop", "length", or "load"/"unload" (read as "stop").

    def build_request(
        self, request: Request, model: str, shape: RequestShape, *, stream: bool
    ) -> WireRequest:
        messages: list[dict[str, str]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.last_user_text})
        options: dict[str, Any] = {"num_predict": request.max_tokens}
        if shape.temperature is not None:
            options["temperature"] = shape.temperature
        body = {"model": model, "messages": messages, "stream": stream, "options": options}
        return WireRequest(PATH, body)

    def parse_reply(self, data: Any, model: str) -> Completion:
        reply = as_dict(data, "reply")
        _raise_if_error(reply)
        message = as_dict(reply["message"], "message")
        return Completion(
            text=text_or_empty(message.get("content")),
            model=str(reply.get("model") or model),
            usage=_usage(reply),
            raw_finish_reason=_done_reason(reply),
        )

    def stream_decoder(self) -> NDJSONDecoder:
        return NDJSONDecoder()

    def parse_event(self, item: Any, state: StreamState) -> Deltas:
        reply = as_dict(item, "line")
        _raise_if_error(reply)
        state.reply_model = reply.get("model") or state.reply_model
        message = as_dict(reply.get("message") or {}, "message")
        text = text_or_empty(message.get("content"))
        if reply.get("done") is True:
            state.done = state.ended = True
            state.finish_reason = _done_reason(reply)
            state.usage = _usage(reply)
        return state.add_text(text)


register_wire(OllamaWire())
