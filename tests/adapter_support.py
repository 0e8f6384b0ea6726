"""Helpers for the adapter tests: an adapter context with an injected httpx transport."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

# Importing the modules registers their kinds.
import actors.adapters.anthropic
import actors.adapters.gemini
import actors.adapters.ollama
import actors.adapters.openai  # noqa: F401
from actors.adapters.base import ADAPTER_KINDS
from actors.adapters.http import HTTPAdapter
from actors.config import ModelInfo, ProviderConfig

#: A fake key per kind's default variable, shaped like the real thing so redaction patterns apply.
KEYS: dict[str, tuple[str, str]] = {
    "openai": ("OPENAI_API_KEY", "sk-proj-TESTKEYopenai0123456789abcdef"),
    "mistral": ("MISTRAL_API_KEY", "mistralTESTKEY0123456789abcdef"),
    "huggingface": ("HF_TOKEN", "hf_TESTKEYhuggingface0123456789"),
    "anthropic": ("ANTHROPIC_API_KEY", "sk-ant-api03-TESTKEYanthropic0123456789"),
    "gemini": ("GEMINI_API_KEY", "AIzaSyTESTKEYgemini0123456789abcdefgh"),
}

KINDS = ("openai", "mistral", "huggingface", "anthropic", "gemini", "ollama")
PROTOCOL_KINDS = ("openai", "anthropic", "gemini", "ollama")

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


class AdapterTestContext:
    """What the runtime lends an adapter, reduced to what HTTP adapters read: a transport, and
    the model table (for request shaping)."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        models: Mapping[str, ModelInfo] | None = None,
    ) -> None:
        self.http_transport = transport
        self._models = dict(models or {})

    @property
    def config(self) -> Any:
        """Only `model_info` of the runtime config: HTTP adapters read nothing else."""
        return SimpleNamespace(model_info=lambda model: self._models.get(model, ModelInfo()))

    def shared(self, provider: str, kind: str, factory: Callable[[], Any]) -> Any:
        raise AssertionError("HTTP adapters keep nothing across incarnations")


def set_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for env, value in KEYS.values():
        monkeypatch.setenv(env, value)


def build(
    kind: str,
    handler: Handler | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    model: str = "test-model",
    models: Mapping[str, ModelInfo] | None = None,
    **config: Any,
) -> HTTPAdapter:
    if handler is not None:
        transport = httpx.MockTransport(handler)
    provider = ProviderConfig(name=f"my-{kind}", kind=kind, models=(model,), **config)
    adapter = ADAPTER_KINDS[kind](provider, AdapterTestContext(transport, models))
    assert isinstance(adapter, HTTPAdapter)
    return adapter


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def sse(*events: tuple[str | None, object]) -> bytes:
    """An SSE body: (event name or None, JSON-able data or a raw string) per event."""
    out = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {text}\n\n")
    return "".join(out).encode()


def ndjson(*values: object) -> bytes:
    return "".join(json.dumps(value) + "\n" for value in values).encode()


def ok_reply(kind: str, text: str) -> dict[str, Any]:
    """Each protocol's documented non-streamed reply: `text`, 5 tokens in, 2 out, normal stop."""
    if kind == "anthropic":
        return {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "test-model",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 2},
        }
    if kind == "gemini":
        return {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
            ],
            "usageMetadata": {
                "promptTokenCount": 5,
                "candidatesTokenCount": 2,
                "totalTokenCount": 7,
            },
            "modelVersion": "test-model",
        }
    if kind == "ollama":
        return {
            "model": "test-model",
            "created_at": "2023-11-14T22:13:20Z",
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 5,
            "eval_count": 2,
        }
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def stream_body(kind: str, pieces: list[str], *, complete: bool = True) -> bytes:
    """Each protocol's documented stream of `pieces`; without its ending when not `complete`."""
    if kind == "anthropic":
        head = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_01",
                        "type": "message",
                        "role": "assistant",
                        "model": "test-model",
                        "content": [],
                        "stop_reason": None,
                        "usage": {"input_tokens": 5, "output_tokens": 1},
                    },
                },
            ),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        deltas = [
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
            for piece in pieces
        ]
        tail = [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 2},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return sse(*head, *deltas, *(tail if complete else []))
    if kind == "gemini":
        chunks: list[dict[str, Any]] = [
            {
                "candidates": [{"content": {"role": "model", "parts": [{"text": piece}]}}],
                "modelVersion": "test-model",
            }
            for piece in pieces
        ]
        if complete:
            chunks[-1]["candidates"][0]["finishReason"] = "STOP"
            chunks[-1]["usageMetadata"] = {"promptTokenCount": 5, "candidatesTokenCount": 2}
        return sse(*((None, chunk) for chunk in chunks))
    if kind == "ollama":
        lines: list[dict[str, Any]] = [
            {
                "model": "test-model",
                "message": {"role": "assistant", "content": piece},
                "done": False,
            }
            for piece in pieces
        ]
        if complete:
            lines.append(
                {
                    "model": "test-model",
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": "stop",
                    "prompt_eval_count": 5,
                    "eval_count": 2,
                }
            )
        return ndjson(*lines)
    events: list[tuple[str | None, object]] = [
        (
            None,
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": "test-model",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": piece},
                        "finish_reason": None,
                    }
                ],
            },
        )
        for piece in pieces
    ]
    if complete:
        events.append(
            (
                None,
                {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "model": "test-model",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                },
            )
        )
        events.append(
            (
                None,
                {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "model": "test-model",
                    "choices": [],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2},
                },
            )
        )
        events.append((None, "[DONE]"))
    return sse(*events)


def protocol_of(kind: str) -> str:
    return kind if kind in ("anthropic", "gemini", "ollama") else "openai"


def gemini_bad_key(message: str) -> bytes:
    """Gemini's answer to a bad key, as the real API words it: 400 INVALID_ARGUMENT with
    `details[].reason` API_KEY_INVALID, whatever the message."""
    return json.dumps(
        {
            "error": {
                "code": 400,
                "message": message,
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                        "locale": "en-US",
                        "message": message,
                    },
                ],
            }
        },
        indent=2,
    ).encode()
