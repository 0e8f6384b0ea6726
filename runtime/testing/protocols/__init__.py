"""The four provider wire formats the fake server speaks, byte for byte where adapters care.

Each `Wire` turns a request body into a `Call`, and a deterministic `Answer` into the provider's
own reply shapes: the JSON reply, the stream (SSE or NDJSON) split into prologue, one event per
text chunk, and epilogue, and the provider's real error bodies. One module per wire format;
`base` holds what they share. The server applies faults on top; nothing here sleeps or does I/O.
"""

from __future__ import annotations

from actors.kinds import kind_named
from runtime.testing.protocols.anthropic import AnthropicWire
from runtime.testing.protocols.base import (
    CREATED,
    CREATED_AT,
    KINDS,
    OPENAI_FORMAT_KINDS,
    Answer,
    Call,
    Headers,
    Quota,
    Reason,
    StreamBody,
    Wire,
    WireError,
    count_tokens,
    dump,
    reason_for_status,
    reply_chunks,
)
from runtime.testing.protocols.gemini import GeminiWire
from runtime.testing.protocols.ollama import OllamaWire
from runtime.testing.protocols.openai import OpenAIWire

__all__ = [
    "CREATED",
    "CREATED_AT",
    "KINDS",
    "OPENAI_FORMAT_KINDS",
    "Answer",
    "AnthropicWire",
    "Call",
    "GeminiWire",
    "Headers",
    "OllamaWire",
    "OpenAIWire",
    "Quota",
    "Reason",
    "StreamBody",
    "Wire",
    "WireError",
    "count_tokens",
    "dump",
    "reason_for_status",
    "reply_chunks",
    "wire_for",
]


def wire_for(kind: str) -> Wire:
    wires: dict[str | None, type[Wire]] = {
        "openai": OpenAIWire,
        "anthropic": AnthropicWire,
        "gemini": GeminiWire,
        "ollama": OllamaWire,
    }
    wire = kind_named(kind).wire if kind in KINDS else None
    if wire not in wires:
        raise ValueError(f"kind={kind!r} is not one of: {', '.join(sorted(KINDS))}")
    return wires[wire]()
