"""One conversation, every wire format, the same reply: property tests over generated
conversations (roles, text and image parts, tools, tool calls and results).

For each wire format, a generated request goes out as the adapter builds it, is read back by the
fake server as that provider's API would read it, is answered by the shared convention
(`actors.synthetic`) in the provider's own reply and stream shapes, and is parsed back by the
adapter. The reply must be the one the convention gives for the original request, whatever the
wire: the same text and the same tool calls (names and arguments); ids as the provider sent them.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from chat_strategies import conversations
from hypothesis import given, settings
from hypothesis import strategies as st

import runtime
from actors.adapters.anthropic import AnthropicWire
from actors.adapters.gemini import GeminiWire
from actors.adapters.ollama import OllamaWire
from actors.adapters.openai import OpenAIWire
from actors.adapters.wire import RequestShape, StreamState, WireFormat
from actors.synthetic import synthetic_answer
from runtime.testing.protocols import Answer, wire_for

WIRES: dict[str, tuple[WireFormat, str, str]] = {
    # name: (adapter's wire format, the path prefix of its mount, a model)
    "openai": (OpenAIWire(), "/v1", "gpt-4o"),
    "anthropic": (AnthropicWire(), "", "claude-sonnet-4"),
    "gemini": (GeminiWire(), "", "gemini-2.5-pro"),
    "ollama": (OllamaWire(), "", "llama3.1"),
}
SHAPE = RequestShape(temperature=0.7)
HEADERS = {"anthropic-version": "2023-06-01"}


def through(name: str, request: runtime.Request, *, stream: bool) -> tuple[Any, Any]:
    """The request sent, read by the fake server, answered; the server's call and answer."""
    wire, prefix, model = WIRES[name]
    sent = wire.build_request(request, model, SHAPE, stream=stream)
    server = wire_for(name)
    call = server.parse(
        prefix + sent.path, dict(sent.params or {}), HEADERS, json.dumps(sent.body).encode()
    )
    return call, Answer.for_call(call)


def calls_of(completion: Any, request: runtime.Request) -> list[tuple[str, dict[str, Any]]]:
    """The calls as the shared adapter delivers them: only the first when the request allows
    one at a time (Gemini and Ollama cannot be told so; see `HTTPAdapter._finished`)."""
    calls = [(call.name, call.args) for call in completion.tool_calls]
    return calls[:1] if request.parallel_tool_calls is False else calls


def requests(name: str) -> Any:
    """Conversations `name` can express: Ollama cannot force a tool call."""
    return conversations(forced_choice=name != "ollama")


def expected(request: runtime.Request) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """The convention's answer (words, not their spacing: the fake server streams words)."""
    answer = synthetic_answer(request, lambda n: f"id{n}")
    return words(answer.text), [(call.name, call.args) for call in answer.tool_calls]


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("name", sorted(WIRES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_whole_reply_is_the_same_on_every_wire(name: str, data: st.DataObject) -> None:
    request = data.draw(requests(name))
    request = attrs.evolve(request, max_tokens=4096)
    wire, _, model = WIRES[name]
    call, answer = through(name, request, stream=False)
    completion = wire.parse_reply(wire_for(name).reply(call, answer, 1), model)
    assert (words(completion.text), calls_of(completion, request)) == expected(request)


@pytest.mark.parametrize("name", sorted(WIRES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_streamed_reply_is_the_same_on_every_wire(name: str, data: st.DataObject) -> None:
    request = data.draw(requests(name))
    request = attrs.evolve(request, max_tokens=4096)
    wire, _, model = WIRES[name]
    call, answer = through(name, request, stream=True)
    body = wire_for(name).stream(call, answer, 1)
    decoder, state = wire.stream_decoder(), StreamState(model)
    for chunk in (*body.prologue, *body.chunks, *body.epilogue):
        for item in decoder.feed(chunk):
            wire.parse_event(item, state)
    for item in decoder.close():
        wire.parse_event(item, state)
    completion = state.completion(name, wire.end_marker)
    assert (words(completion.text), calls_of(completion, request)) == expected(request)


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
@settings(max_examples=30, deadline=None)
@given(request=conversations())
def test_wires_with_ids_keep_the_conversation_s_ids(name: str, request: runtime.Request) -> None:
    call, _ = through(name, request, stream=False)
    sent_ids = [c.id for m in call.request.conversation for c in m.tool_calls]
    assert sent_ids == [c.id for m in request.conversation for c in m.tool_calls]
