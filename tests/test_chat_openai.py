"""The OpenAI Chat Completions wire, both ways: the bodies it builds for whole conversations, its
reading of replies and streams with tool calls, `read_request` as the inverse of
`build_request`, the fake server's refusals, and tool calls and JSON through the runtime."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from chat_support import one_provider_config
from hypothesis import given, settings
from hypothesis import strategies as st
from openai_chat_support import (
    MODEL,
    PNG,
    SCHEMA,
    TIME,
    TOOL_TURNS,
    WEATHER,
    WIRE,
    body_for,
    representative_requests,
)

from actors.adapters.sse import SSEEvent
from actors.adapters.wire import StreamState
from actors.chat import ImagePart, Message, TextPart, ToolCall
from actors.messages import ReplyDone, Request, TextDelta, ToolCallDelta, Usage
from actors.validation import FieldError
from runtime.embed import Runtime, open_runtime
from runtime.testing import FakeProviderServer

REQUESTS = representative_requests()


# -- build_request ----------------------------------------------------------------------------


def test_a_plain_prompt_sends_the_same_body_as_before() -> None:
    body = body_for(Request(prompt="hi there", system="be brief", max_tokens=20))
    assert body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi there"},
        ],
        "max_tokens": 20,
        "temperature": 0.7,
        "stream": False,
    }


def test_a_conversation_with_tool_calls_and_results() -> None:
    body = body_for(REQUESTS["tool_turns"], stream=True)
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "get_weather Paris and get_time there"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": TOOL_TURNS[2]["tool_calls"],
        },
        {"role": "tool", "content": "18C, cloudy", "tool_call_id": "call_a1"},
        {"role": "tool", "content": "14:05", "tool_call_id": "call_b2"},
        {"role": "assistant", "content": "18C and 14:05.", "name": "helper"},
        {"role": "user", "content": "thanks", "name": "ana"},
    ]
    assert body["tools"] == [WEATHER, TIME]
    assert "tool_choice" not in body and "parallel_tool_calls" not in body
    assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})


def test_images_are_image_url_parts() -> None:
    body = body_for(REQUESTS["images"])
    assert body["messages"] == [
        {"role": "developer", "content": "Describe images."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is in these?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
    ]
    assert body["max_tokens"] == 120


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {
                "type": "function",
                "function": {"name": "get_time"},
            },
        ),
    ],
)
def test_each_tool_choice(choice: Any, sent: Any) -> None:
    request = Request(
        prompt="what time", tools=[WEATHER, TIME], tool_choice=choice, parallel_tool_calls=True
    )
    body = body_for(request)
    assert (body["tool_choice"], body["parallel_tool_calls"]) == (sent, True)


def test_tool_choice_and_parallel_calls_are_not_sent_without_tools() -> None:
    body = body_for(Request(prompt="hi", tool_choice="none", parallel_tool_calls=False))
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(body)


@pytest.mark.parametrize(
    ("response_format", "sent"),
    [
        ("text", {"type": "text"}),
        ({"type": "json_object"}, {"type": "json_object"}),
        (
            {"type": "json_schema", "json_schema": {"name": "facts", "schema": SCHEMA}},
            {"type": "json_schema", "json_schema": {"name": "facts", "schema": SCHEMA}},
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "f", "schema": SCHEMA, "strict": True}},
            {
                "type": "json_schema",
                "json_schema": {"name": "f", "schema": SCHEMA, "strict": True},
            },
        ),
    ],
)
def test_response_formats(response_format: Any, sent: dict[str, Any]) -> None:
    assert (
        body_for(Request(prompt="hi", response_format=response_format))["response_format"] == sent
    )


def test_stop_top_p_seed_penalties_and_user_but_not_metadata() -> None:
    request = Request(
        prompt="count",
        stop="END",
        top_p=0.5,
        seed=3,
        presence_penalty=1.0,
        frequency_penalty=0.0,
        user="u-1",
        metadata={"tenant": "acme"},
    )
    assert body_for(request) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "count"}],
        "max_tokens": 500,
        "temperature": 0.7,
        "stop": ["END"],
        "top_p": 0.5,
        "seed": 3,
        "presence_penalty": 1.0,
        "frequency_penalty": 0.0,
        "user": "u-1",
        "stream": False,
    }


def test_reasoning_models_take_every_instruction_as_developer() -> None:
    request = Request(
        messages=[
            {"role": "system", "content": "rule one"},
            {"role": "developer", "content": "rule two"},
            {"role": "user", "content": "go"},
        ]
    )
    body = body_for(request, model="o3")
    assert [m["role"] for m in body["messages"]] == ["developer", "developer", "user"]
    assert body["max_completion_tokens"] == 500
    assert "temperature" not in body and "max_tokens" not in body


def test_models_without_a_system_role_get_the_instructions_in_the_first_user_turn() -> None:
    plain = body_for(Request(prompt="go", system="rule"), model="o1-mini")
    assert plain["messages"] == [{"role": "user", "content": "rule\n\ngo"}]
    image = Request(
        messages=[{"role": "system", "content": "rule"}, *REQUESTS["images"].messages[1:]]
    )
    (user,) = body_for(image, model="o1-mini")["messages"]
    assert user["content"][0] == {"type": "text", "text": "rule\n\n"}
    assert user["content"][1:] == body_for(REQUESTS["images"])["messages"][1]["content"]


# -- read_request -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_read_request_inverts_build_request(name: str) -> None:
    request = REQUESTS[name]
    assert WIRE.read_request(body_for(request)) == request
    assert WIRE.read_request(body_for(request, stream=True)) == request


def test_read_request_of_a_reasoning_body_takes_the_completion_limit() -> None:
    request = Request(messages=[{"role": "user", "content": "go"}], max_tokens=64, model="o3")
    read = WIRE.read_request(body_for(request, model="o3"))
    assert (read.max_tokens, read.model, read.conversation) == (64, "o3", request.conversation)


def test_read_request_names_the_bad_field() -> None:
    body = body_for(REQUESTS["tool_turns"])
    body["messages"][3]["tool_call_id"] = "call_nobody"
    with pytest.raises(FieldError) as caught:
        WIRE.read_request(body)
    assert caught.value.field == "messages[3].tool_call_id"


_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
_INSTRUCTION_ROLES: tuple[Literal["system", "developer"], ...] = ("system", "developer")
_IMAGE = st.one_of(
    st.builds(
        lambda n, detail: ImagePart(url=f"https://example.com/{n}.png", detail=detail),
        st.integers(0, 9),
        st.sampled_from([None, "low", "high", "auto"]),
    ),
    st.builds(lambda: ImagePart(data=PNG, media_type="image/png")),
)
_USER = st.builds(
    lambda first, rest, name: Message("user", (first, *rest), name=name),
    st.one_of(_TEXT.map(TextPart), _IMAGE),
    st.lists(st.one_of(_TEXT.map(TextPart), _IMAGE), max_size=2),
    st.none() | st.just("ana"),
)


@st.composite
def _tool_block(draw: st.DrawFn, start: int) -> list[Message]:
    """An assistant turn calling 1-3 tools (maybe with text), and the answer to each call."""
    names = draw(st.lists(st.sampled_from(["get_weather", "get_time"]), min_size=1, max_size=3))
    calls = tuple(
        ToolCall(f"call_{start}_{n}", name, json.dumps({"n": draw(st.integers(0, 9))}))
        for n, name in enumerate(names)
    )
    text = draw(st.none() | _TEXT)
    answers = [Message("tool", draw(_TEXT), tool_call_id=call.id) for call in calls]
    return [Message("assistant", text or (), calls), *answers]


@st.composite
def _conversations(draw: st.DrawFn) -> list[Message]:
    roles = draw(st.lists(st.sampled_from(_INSTRUCTION_ROLES), max_size=2))
    messages = [Message(role, draw(_TEXT)) for role in roles]
    messages.append(draw(_USER))
    for turn in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["tools", "text", "user"]))
        if kind == "tools":
            messages += draw(_tool_block(turn))
        elif kind == "text":
            messages.append(Message("assistant", draw(_TEXT), name=draw(st.none() | st.just("a"))))
        else:
            messages.append(draw(_USER))
    return messages


@settings(max_examples=150, derandomize=True, deadline=None)
@given(
    messages=_conversations(),
    choice=st.sampled_from([None, "auto", "none", "required", "get_time"]),
    parallel=st.sampled_from([None, True, False]),
    stop=st.lists(_TEXT, max_size=2),
    seed=st.none() | st.integers(-(2**31), 2**31),
)
def test_read_request_inverts_build_request_for_generated_conversations(
    messages: list[Message],
    choice: str | None,
    parallel: bool | None,
    stop: list[str],
    seed: int | None,
) -> None:
    named = {"type": "function", "function": {"name": choice}}
    request = Request(
        messages=messages,
        tools=[WEATHER, TIME],
        tool_choice=named if choice == "get_time" else choice,
        parallel_tool_calls=parallel,
        stop=stop,
        seed=seed,
        model=MODEL,
    )
    assert WIRE.read_request(body_for(request)) == request


# -- parse_reply / parse_event ----------------------------------------------------------------


def _reply(message: dict[str, Any], finish: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
}
CALLS = [
    {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"celsius"}'},
    },
    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
]


def test_parse_reply_with_tool_calls_and_usage_details() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": CALLS, "refusal": None}
    completion = WIRE.parse_reply(_reply(message, "tool_calls", USAGE), MODEL)
    assert completion.text == ""
    assert completion.tool_calls == (
        ToolCall("call_1", "get_weather", '{"city":"Paris","unit":"celsius"}'),
        ToolCall("call_2", "get_time", "{}"),
    )
    assert completion.raw_finish_reason == "tool_calls"
    assert completion.usage == Usage(
        input_tokens=1200, output_tokens=300, reasoning_tokens=256, cached_tokens=1024
    )
    assert completion.model == "gpt-4o-2024-08-06"


def test_a_reply_with_calls_that_says_stop_finishes_with_tool_calls() -> None:
    message = {"role": "assistant", "content": "let me check", "tool_calls": CALLS[:1]}
    completion = WIRE.parse_reply(_reply(message, "stop", {"prompt_tokens": 1}), MODEL)
    assert (completion.text, completion.raw_finish_reason) == ("let me check", "tool_calls")
    assert completion.usage == Usage(input_tokens=1)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> SSEEvent:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return SSEEvent(data=json.dumps({"model": "gpt-4o", "choices": [choice]}))


def _call_piece(index: int, arguments: str, **head: str) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if "name" in head:
        function["name"] = head["name"]
    piece: dict[str, Any] = {"index": index, "function": function}
    if "id" in head:
        piece |= {"id": head["id"], "type": "function"}
    return {"tool_calls": [piece]}


def test_streamed_tool_calls_with_split_arguments() -> None:
    events = [
        _chunk(
            {
                "role": "assistant",
                "content": None,
                **_call_piece(0, "", id="call_1", name="get_weather"),
            }
        ),
        _chunk(_call_piece(0, '{"city":')),
        _chunk(_call_piece(0, '"Paris"}')),
        _chunk(_call_piece(1, "", id="call_2", name="get_time")),
        _chunk(_call_piece(1, '{"zone"')),
        _chunk(_call_piece(1, ':"CET"}')),
        _chunk({}, "tool_calls"),
        SSEEvent(data=json.dumps({"model": "gpt-4o", "choices": [], "usage": USAGE})),
        SSEEvent(data="[DONE]"),
    ]
    state = StreamState(MODEL)
    deltas = [delta for event in events for delta in WIRE.parse_event(event, state)]
    assert deltas == [
        ToolCallDelta(0, "call_1", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"city":'),
        ToolCallDelta(0, None, None, '"Paris"}'),
        ToolCallDelta(1, "call_2", "get_time", ""),
        ToolCallDelta(1, None, None, '{"zone"'),
        ToolCallDelta(1, None, None, ':"CET"}'),
    ]
    completion = state.completion("openai", "[DONE]")
    assert completion.tool_calls == (
        ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
        ToolCall("call_2", "get_time", '{"zone":"CET"}'),
    )
    assert completion.raw_finish_reason == "tool_calls"
    assert (completion.usage.cached_tokens, completion.usage.reasoning_tokens) == (1024, 256)


def test_streamed_text_then_a_call() -> None:
    state = StreamState(MODEL)
    deltas = WIRE.parse_event(_chunk({"content": "checking"}), state)
    deltas += WIRE.parse_event(_chunk(_call_piece(0, "{}", id="call_9", name="get_time")), state)
    deltas += WIRE.parse_event(_chunk({}, "stop"), state)
    assert deltas == [TextDelta("checking"), ToolCallDelta(0, "call_9", "get_time", "{}")]
    completion = state.completion("openai", "[DONE]")
    assert (completion.text, completion.raw_finish_reason) == ("checking", "tool_calls")


def test_streamed_calls_without_an_index_are_told_apart_by_id() -> None:
    state = StreamState(MODEL)
    for call_id, name in [("call_x", "get_weather"), ("call_y", "get_time")]:
        piece = {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}
        WIRE.parse_event(_chunk({"tool_calls": [piece]}), state)
    WIRE.parse_event(_chunk({}, "tool_calls"), state)
    calls = state.completion("mistral", "[DONE]").tool_calls
    assert [(c.id, c.name) for c in calls] == [("call_x", "get_weather"), ("call_y", "get_time")]


# -- the fake server --------------------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client_:
        yield client_


async def _post(
    client: httpx.AsyncClient, server: FakeProviderServer, body: dict[str, Any]
) -> httpx.Response:
    return await client.post(server.url_for("openai") + "/chat/completions", json=body)


async def test_fake_server_refuses_a_tool_result_without_its_call(
    fake_providers: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    body = body_for(REQUESTS["tool_turns"])
    del body["messages"][2]  # the assistant message with the calls
    reply = await _post(client, fake_providers, body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "messages.[2].role",
        None,
    )
    assert "must be a response to a preceeding message with 'tool_calls'" in error["message"]


async def test_fake_server_refuses_unanswered_tool_calls(
    fake_providers: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    body = body_for(REQUESTS["tool_turns"])
    del body["messages"][4]  # the answer to call_b2
    error = (await _post(client, fake_providers, body)).json()["error"]
    assert error["param"] == "messages.[4].role"
    assert error["message"].endswith("did not have response messages: call_b2")


async def test_fake_server_refuses_a_tool_schema_that_is_not_an_object(
    fake_providers: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    body = body_for(REQUESTS["tool_choice_required"])
    body["tools"][0]["function"]["parameters"] = {"type": "string"}
    reply = await _post(client, fake_providers, body)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert (error["code"], error["param"]) == (
        "invalid_function_parameters",
        "tools[0].function.parameters",
    )
    assert error["message"] == (
        "Invalid schema for function 'get_time': schema must be a JSON Schema of "
        """'type: "object"', got 'type: "string"'."""
    )


async def test_fake_server_refuses_tool_choice_without_tools(
    fake_providers: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    body = body_for(REQUESTS["plain"]) | {"tool_choice": "auto"}
    reply = await _post(client, fake_providers, body)
    assert (reply.status_code, reply.json()["error"]["param"]) == (400, "tool_choice")


async def test_fake_server_reads_the_whole_request_and_takes_images(
    fake_providers: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    reply = await _post(client, fake_providers, body_for(REQUESTS["images"]))
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "echo: what is in these?"


async def test_fake_server_streams_tool_calls_in_pieces(
    fake_providers: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    body = body_for(REQUESTS["tool_choice_named"], stream=True)
    reply = await _post(client, fake_providers, body)
    events = [line[6:] for line in reply.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    first = chunks[0]["choices"][0]["delta"]
    assert (first["role"], first["content"]) == ("assistant", None)
    assert first["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    pieces = [
        call["function"]["arguments"]
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls", ())
    ]
    assert len(pieces) > 3
    assert json.loads("".join(pieces)) == {"city": "example", "unit": "celsius"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


# -- through the runtime ----------------------------------------------------------------------


@pytest.fixture
async def rt(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai-0123456789abcdef")
    async with open_runtime(
        one_provider_config(fake_providers, "openai", MODEL, (2.5, 10))
    ) as runtime_:
        yield runtime_


ASK = [{"role": "user", "content": "get_weather Lima then get_time Lima"}]


def _answered(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    return [{"role": "tool", "tool_call_id": c.id, "content": f"{c.name} ok"} for c in calls]


async def test_a_tool_call_round_trip(rt: Runtime, fake_providers: FakeProviderServer) -> None:
    first = await rt.complete(Request(messages=ASK, tools=[WEATHER, TIME]))
    assert first.finish_reason == "tool_calls" and first.raw_finish_reason == "tool_calls"
    assert [(c.name, c.args) for c in first.tool_calls] == [
        ("get_weather", {"city": "Lima", "unit": "celsius"}),
        ("get_time", {"zone": "Lima"}),
    ]
    follow_up = [*ASK, first.message, *_answered(first.tool_calls)]
    second = await rt.complete(Request(messages=follow_up, tools=[WEATHER, TIME]))
    assert (second.text, second.finish_reason, second.tool_calls) == (
        "results: get_weather ok get_time ok",
        "stop",
        (),
    )
    sent = fake_providers.requests("openai")[-1].json
    assert sent["messages"][1]["tool_calls"][1]["id"] == first.tool_calls[1].id


async def test_a_streamed_tool_call_round_trip(rt: Runtime) -> None:
    request = Request(messages=ASK, tools=[WEATHER, TIME])
    async with rt.stream(request) as stream:
        events = [event async for event in stream.events()]
    *pieces, done = events
    deltas = [d for d in pieces if isinstance(d, ToolCallDelta)]
    assert isinstance(done, ReplyDone) and deltas == pieces
    heads = [(d.index, d.name) for d in deltas if d.id is not None]
    assert heads == [(0, "get_weather"), (1, "get_time")]
    calls = done.reply.tool_calls
    assert "".join(d.arguments for d in deltas if d.index == 1) == calls[1].arguments
    assert (done.reply.finish_reason, calls[0].args) == (
        "tool_calls",
        {"city": "Lima", "unit": "celsius"},
    )
    follow_up = Request(messages=[*ASK, done.message, *_answered(calls)], tools=[WEATHER, TIME])
    async with rt.stream(follow_up) as stream:
        events = [event async for event in stream.events()]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "results: get_weather ok get_time ok"
    assert isinstance(events[-1], ReplyDone) and events[-1].reply.text == text


async def test_a_json_schema_answer_validates(rt: Runtime) -> None:
    request = REQUESTS["json_schema"]
    reply = await rt.complete(
        Request(messages=request.messages, response_format=request.response_format)
    )
    jsonschema.validate(json.loads(reply.text), SCHEMA)
    assert reply.finish_reason == "stop"
