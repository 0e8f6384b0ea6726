"""The full chat API on Ollama's /api/chat: conversations, images, tools, formats and sampling
options into the body and back (`read_request`), tool calls out of replies and streams, and the
whole round trip through the runtime against the fake provider server."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest
from adapter_support import build, ndjson
from chat_support import one_provider_config
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ollama_cases import (
    CITY_SCHEMA,
    JPEG,
    MODEL,
    PNG,
    REQUESTS,
    TIME,
    WEATHER,
    WIRE,
    body,
    numbered_ids,
)

from actors.adapters.wire import RequestShape, WireError
from actors.chat import ImagePart, Message, TextPart, ToolCall
from actors.errors import FailureKind
from actors.messages import (
    Completion,
    ReplyDone,
    Request,
    StreamDone,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from actors.validation import FieldError
from runtime.embed import open_runtime
from runtime.testing import FakeProviderServer
from runtime.testing.protocols import OllamaWire as FakeOllama
from runtime.testing.protocols import WireError as FakeWireError

# -- build_request ------------------------------------------------------------------------------


def test_plain_prompt_body_is_unchanged() -> None:
    request = Request("Tell me a joke", system="Be brief.", max_tokens=64)
    assert body(request, shape=RequestShape(temperature=0.25)) == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me a joke"},
        ],
        "stream": False,
        "options": {"num_predict": 64, "temperature": 0.25},
    }


def test_conversation_with_tool_calls_and_results() -> None:
    sent = body(REQUESTS["tools"], stream=True)
    assert sent["messages"] == [
        {"role": "system", "content": "Use the tools."},
        {"role": "user", "content": "get_weather Paris and get_time Europe/Paris"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_time", "arguments": {"zone": "Europe/Paris"}}},
            ],
        },
        # Results name the function they answer, found from the call's id.
        {"role": "tool", "content": "09:00", "tool_name": "get_time"},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": WEATHER["function"]["parameters"],
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": TIME["function"]["parameters"]},
        },
    ]
    assert sent["stream"] is True
    assert sent["options"] == {"num_predict": 500, "temperature": 0.5}


def test_images_are_base64_lists_on_the_message() -> None:
    assert body(REQUESTS["images"])["messages"] == [
        {"role": "user", "content": "What are these?", "images": [PNG, JPEG]}
    ]


def test_an_image_url_is_unsupported() -> None:
    request = Request(
        messages=[
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}],
            }
        ]
    )
    with pytest.raises(WireError) as caught:
        body(request)
    assert caught.value.kind is FailureKind.UNSUPPORTED


@pytest.mark.parametrize(("choice", "sends_tools"), [(None, True), ("auto", True), ("none", False)])
def test_tool_choice_auto_sends_the_tools_and_none_leaves_them_out(
    choice: str | None, sends_tools: bool
) -> None:
    request = Request(prompt="get_weather Paris", tools=[WEATHER], tool_choice=choice)
    sent = body(request)
    assert ("tools" in sent) is sends_tools
    assert "tool_choice" not in sent


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_a_forced_tool_choice_is_unsupported(choice: Any) -> None:
    request = Request(prompt="weather?", tools=[WEATHER], tool_choice=choice)
    with pytest.raises(WireError) as caught:
        body(request)
    assert caught.value.kind is FailureKind.UNSUPPORTED


def test_response_formats() -> None:
    assert body(REQUESTS["json-object"])["format"] == "json"
    assert body(REQUESTS["json-schema"])["format"] == CITY_SCHEMA
    assert "format" not in body(Request(prompt="hi", response_format="text"))


def test_sampling_options() -> None:
    assert body(REQUESTS["json-schema"])["options"] == {
        "num_predict": 500,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n\n", "END"],
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
    }


def test_no_temperature_for_a_model_that_takes_none() -> None:
    assert body(Request(prompt="hi"), shape=RequestShape())["options"] == {"num_predict": 500}


def test_user_and_metadata_are_hints_ollama_has_no_field_for() -> None:
    plain = body(Request(prompt="hi"))
    assert body(Request(prompt="hi", user="u-1", metadata={"team": "a"})) == plain


def test_developer_messages_are_system_messages() -> None:
    request = Request(
        messages=[{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "hi"}]
    )
    assert body(request)["messages"][0] == {"role": "system", "content": "Be terse."}


def test_system_role_user_folds_the_instructions_into_the_first_user_message() -> None:
    sent = body(REQUESTS["plain-system"], shape=RequestShape(system_role="user"))
    assert sent["messages"] == [{"role": "user", "content": "Be brief.\n\nTell me a joke"}]


# -- read_request -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_read_request_inverts_build_request(name: str) -> None:
    request = REQUESTS[name]
    assert WIRE.read_request(body(request), make_id=numbered_ids()) == request


def test_read_request_makes_ids_and_pairs_results_by_tool_name() -> None:
    read = WIRE.read_request(body(REQUESTS["tools"]))
    assistant, time_result, weather_result = read.conversation[2:]
    weather, time = assistant.tool_calls
    assert weather.id != time.id
    assert weather.id.startswith("call_")
    assert (time_result.tool_call_id, weather_result.tool_call_id) == (time.id, weather.id)


def test_read_request_takes_a_tool_result_without_a_name_for_the_oldest_open_call() -> None:
    sent = body(REQUESTS["tools"])
    for message in sent["messages"]:
        message.pop("tool_name", None)
    read = WIRE.read_request(sent, make_id=numbered_ids())
    assert [m.tool_call_id for m in read.conversation[3:]] == ["call_0", "call_1"]


def test_read_request_refuses_a_result_answering_no_call() -> None:
    sent = body(Request(prompt="hi"))
    sent["messages"].append({"role": "tool", "content": "sunny", "tool_name": "get_weather"})
    with pytest.raises(FieldError) as caught:
        WIRE.read_request(sent)
    assert caught.value.field == "messages[1].tool_name"


def test_read_request_refuses_images_that_are_not_base64() -> None:
    sent = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "x", "images": ["not base64!"]}],
    }
    with pytest.raises(FieldError) as caught:
        WIRE.read_request(sent)
    assert caught.value.field == "messages[0].images[0]"


# -- replies and streams ------------------------------------------------------------------------

CALLS_REPLY = {
    "model": MODEL,
    "created_at": "2023-11-14T22:13:20Z",
    "message": {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "get_time", "arguments": {"zone": "UTC"}}},
        ],
    },
    "done": True,
    "done_reason": "stop",
    "prompt_eval_count": 12,
    "eval_count": 9,
}


def adapter_answering(content: bytes) -> Any:
    async def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=content)

    return build("ollama", handler, model=MODEL)


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_reply_with_tool_calls() -> None:
    adapter = adapter_answering(json.dumps(CALLS_REPLY).encode())
    completion = await adapter.complete(REQUESTS["multi-turn"], MODEL)
    weather, time = completion.tool_calls
    assert (weather.name, weather.args, time.name, time.args) == (
        "get_weather",
        {"city": "Paris"},
        "get_time",
        {"zone": "UTC"},
    )
    assert weather.id.startswith("call_") and weather.id != time.id
    assert (completion.finish_reason, completion.raw_finish_reason) == ("tool_calls", "stop")
    assert completion.usage == Usage(input_tokens=12, output_tokens=9)
    await adapter.aclose()


async def test_a_tool_call_id_the_server_sends_is_kept() -> None:
    reply = json.loads(json.dumps(CALLS_REPLY))
    reply["message"]["tool_calls"][0]["id"] = "call_abc"
    completion = WIRE.parse_reply(reply, MODEL)
    assert completion.tool_calls[0].id == "call_abc"


async def test_parallel_tool_calls_false_keeps_the_first_call() -> None:
    adapter = adapter_answering(json.dumps(CALLS_REPLY).encode())
    request = Request(
        prompt="get_weather Paris get_time", tools=[WEATHER, TIME], parallel_tool_calls=False
    )
    completion = await adapter.complete(request, MODEL)
    assert [call.name for call in completion.tool_calls] == ["get_weather"]
    await adapter.aclose()


def line(
    content: str = "", calls: list[dict[str, Any]] | None = None, **final: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    return {"model": MODEL, "message": message, "done": bool(final), **final}


STREAM = ndjson(
    line("Let me "),
    line("check."),
    # Ollama sends each call whole; two lines here, one call each.
    line(calls=[{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]),
    line(calls=[{"function": {"name": "get_time", "arguments": {"zone": "UTC"}}}]),
    line(done_reason="stop", prompt_eval_count=12, eval_count=9),
)


async def test_stream_with_tool_calls() -> None:
    adapter = adapter_answering(STREAM)
    events = await collect(adapter.stream(REQUESTS["multi-turn"], MODEL))
    *deltas, done = events
    assert deltas[:2] == [TextDelta("Let me "), TextDelta("check.")]
    weather, time = deltas[2:]
    assert isinstance(weather, ToolCallDelta) and isinstance(time, ToolCallDelta)
    assert (weather.index, weather.name, weather.arguments) == (
        0,
        "get_weather",
        '{"city":"Paris"}',
    )
    assert (time.index, time.name, time.arguments) == (1, "get_time", '{"zone":"UTC"}')
    assert isinstance(done, StreamDone)
    assert done.completion == Completion(
        text="Let me check.",
        model=MODEL,
        finish_reason="tool_calls",
        usage=Usage(12, 9),
        raw_finish_reason="stop",
        tool_calls=(
            ToolCall(weather.id or "", "get_weather", '{"city":"Paris"}'),
            ToolCall(time.id or "", "get_time", '{"zone":"UTC"}'),
        ),
    )
    await adapter.aclose()


async def test_stream_split_anywhere_gives_the_same_calls() -> None:
    pieces = [STREAM[i : i + 7] for i in range(0, len(STREAM), 7)]

    async def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=ChunkedBody(pieces))

    adapter = build("ollama", handler, model=MODEL)
    *_, done = await collect(adapter.stream(REQUESTS["multi-turn"], MODEL))
    assert isinstance(done, StreamDone)
    assert [(c.name, c.args) for c in done.completion.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"zone": "UTC"}),
    ]
    await adapter.aclose()


class ChunkedBody(httpx.AsyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


async def test_stream_with_parallel_tool_calls_false_delivers_one_call() -> None:
    adapter = adapter_answering(STREAM)
    request = Request(
        prompt="get_weather Paris get_time", tools=[WEATHER, TIME], parallel_tool_calls=False
    )
    *deltas, done = await collect(adapter.stream(request, MODEL))
    assert [d.name for d in deltas if isinstance(d, ToolCallDelta)] == ["get_weather"]
    assert isinstance(done, StreamDone)
    assert [c.name for c in done.completion.tool_calls] == ["get_weather"]
    await adapter.aclose()


def test_usage_has_no_cached_or_reasoning_tokens_on_ollama() -> None:
    """Ollama reports only prompt_eval_count and eval_count."""
    completion = WIRE.parse_reply(CALLS_REPLY, MODEL)
    assert (completion.usage.cached_tokens, completion.usage.reasoning_tokens) == (0, 0)


# -- end to end, through the runtime and the fake server ----------------------------------------


ASK = [{"role": "user", "content": "get_weather Paris please"}]


def answered(calls: tuple[ToolCall, ...]) -> list[Any]:
    """The conversation after the model's calls: each answered by a tool message."""
    results = [Message("tool", f"sunny in {c.args['city']}", tool_call_id=c.id) for c in calls]
    return [*ASK, Message("assistant", tool_calls=calls), *results]


