"""The conversation model: what `Request` accepts, what it refuses (naming the field), and the
typed stream events and reply message, end to end on simulated providers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import make_config

import runtime
from actors.chat import ImagePart, Message, TextPart, ToolCall
from runtime.embed import open_runtime

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def ask(text: str, **fields: Any) -> runtime.Request:
    return runtime.Request(messages=[{"role": "user", "content": text}], **fields)


def test_prompt_and_system_are_a_one_turn_conversation() -> None:
    short = runtime.Request(prompt="hi", system="be brief")
    assert short.conversation == (Message("system", "be brief"), Message("user", "hi"))
    long = runtime.Request(messages=[{"role": "user", "content": "hi"}], system="be brief")
    assert long.conversation == short.conversation
    assert long.prompt is None and long.last_user_text == "hi"
    assert long.instructions == "be brief"
    assert long.cache_key() == short.cache_key()


def test_openai_shaped_messages_are_taken_as_they_come() -> None:
    request = runtime.Request(
        messages=[
            {"role": "developer", "content": "answer in French"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            },
        ]
    )
    user = request.conversation[1]
    assert user.content == (
        TextPart("what is this?"),
        ImagePart(data=PIXEL, media_type="image/png"),
        ImagePart(url="https://example.com/a.jpg"),
    )
    assert user.to_openai()["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PIXEL}"


def test_a_tool_conversation_round_trips_through_the_openai_shape() -> None:
    turns: list[dict[str, Any]] = [
        {"role": "user", "content": "weather in Paris and the time?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
    ]
    request = runtime.Request(messages=turns, tools=[WEATHER, TIME])
    assert [m.to_openai() for m in request.conversation] == turns
    assert request.conversation[1].tool_calls[0].args == {"city": "Paris"}
    assert [t.name for t in request.tools] == ["get_weather", "get_time"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "prompt=a request needs prompt= or messages="),
        ({"prompt": "x", "messages": [{"role": "user", "content": "x"}]}, "prompt=give either"),
        ({"messages": "hello"}, "messages='hello' is not a list of messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role='robot' is not one of"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content=must not be empty"),
        ({"messages": [{"role": "user", "content": "x", "colour": 1}]}, "messages[0].colour="),
        (
            {"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "messages[0].content[0].type='audio' is not one of",
        ),
        (
            {"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}}]}]},
            "messages[0].content[0].media_type='image/bmp' is not one of",
        ),
        (
            {"messages": [{"role": "user", "content": "x"},
                          {"role": "tool", "tool_call_id": "call_9", "content": "42"}]},
            "messages[1].tool_call_id='call_9' answers no tool call",
        ),
        (
            {"messages": [{"role": "user", "content": "x"},
                          {"role": "assistant", "tool_calls": [
                              {"id": "c1", "function": {"name": "f", "arguments": "{"}}]}]},
            "messages[1].tool_calls[0].arguments='{' is not valid JSON",
        ),
        (
            {"messages": [{"role": "user", "content": "x"},
                          {"role": "assistant", "tool_calls": [
                              {"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
                          {"role": "user", "content": "and?"}]},
            "messages[2]=tool call(s) c1 have no tool message",
        ),
        ({"prompt": "x", "tools": [{"name": "bad name"}]}, "tools[0].name='bad name'"),
        ({"prompt": "x", "tools": [WEATHER, WEATHER]}, "tools='get_weather' is defined twice"),
        ({"prompt": "x", "tool_choice": "always"}, "tool_choice='always' is not one of"),
        ({"prompt": "x", "tool_choice": "required"}, "tool_choice='required' needs at least one"),
        (
            {"prompt": "x", "tools": [WEATHER], "tool_choice": {"type": "function",
                                                               "function": {"name": "nope"}}},
            "tool_choice='nope' is not one of the request's tools",
        ),
        ({"prompt": "x", "response_format": {"type": "yaml"}}, "response_format.type='yaml'"),
        ({"prompt": "x", "response_format": {"type": "json_schema"}}, "response_format.schema="),
        ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop=at most 4 sequences"),
        ({"prompt": "x", "top_p": 1.5}, "top_p=1.5 must be between 0 and 1"),
        ({"prompt": "x", "seed": 1.5}, "seed=1.5 is not an integer"),
        ({"prompt": "x", "presence_penalty": 3}, "presence_penalty=3.0 must be between -2 and 2"),
        ({"prompt": "x", "parallel_tool_calls": "no"}, "parallel_tool_calls='no' is not true"),
        ({"prompt": "x", "model": "a", "models": ["b"]}, "models=give either model= or models="),
        ({"prompt": "x", "models": "gpt-4o"}, "models='gpt-4o' is not a list"),
        ({"prompt": "x", "metadata": {"k": 1}}, "metadata=entry 'k'"),
    ],
)
def test_a_bad_request_is_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as error:
        runtime.Request(**fields)
    assert message in str(error.value)


def test_the_cache_key_tells_apart_what_changes_the_answer() -> None:
    base = ask("hello")
    assert base.cache_key() == ask("  HELLO ").cache_key()
    different = [
        ask("hello", tools=[WEATHER]),
        ask("hello", response_format="json_object"),
        ask("hello", seed=1),
        ask("hello", stop="x"),
        ask("hello", model="gpt-4o"),
        runtime.Request(messages=[{"role": "user", "content": "hi"},
                                  {"role": "assistant", "content": "hey"},
                                  {"role": "user", "content": "hello"}]),
        runtime.Request(messages=[{"role": "user", "content": [
            "hello", {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]),
    ]
    keys = {request.cache_key() for request in different}
    assert len(keys) == len(different) and base.cache_key() not in keys


async def test_tool_calls_come_back_as_one_message_and_the_conversation_goes_on(
    autojump_clock: Any,
) -> None:
    async with open_runtime(make_config()) as rt:
        first = await rt.complete(ask("get_weather Paris then get_time UTC", tools=[WEATHER, TIME]))
        assert first.finish_reason == "tool_calls"
        assert [(c.name, c.args) for c in first.tool_calls] == [
            ("get_weather", {"city": "Paris"}),
            ("get_time", {"tz": "UTC"}),
        ]
        assert first.message == Message("assistant", (), first.tool_calls)
        assert len({c.id for c in first.tool_calls}) == 2
        results = [
            Message("tool", text, tool_call_id=call.id)
            for call, text in zip(first.tool_calls, ["sunny", "noon"], strict=True)
        ]
        conversation = [Message("user", "get_weather Paris then get_time UTC"), first.message]
        second = await rt.complete(
            runtime.Request(messages=[*conversation, *results], tools=[WEATHER, TIME])
        )
    assert second.text == "results: sunny noon"
    assert second.finish_reason == "stop" and not second.tool_calls


async def test_stream_events_carry_tool_calls_and_end_with_the_whole_reply(
    autojump_clock: Any,
) -> None:
    async with open_runtime(make_config()) as rt:
        async with rt.stream(ask("get_weather Oslo", tools=[WEATHER])) as stream:
            events = [event async for event in stream.events()]
        async with rt.stream(ask("plain words please")) as stream:
            texts = [text async for text in stream]
            assert stream.reply is not None and "".join(texts) == stream.reply.text
    *deltas, done = events
    assert isinstance(done, runtime.ReplyDone)
    assert [type(d) for d in deltas] == [runtime.ToolCallDelta]
    call, delta = done.message.tool_calls[0], deltas[0]
    assert isinstance(delta, runtime.ToolCallDelta)
    assert (delta.id, delta.name, delta.arguments) == (call.id, "get_weather", call.arguments)
    assert done.reply.finish_reason == "tool_calls" and done.usage.output_tokens > 0


async def test_a_json_schema_request_gets_json_matching_the_schema(autojump_clock: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"rate": {"type": "number"}, "country": {"type": "string"}},
        "required": ["rate", "country"],
    }
    async with open_runtime(make_config()) as rt:
        reply = await rt.complete(
            ask("VAT for books", response_format={"type": "json_schema",
                                                  "json_schema": {"name": "vat", "schema": schema}})
        )
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(reply.text), schema)


async def test_replies_with_tool_calls_never_reach_the_last_resort_cache(
    autojump_clock: Any,
) -> None:
    async with open_runtime(make_config()) as rt:
        await rt.complete(ask("get_weather Rome", tools=[WEATHER]))
        await rt.complete(ask("a plain question"))
        cache = rt.cascade._cache
        assert cache is not None
        assert cache.get(ask("a plain question")) is not None
        assert cache.get(ask("get_weather Rome", tools=[WEATHER])) is None


def test_tool_call_arguments_accept_an_object_and_keep_json_text() -> None:
    call = ToolCall("c1", "f", {"a": [1, 2]})
    assert call.arguments == '{"a":[1,2]}' and call.args == {"a": [1, 2]}
