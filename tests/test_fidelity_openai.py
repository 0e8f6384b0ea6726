"""The official `openai` package as referee for the OpenAI wire: every body `build_request` makes
validates against the SDK's request types with nothing left over, every reply and stream chunk the
fake server sends for them parses with its response types with nothing unknown, and the SDK's own
client holds a conversation with tools and structured output against the fake server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai_chat_support import MODEL, TIME, WEATHER, body_for, representative_requests

from actors.messages import Request
from runtime.testing import FakeProviderServer

openai = pytest.importorskip("openai")

import pydantic  # noqa: E402  (the SDK's own dependency)
from openai.types.chat import ChatCompletion, ChatCompletionChunk  # noqa: E402
from openai.types.chat.completion_create_params import (  # noqa: E402
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)

REQUESTS = representative_requests()
NON_STREAMING = pydantic.TypeAdapter(CompletionCreateParamsNonStreaming)
STREAMING = pydantic.TypeAdapter(CompletionCreateParamsStreaming)


def _materialised(value: Any) -> Any:
    """A validated value with pydantic's lazy iterables (the SDK types use `Iterable[...]`)
    drawn out, so it compares with the body: anything the types do not know is gone from it."""
    if isinstance(value, dict):
        return {key: _materialised(item) for key, item in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__ == "ValidatorIterator":
        return [_materialised(item) for item in value]
    return value


def _assert_valid_request(body: dict[str, Any]) -> None:
    adapter = STREAMING if body.get("stream") else NON_STREAMING
    assert _materialised(adapter.validate_python(body)) == body


def _models(value: Any) -> Iterator[Any]:
    if isinstance(value, pydantic.BaseModel):
        yield value
        for name in type(value).model_fields:
            yield from _models(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            yield from _models(item)


def _assert_parses(model: Any, data: dict[str, Any]) -> Any:
    """`data` as the SDK's `model`, every field of it known to the SDK."""
    parsed = model.model_validate(data)
    unknown = [(type(m).__name__, m.model_extra) for m in _models(parsed) if m.model_extra]
    assert not unknown
    return parsed


BODIES = {f"{name}-{kind}": (name, kind) for name in REQUESTS for kind in ("complete", "stream")}


@pytest.mark.parametrize("case", sorted(BODIES))
def test_every_request_body_is_an_sdk_request(case: str) -> None:
    name, kind = BODIES[case]
    _assert_valid_request(body_for(REQUESTS[name], stream=kind == "stream"))


@pytest.mark.parametrize("model", ["o3", "gpt-5-mini", "o1-mini"])
def test_reasoning_model_bodies_are_sdk_requests(model: str) -> None:
    body = body_for(REQUESTS["tool_turns"], model=model)
    _assert_valid_request(body)
    assert "max_completion_tokens" in body


async def _post(server: FakeProviderServer, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        reply = await client.post(server.url_for("openai") + "/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    return reply


@pytest.mark.parametrize("name", sorted(REQUESTS))
async def test_every_fake_reply_is_an_sdk_chat_completion(
    fake_providers: FakeProviderServer, name: str
) -> None:
    reply = await _post(fake_providers, body_for(REQUESTS[name]))
    completion = _assert_parses(ChatCompletion, reply.json())
    choice = completion.choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls"
        assert all(json.loads(call.function.arguments) for call in choice.message.tool_calls)
    else:
        assert choice.message.content


@pytest.mark.parametrize("name", sorted(REQUESTS))
async def test_every_fake_stream_chunk_is_an_sdk_chunk(
    fake_providers: FakeProviderServer, name: str
) -> None:
    reply = await _post(fake_providers, body_for(REQUESTS[name], stream=True))
    events = [line[6:] for line in reply.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [_assert_parses(ChatCompletionChunk, json.loads(event)) for event in events[:-1]]
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-2].choices[0].finish_reason in ("stop", "tool_calls")


def _client(server: FakeProviderServer) -> Any:
    return openai.AsyncOpenAI(
        base_url=server.url_for("openai"), api_key="sk-test-openai", max_retries=0
    )


ASK: list[Any] = [{"role": "user", "content": "get_weather Quito and get_time Quito"}]


async def test_the_sdk_client_holds_a_conversation_with_tools(
    fake_providers: FakeProviderServer,
) -> None:
    client = _client(fake_providers)
    first = await client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER, TIME], parallel_tool_calls=True
    )
    message = first.choices[0].message
    assert [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("get_weather", {"city": "Quito", "unit": "celsius"}),
        ("get_time", {"zone": "Quito"}),
    ]
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": f"{call.function.name} done"}
        for call in message.tool_calls
    ]
    history = [*ASK, message.model_dump(exclude_none=True), *results]
    # The SDK's own dump of the assistant message reads back as the runtime's message.
    assert Request(messages=history).conversation[1].tool_calls[0].id == message.tool_calls[0].id
    second = await client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER])
    assert second.choices[0].message.content == "results: get_weather done get_time done"
    assert second.choices[0].finish_reason == "stop"
    await client.close()


async def test_the_sdk_stream_helper_assembles_streamed_tool_calls(
    fake_providers: FakeProviderServer,
) -> None:
    client = _client(fake_providers)
    async with client.chat.completions.stream(
        model=MODEL, messages=ASK, tools=[WEATHER, TIME]
    ) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == {"city": "Quito", "unit": "celsius"}
    assert final.choices[0].finish_reason == "tool_calls"
    await client.close()


async def test_the_sdk_parses_structured_output(fake_providers: FakeProviderServer) -> None:
    class CityFacts(pydantic.BaseModel):
        city: str
        population: int

    client = _client(fake_providers)
    reply = await client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Lisbon facts"}],
        response_format=CityFacts,
    )
    parsed = reply.choices[0].message.parsed
    assert isinstance(parsed, CityFacts)
    assert (parsed.city, parsed.population) == ("Lisbon", 1)
    (sent,) = [r.json for r in fake_providers.requests("openai")]
    assert sent["response_format"]["json_schema"]["strict"] is True
    await client.close()


def test_the_referee_notices_what_the_sdk_does_not_know() -> None:
    body = body_for(REQUESTS["tool_turns"])
    body["messages"][3]["name"] = "get_weather"  # a tool message has no name
    with pytest.raises(AssertionError):
        _assert_valid_request(body)
    reply = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hi", "tool_use": []},
            }
        ],
    }
    with pytest.raises(AssertionError):
        _assert_parses(ChatCompletion, reply)