async def test_tool_call_round_trip_through_the_runtime(fake_providers: FakeProviderServer) -> None:
    async with open_runtime(one_provider_config(fake_providers, "ollama", MODEL)) as rt:
        reply = await rt.complete(Request(messages=ASK, tools=[WEATHER]))
        assert (reply.provider, reply.finish_reason, reply.text) == ("ollama", "tool_calls", "")
        (call,) = reply.tool_calls
        assert (call.name, call.args) == ("get_weather", {"city": "Paris", "unit": "celsius"})
        final = await rt.complete(Request(messages=answered(reply.tool_calls), tools=[WEATHER]))
    assert (final.text, final.finish_reason, final.tool_calls) == (
        "results: sunny in Paris",
        "stop",
        (),
    )
    received = fake_providers.requests("ollama")[-1].json
    assert received["messages"][-1] == {
        "role": "tool",
        "content": "sunny in Paris",
        "tool_name": "get_weather",
    }


async def test_tool_call_round_trip_streamed(fake_providers: FakeProviderServer) -> None:
    async with open_runtime(one_provider_config(fake_providers, "ollama", MODEL)) as rt:
        async with rt.stream(Request(messages=ASK, tools=[WEATHER])) as stream:
            events = [event async for event in stream.events()]
        *deltas, done = events
        assert isinstance(done, ReplyDone)
        (delta,) = deltas
        assert isinstance(delta, ToolCallDelta)
        (call,) = done.reply.tool_calls
        assert (delta.index, delta.id, delta.name) == (0, call.id, "get_weather")
        assert json.loads(delta.arguments) == {"city": "Paris", "unit": "celsius"}
        assert done.reply.finish_reason == "tool_calls"
        follow = Request(messages=answered(done.reply.tool_calls), tools=[WEATHER])
        async with rt.stream(follow) as stream:
            events = [event async for event in stream.events()]
    *texts, last = events
    assert all(isinstance(t, TextDelta) for t in texts) and len(texts) > 1
    assert isinstance(last, ReplyDone)
    assert "".join(t.text for t in texts if isinstance(t, TextDelta)) == "results: sunny in Paris"
    assert (last.reply.text, last.reply.finish_reason) == ("results: sunny in Paris", "stop")


