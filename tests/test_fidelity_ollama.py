"""The `ollama` package as referee: every body the Ollama wire format builds is exactly what the
SDK's own pydantic types make of it (nothing unknown, nothing mistyped), every reply and stream
line the fake server sends parses as the SDK's `ChatResponse`, and the SDK's client itself holds a
tool-call conversation with the fake server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from ollama_cases import MODEL, REQUESTS, WEATHER, body

from runtime.testing import FakeProviderServer
from runtime.testing.protocols import Answer, OllamaWire

ollama = pytest.importorskip("ollama")
from ollama._types import (  # noqa: E402  # after the importorskip
    ChatRequest,
    ChatResponse,
    Image,
    Message,
    Options,
    Tool,
)


def sdk_body(sent: dict[str, Any]) -> dict[str, Any]:
    """`sent` as the SDK's client would send it: each part through the SDK's type, dumped as the
    client dumps a request. Anything the types do not know is dropped, so differs from `sent`."""
    messages = [
        Message.model_validate(
            {**m, "images": [Image(value=i) for i in m["images"]]} if "images" in m else m
        )
        for m in sent["messages"]
    ]
    tools = [Tool.model_validate(tool) for tool in sent.get("tools", ())]
    request = ChatRequest(
        model=sent["model"],
        messages=messages,
        tools=tools or None,
        stream=sent["stream"],
        format=sent.get("format"),
        options=Options.model_validate(sent["options"]),
    )
    dumped: dict[str, Any] = request.model_dump(exclude_none=True)
    return dumped


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_bodies_are_the_sdk_types(name: str, stream: bool) -> None:
    sent = body(REQUESTS[name], stream=stream)
    assert sdk_body(sent) == sent


def fake_exchange(sent: dict[str, Any], *, stream: bool) -> list[dict[str, Any]]:
    """What the fake server answers `sent` with: the reply, or each stream line."""
    wire = OllamaWire()
    call = wire.parse("/api/chat", {}, {}, json.dumps(sent).encode())
    answer = Answer.for_call(call)
    if not stream:
        return [wire.reply(call, answer, 1)]
    stream_body = wire.stream(call, answer, 1)
    lines = b"".join((*stream_body.prologue, *stream_body.chunks, *stream_body.epilogue))
    return [json.loads(line) for line in lines.splitlines()]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_fake_replies_parse_as_sdk_chat_responses(name: str, stream: bool) -> None:
    replies = [
        ChatResponse.model_validate(r) for r in fake_exchange(body(REQUESTS[name]), stream=stream)
    ]
    assert replies[-1].done is True and replies[-1].done_reason == "stop"
    calls = [call for reply in replies for call in reply.message.tool_calls or ()]
    if name == "multi-turn":  # the last user message names a tool
        assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
            ("get_weather", {"city": "Oslo", "unit": "celsius"})
        ]
    else:
        assert calls == []
        assert "".join(r.message.content or "" for r in replies)


def client(server: FakeProviderServer) -> Any:
    return ollama.AsyncClient(host=server.url_for("ollama"))


async def test_sdk_client_tool_call_round_trip(fake_providers: FakeProviderServer) -> None:
    sdk = client(fake_providers)
    messages: list[Any] = [{"role": "user", "content": "get_weather Paris please"}]
    reply = await sdk.chat(model=MODEL, messages=messages, tools=[WEATHER])
    (call,) = reply.message.tool_calls
    assert (call.function.name, call.function.arguments["city"]) == ("get_weather", "Paris")
    messages += [reply.message, {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]
    final = await sdk.chat(model=MODEL, messages=messages, tools=[WEATHER])
    assert (final.message.content, final.message.tool_calls) == ("results: sunny", None)
    # What the SDK sent reads back as the conversation it is.
    sent = fake_providers.requests("ollama")[-1].json
    read = OllamaWire().parse("/api/chat", {}, {}, json.dumps(sent).encode()).request
    assert read is not None
    assert [m.role for m in read.conversation] == ["user", "assistant", "tool"]
    assert read.conversation[2].tool_call_id == read.conversation[1].tool_calls[0].id


async def test_sdk_client_streams_a_whole_tool_call(fake_providers: FakeProviderServer) -> None:
    sdk = client(fake_providers)
    messages = [{"role": "user", "content": "get_weather Paris please"}]
    parts = [part async for part in await sdk.chat(MODEL, messages, tools=[WEATHER], stream=True)]
    calls = [call for part in parts for call in part.message.tool_calls or ()]
    assert [(c.function.name, c.function.arguments["city"]) for c in calls] == [
        ("get_weather", "Paris")
    ]
    assert parts[-1].done is True


async def test_sdk_client_sees_a_result_without_its_call_refused(
    fake_providers: FakeProviderServer,
) -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    with pytest.raises(ollama.ResponseError) as caught:
        await client(fake_providers).chat(MODEL, messages)
    assert caught.value.status_code == 400
    assert "tool_name" in caught.value.error


async def test_a_bad_tool_schema_is_refused_as_ollama_refuses_it(
    fake_providers: FakeProviderServer,
) -> None:
    """Ollama's decoder refuses `required` that is not a list (the SDK would refuse to send it,
    so the body goes raw); the error is Ollama's, which the SDK reads as a `ResponseError`."""
    bad = {"name": "f", "parameters": {"type": "object", "required": "city"}}
    sent = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "f"}],
        "tools": [{"type": "function", "function": bad}],
    }
    async with httpx.AsyncClient() as http:
        reply = await http.post(fake_providers.url_for("ollama") + "/api/chat", json=sent)
    assert reply.status_code == 400
    assert reply.json() == {
        "error": "json: cannot unmarshal string into Go struct field "
        "ToolFunctionParameters.tools.function.parameters.required of type []string"
    }


def test_the_referee_catches_a_field_ollama_does_not_have() -> None:
    sent = body(REQUESTS["tools"])
    sent["messages"][3]["tool_call_id"] = "call_1"
    assert sdk_body(sent) != sent
