"""The official `anthropic` SDK as referee for the Anthropic wire format: every body
`build_request` makes validates against the SDK's request types (no field the SDK does not know),
every reply and stream event the fake server sends for them parses with the SDK's response types,
and the SDK's own client holds a tool conversation with the fake server, complete and streamed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from test_chat_anthropic import CONVERSATION, PERSON, ROUND_TRIPS, TIME, WEATHER, body

from actors.adapters.sse import SSEDecoder
from actors.chat import Message, ToolCall
from actors.messages import Request
from runtime.testing import FakeProviderServer

anthropic = pytest.importorskip("anthropic")
pydantic = pytest.importorskip("pydantic")

from anthropic.types import message_create_params  # noqa: E402

#: Kept alive for the whole module: the SDK's iterables validate lazily, through the adapter.
PARAMS = {
    False: pydantic.TypeAdapter(message_create_params.MessageCreateParamsNonStreaming),
    True: pydantic.TypeAdapter(message_create_params.MessageCreateParamsStreaming),
}
STREAM_EVENT = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
#: Sampling fields the API still takes on the models that have them, but this SDK's request
#: type no longer lists (it sends them as extra body fields).
UNLISTED = frozenset({"temperature", "top_p"}) - set(
    message_create_params.MessageCreateParamsBase.__annotations__
)

ANSWERED = (
    ToolCall("toolu_w", "get_weather", '{"city":"Oslo"}'),
    ToolCall("toolu_t", "get_time", "{}"),
)
#: The representative requests: the round trips, plus what only goes one way.
REQUESTS = [
    *ROUND_TRIPS,
    Request(
        messages=[Message("developer", "rules"), *CONVERSATION],
        tools=[WEATHER, TIME],
        stop=["END"],
        top_p=0.9,
        seed=1,
        presence_penalty=0.1,
        frequency_penalty=0.1,
        user="u",
        metadata={"k": "v"},
    ),
    Request("hi", system="Be brief.", max_tokens=20),
    Request(
        messages=[
            Message("user", "get_weather Oslo"),
            Message("assistant", "", ANSWERED),
            *(Message("tool", f"r{n}", tool_call_id=c.id) for n, c in enumerate(ANSWERED)),
        ],
        tools=[WEATHER, TIME],
    ),
    Request("get_weather Paris and get_time", tools=[WEATHER, TIME], parallel_tool_calls=False),
    Request(
        "describe Ada",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON},
        },
        max_tokens=2,
    ),
]


def materialized(value: Any) -> Any:
    """`value` with the SDK's lazily validated iterables consumed (validating them)."""
    if isinstance(value, dict):
        return {key: materialized(item) for key, item in value.items()}
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    if isinstance(value, Iterable):
        return [materialized(item) for item in value]
    raise TypeError(f"{value!r} is not a JSON value")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("request_", REQUESTS)
def test_every_body_validates_against_the_sdk_request_types(
    request_: Request, stream: bool
) -> None:
    sent = body(request_, stream=stream)
    validated = materialized(PARAMS[stream].validate_python(sent))
    # The SDK's TypedDicts drop fields they do not know: what is left must be the whole body.
    assert validated == {key: value for key, value in sent.items() if key not in UNLISTED}


def test_an_unknown_field_is_caught() -> None:
    sent = body(REQUESTS[0])
    sent["messages"][0]["content"] = [{"type": "text", "text": "hi", "colour": "red"}]
    assert materialized(PARAMS[False].validate_python(sent)) != sent


async def post(server: FakeProviderServer, sent: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            server.url_for("anthropic") + "/v1/messages",
            json=sent,
            headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
        )
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("request_", REQUESTS)
async def test_every_fake_reply_parses_with_the_sdk(
    request_: Request, fake_providers: FakeProviderServer
) -> None:
    response = await post(fake_providers, body(request_))
    message = anthropic.types.Message.model_validate(response.json())
    assert message.type == "message"
    calls = [block for block in message.content if block.type == "tool_use"]
    assert (message.stop_reason == "tool_use") == bool(calls)
    assert message.stop_reason in ("tool_use", "end_turn", "max_tokens")


@pytest.mark.parametrize("request_", REQUESTS)
async def test_every_fake_stream_event_parses_with_the_sdk(
    request_: Request, fake_providers: FakeProviderServer
) -> None:
    response = await post(fake_providers, body(request_, stream=True))
    decoder = SSEDecoder()
    # The SDK skips `ping` (keep-alive) events before parsing, as its stream does.
    items = [i for i in (*decoder.feed(response.content), *decoder.close()) if i.event != "ping"]
    events = [STREAM_EVENT.validate_python(json.loads(item.data)) for item in items]
    assert [item.event for item in items] == [event.type for event in events]
    assert (events[0].type, events[-1].type) == ("message_start", "message_stop")


def sdk_client(server: FakeProviderServer) -> Any:
    return anthropic.AsyncAnthropic(
        base_url=server.url_for("anthropic"), api_key="sk-ant-test", max_retries=0
    )


SDK_TOOLS = [
    {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]},  # type: ignore[index]
    {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
]
QUESTION = {"role": "user", "content": "get_weather Paris and get_time please"}


async def test_the_sdk_client_holds_a_tool_conversation(
    fake_providers: FakeProviderServer,
) -> None:
    client = sdk_client(fake_providers)
    first = await client.messages.create(
        model="claude-sonnet", max_tokens=100, messages=[QUESTION], tools=SDK_TOOLS
    )
    assert first.stop_reason == "tool_use"
    uses = [block for block in first.content if block.type == "tool_use"]
    assert [(use.name, use.input) for use in uses] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    results = [
        {"type": "tool_result", "tool_use_id": use.id, "content": f"{use.name} done"}
        for use in uses
    ]
    history = [
        QUESTION,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": results},
    ]
    second = await client.messages.create(
        model="claude-sonnet", max_tokens=100, messages=history, tools=SDK_TOOLS
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "results: get_weather done get_time done"
    await client.close()


async def test_the_sdk_accumulates_a_streamed_tool_call(
    fake_providers: FakeProviderServer,
) -> None:
    client = sdk_client(fake_providers)
    async with client.messages.stream(
        model="claude-sonnet", max_tokens=100, messages=[QUESTION], tools=SDK_TOOLS
    ) as stream:
        final = await stream.get_final_message()
    uses = [block for block in final.content if block.type == "tool_use"]
    assert [(use.name, use.input) for use in uses] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    assert final.stop_reason == "tool_use"
    await client.close()