async def test_json_schema_answer_validates(fake_providers: FakeProviderServer) -> None:
    async with open_runtime(one_provider_config(fake_providers, "ollama", MODEL)) as rt:
        reply = await rt.complete(REQUESTS["json-schema"])
    jsonschema.validate(json.loads(reply.text), CITY_SCHEMA)
    assert fake_providers.requests("ollama")[-1].json["format"] == CITY_SCHEMA


# -- generated conversations --------------------------------------------------------------------

NAMES = ("get_weather", "get_time", "lookup")
TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
ARGUMENTS = st.dictionaries(
    st.sampled_from(["city", "n", "flag"]),
    st.one_of(st.text(max_size=5), st.integers(-5, 5), st.booleans()),
    max_size=3,
)
IMAGES = st.lists(
    st.sampled_from(
        [ImagePart(data=PNG, media_type="image/png"), ImagePart(data=JPEG, media_type="image/jpeg")]
    ),
    max_size=2,
)


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    """Turns of text and images; some answered by tool calls (distinct names within a turn,
    since Ollama pairs results by name) whose results come in any order."""
    numbers = itertools.count()
    messages = [Message("system", draw(TEXT))] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 3))):
        messages.append(Message("user", (TextPart(draw(TEXT)), *draw(IMAGES))))
        if not draw(st.booleans()):
            continue
        names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
        calls = tuple(
            ToolCall(
                f"call_{next(numbers)}",
                name,
                json.dumps(draw(ARGUMENTS), separators=(",", ":"), ensure_ascii=False),
            )
            for name in names
        )
        messages.append(Message("assistant", draw(st.just("") | TEXT), calls))
        messages += [
            Message("tool", draw(TEXT), tool_call_id=c.id) for c in draw(st.permutations(calls))
        ]
        messages.append(Message("assistant", draw(TEXT)))
    return messages


