"""The google-genai SDK as referee for the Gemini wire format.

Every body `GeminiWire.build_request` makes for the representative requests validates against the
SDK's own pydantic types (camelCase aliases, unknown fields forbidden) and is the very body the SDK
itself sends for the same content and config; every reply and stream chunk the fake server sends
for them parses as the SDK's `GenerateContentResponse`; and the SDK client, run against the fake
server, gets function calls back and finishes the conversation with their results.

The SDK runs synchronously in a worker thread (its async client is asyncio-only); the fake
server answers on loopback from the trio test.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from test_chat_gemini import CLOCK, REPRESENTATIVE, WEATHER, body_of

from actors.messages import Request
from runtime.testing import FakeProviderServer

genai = pytest.importorskip("google.genai")
types = pytest.importorskip("google.genai.types")

KEY = "AIzaTest0123456789abcdefghijkl"
MODEL = "gemini-pro"
#: The body's top-level fields and the SDK type each one is.
FIELD_TYPES = {
    "systemInstruction": "Content",
    "tools": "Tool",
    "toolConfig": "ToolConfig",
    "generationConfig": "GenerationConfig",
}


def validate_body(body: dict[str, Any]) -> None:
    """Each field of the body as the SDK's type of it (`extra='forbid'` catches a wrong key)."""
    assert set(body) <= {"contents", *FIELD_TYPES}
    for content in body["contents"]:
        types.Content.model_validate(content)
    for field, type_name in FIELD_TYPES.items():
        if field in body:
            values = body[field] if isinstance(body[field], list) else [body[field]]
            for value in values:
                getattr(types, type_name).model_validate(value)


def sdk_client(server: FakeProviderServer) -> Any:
    return genai.Client(
        api_key=KEY,
        http_options=types.HttpOptions(base_url=server.url_for("gemini"), api_version="v1beta"),
    )


def sdk_arguments(body: dict[str, Any]) -> dict[str, Any]:
    """The SDK call that says what `body` says: contents and a GenerateContentConfig."""
    config = dict(body.get("generationConfig") or {})
    for field in ("systemInstruction", "tools", "toolConfig"):
        if field in body:
            config[field] = body[field]
    return {
        "model": MODEL,
        "contents": [types.Content.model_validate(c) for c in body["contents"]],
        "config": types.GenerateContentConfig.model_validate(config),
    }


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
def test_every_body_validates_against_the_sdk_types(name: str) -> None:
    validate_body(body_of(REPRESENTATIVE[name]))
    validate_body(body_of(REPRESENTATIVE[name], stream=True))


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
async def test_the_sdk_sends_the_same_body(fake_providers: FakeProviderServer, name: str) -> None:
    body = body_of(REPRESENTATIVE[name])
    client = sdk_client(fake_providers)
    await trio.to_thread.run_sync(lambda: client.models.generate_content(**sdk_arguments(body)))
    sent = fake_providers.requests("gemini")[-1]
    assert sent.path == f"/v1beta/models/{MODEL}:generateContent"
    assert camel(sent.json) == body


def camel(value: Any) -> Any:
    """Keys in the REST docs' camelCase: the API takes a field's proto name too, and the SDK
    sends some that way (``inlineData.mime_type``). Schema property names are left alone."""
    if isinstance(value, list):
        return [camel(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        head, *rest = key.split("_")
        name = head + "".join(word.title() for word in rest)
        out[name] = item if key in ("properties", "args", "response") else camel(item)
    return out


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
async def test_every_reply_and_chunk_parses_with_the_sdk(
    fake_providers: FakeProviderServer, name: str
) -> None:
    base = fake_providers.url_for("gemini") + f"/v1beta/models/{MODEL}"
    body = body_of(REPRESENTATIVE[name])
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{base}:generateContent", json=body)
        stream = await client.post(f"{base}:streamGenerateContent?alt=sse", json=body)
    assert reply.status_code == 200, reply.text
    parsed = types.GenerateContentResponse.model_validate(reply.json())
    assert parsed.candidates and parsed.candidates[0].content.parts
    chunks = [
        types.GenerateContentResponse.model_validate(json.loads(line[len("data: ") :]))
        for line in stream.text.splitlines()
        if line.startswith("data: ")
    ]
    assert chunks and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    streamed_calls = [c.function_calls for c in chunks if c.function_calls]
    assert [c.name for calls in streamed_calls for c in calls] == [
        c.name for c in parsed.function_calls or []
    ]


async def test_the_sdk_client_runs_a_tool_conversation(
    fake_providers: FakeProviderServer,
) -> None:
    """The SDK asks with tools, gets function calls (no ids, as Gemini sends them), answers
    them by name, and gets the text answer; streamed the same."""
    client = sdk_client(fake_providers)
    tools = [types.Tool.model_validate(t) for t in body_of(REPRESENTATIVE["tools"])["tools"]]
    config = types.GenerateContentConfig(tools=tools, max_output_tokens=200)
    ask = types.Content(role="user", parts=[types.Part(text="get_weather Rome and get_time")])

    def run() -> tuple[Any, Any, list[Any]]:
        first = client.models.generate_content(model=MODEL, contents=[ask], config=config)
        answers = types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name=call.name, response={"output": "done"})
                for call in first.function_calls
            ],
        )
        history = [ask, first.candidates[0].content, answers]
        second = client.models.generate_content(model=MODEL, contents=history, config=config)
        streamed = list(
            client.models.generate_content_stream(model=MODEL, contents=[ask], config=config)
        )
        return first, second, streamed

    first, second, streamed = await trio.to_thread.run_sync(run)
    assert [(c.name, c.args) for c in first.function_calls] == [
        ("get_weather", {"city": "Rome", "unit": "C"}),
        ("get_time", {"zone": "example"}),
    ]
    assert all(c.id is None for c in first.function_calls)
    assert second.text == "results: done done"
    calls = [c.name for chunk in streamed for c in chunk.function_calls or []]
    assert calls == [WEATHER.name, CLOCK.name]
    # What the SDK sent reads back as the conversation it meant.
    request = fake_providers.requests("gemini")[1].json
    from actors.adapters.gemini import GeminiWire

    read = GeminiWire().read_request(request)
    assert [m.role for m in read.conversation] == ["user", "assistant", "tool", "tool"]
    assert isinstance(read, Request) and read.tools == (WEATHER, CLOCK)