@settings(max_examples=150, deadline=None)
@given(conversations())
@example([Message("user", " ")])  # blank: the reader must not make it the prompt shorthand
@example([Message("system", " "), Message("user", "x")])
def test_generated_conversations_round_trip(messages: list[Message]) -> None:
    request = Request(messages=messages, tools=[{"name": name} for name in NAMES])
    read = WIRE.read_request(body(request), make_id=numbered_ids())
    assert read.conversation == request.conversation
    assert read.tools == request.tools


# -- the fake server's refusals -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            {"messages": [{"role": "user", "content": "x", "images": ["not base64!"]}]},
            "illegal base64 data at input byte 0",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
                    },
                ]
            },
            "json: cannot unmarshal string into Go struct field "
            "ToolCallFunction.messages.tool_calls.function.arguments of type "
            "api.ToolCallFunctionArguments",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 1}}}]},
            "json: cannot unmarshal number into Go struct field "
            "ToolFunctionParameters.tools.function.parameters.type of type string",
        ),
        ({"format": "yaml"}, "invalid JSON schema in format"),
    ],
)
def test_fake_server_refuses_what_ollama_refuses(change: dict[str, Any], error: str) -> None:
    sent = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **change}
    with pytest.raises(FakeWireError) as caught:
        FakeOllama().parse("/api/chat", {}, {}, json.dumps(sent).encode())
    assert (caught.value.status, caught.value.message) == (400, error)
    assert FakeOllama().error_body(400, "invalid_request", error) == {"error": error}


async def test_images_reach_the_fake_server_and_are_answered(
    fake_providers: FakeProviderServer,
) -> None:
    # llama3.2 reads no images (the router would not send it these): a vision model does.
    async with open_runtime(one_provider_config(fake_providers, "ollama", "llama3.2-vision")) as rt:
        reply = await rt.complete(attrs.evolve(REQUESTS["images"], model="llama3.2-vision"))
    assert reply.text == "echo: What are these?"
    assert fake_providers.requests("ollama")[-1].json["messages"][0]["images"] == [PNG, JPEG]
