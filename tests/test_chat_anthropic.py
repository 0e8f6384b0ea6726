"""The Anthropic Messages wire format, both ways: conversations, tools, tool choice, JSON output,
images and sampling hints in the exact body shape; tool calls, usage and finish reasons read back
from replies and streams; `read_request` as the inverse of `build_request`; and the whole of it
through the runtime against the fake server (a tool-call round trip, complete and stream, and a
JSON-schema answer)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from adapter_support import build, set_keys
from chat_support import one_provider_config
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.adapters.anthropic import AnthropicWire
from actors.adapters.sse import SSEEvent
from actors.adapters.wire import RequestShape, StreamState, WireError
from actors.chat import ImagePart, Message, TextPart, ToolCall
from actors.errors import FailureKind, ProviderError
from actors.messages import Reply, ReplyDone, Request, TextDelta, ToolCallDelta, Usage
from runtime.embed import Runtime, open_runtime
from runtime.testing import FakeProviderServer

WIRE = AnthropicWire()
MODEL = "claude-sonnet"
SHAPE = RequestShape(temperature=0.5)
PNG = "iVBORw0KGgo="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
CALLS = (
    ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'),
    ToolCall("toolu_2", "get_time", "{}"),
)
#: A conversation with every kind of turn: instructions, images, text with tool calls, results.
CONVERSATION = [
    Message("system", "Be brief."),
    Message(
        "user",
        [
            TextPart("What is this, and the weather?"),
            ImagePart(data=PNG, media_type="image/png"),
            ImagePart(url="https://example.com/cat.jpg"),
        ],
    ),
    Message("assistant", "Let me look.", CALLS),
    Message("tool", "sunny", tool_call_id="toolu_1"),
    Message("tool", "noon", tool_call_id="toolu_2"),
    Message("user", "And tomorrow?"),
]


def body(request: Request, *, stream: bool = False, shape: RequestShape = SHAPE) -> Any:
    return WIRE.build_request(request, MODEL, shape, stream=stream).body


def test_a_plain_prompt_is_sent_as_before() -> None:
    sent = body(Request("hi", system="Be brief.", max_tokens=20))
    assert json.dumps(sent) == json.dumps(
        {
            "model": MODEL,
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.5,
            "stream": False,
            "system": "Be brief.",
        }
    )


def test_a_conversation_with_images_tool_calls_and_results() -> None:
    developer = Message("developer", "Use metric units.")
    sent = body(Request(messages=[developer, *CONVERSATION], tools=[WEATHER, TIME]))
    assert sent["system"] == "Use metric units.\n\nBe brief."
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this, and the weather?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        {  # both results and the next question: one user message, results first
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in sent


def test_consecutive_messages_of_one_role_are_merged() -> None:
    sent = body(Request(messages=[Message("user", "one"), Message("user", "two")]))
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        }
    ]


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            None,
            {"type": "tool", "name": "get_time"},
        ),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", True, {"type": "any", "disable_parallel_tool_use": False}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
    ],
)
def test_each_tool_choice(tool_choice: Any, parallel: bool | None, expected: Any) -> None:
    request = Request(
        "what time is it",
        tools=[WEATHER, TIME],
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
    )
    assert body(request)["tool_choice"] == expected


def test_a_body_shares_no_schema_with_the_request() -> None:
    request = Request("hi", tools=[WEATHER])
    body(request)["tools"][0]["input_schema"]["properties"]["city"]["type"] = "number"
    assert request.tools[0].parameters["properties"]["city"]["type"] == "string"


def test_a_tool_named_like_the_json_tool_is_unsupported() -> None:
    with pytest.raises(WireError) as caught:
        body(Request("hi", tools=[{"name": "json_answer_x"}]))
    assert caught.value.kind is FailureKind.UNSUPPORTED


async def test_the_adapter_sends_nothing_it_cannot_express(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_keys(monkeypatch)
    sent: list[httpx.Request] = []

    async def provider(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    adapter = build("anthropic", provider, model=MODEL)
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(Request("hi", tools=[{"name": "json_answer_x"}]), MODEL)
    assert (caught.value.kind, sent) == (FailureKind.UNSUPPORTED, [])
    await adapter.aclose()


def test_strict_tools_keep_strict() -> None:
    strict = {**WEATHER["function"], "strict": True}  # type: ignore[dict-item]
    assert body(Request("hi", tools=[strict]))["tools"][0]["strict"] is True


def test_a_json_schema_is_asked_for_with_a_forced_tool() -> None:
    format_ = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }
    sent = body(Request("describe Ada", response_format=format_))
    assert sent["tools"] == [
        {
            "name": "json_answer_person",
            "description": "Answer by calling this tool: its input is the answer, JSON matching "
            "the schema.",
            "input_schema": PERSON,
            "strict": True,
        }
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "json_answer_person"}


def test_a_json_object_is_any_object_and_with_tools_any_call() -> None:
    sent = body(Request("weather?", response_format={"type": "json_object"}, tools=[WEATHER]))
    assert [tool["name"] for tool in sent["tools"]] == ["get_weather", "json_answer_response"]
    assert sent["tools"][1]["input_schema"] == {"type": "object"}
    assert sent["tool_choice"] == {"type": "any"}
    assert "tools" not in body(Request("hi", response_format="text"))


def test_sampling_fields_and_the_hints_anthropic_has_no_field_for() -> None:
    request = Request(
        "hi",
        stop=["END", "STOP"],
        top_p=0.9,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        user="user-42",
        metadata={"tenant": "acme"},
    )
    sent = body(request, stream=True)
    assert sent == {
        "model": MODEL,
        "max_tokens": 500,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,  # no temperature: Claude 4.5 and later refuse it with top_p
        "stop_sequences": ["END", "STOP"],
        "top_p": 0.9,
        "metadata": {"user_id": "user-42"},
    }


# -- read_request: the inverse ---------------------------------------------------------------

ROUND_TRIPS = [
    Request(messages=[Message("user", "hi")], model=MODEL, temperature=0.5),
    Request(
        messages=CONVERSATION,
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=False,
        stop=["END"],
        top_p=0.5,
        user="u1",
        max_tokens=64,
        model=MODEL,
    ),
    Request(
        messages=[Message("user", "describe Ada")],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON},
        },
        model=MODEL,
        temperature=0.5,
    ),
    Request(
        messages=[Message("user", "weather in Paris?")],
        tools=[WEATHER],
        response_format={"type": "json_object"},
        model=MODEL,
        temperature=0.5,
    ),
    Request(
        messages=[Message("user", "time?")],
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=True,
        model=MODEL,
        temperature=0.5,
    ),
    Request(
        messages=[Message("user", "quiet")],
        tools=[TIME],
        tool_choice="none",
        model=MODEL,
        temperature=0.5,
    ),
]


@pytest.mark.parametrize("request_", ROUND_TRIPS)
def test_read_request_inverts_build_request(request_: Request) -> None:
    assert WIRE.read_request(body(request_)) == request_


def test_read_request_of_what_anthropic_cannot_hold() -> None:
    """Developer messages come back as system; hints without a field are not there to read."""
    request = Request(
        messages=[Message("developer", "rules"), Message("user", "hi")], seed=3, model=MODEL
    )
    back = WIRE.read_request(body(request))
    assert back.conversation == (Message("system", "rules"), Message("user", "hi"))
    assert back.seed is None


# -- replies and streams ---------------------------------------------------------------------


def test_a_reply_with_tool_calls_and_cached_and_thinking_tokens() -> None:
    reply = {
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
        ],
        "stop_reason": "tool_use",
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 5,
            "output_tokens": 40,
            "output_tokens_details": {"thinking_tokens": 25},
        },
    }
    completion = WIRE.parse_reply(reply, MODEL)
    assert completion.text == "Checking."
    assert completion.tool_calls == (
        ToolCall("toolu_a", "get_weather", '{"city":"Oslo"}'),
        ToolCall("toolu_b", "get_time", "{}"),
    )
    assert completion.raw_finish_reason == "tool_use"
    assert completion.usage == Usage(
        input_tokens=115, output_tokens=40, reasoning_tokens=25, cached_tokens=100
    )


def test_the_json_tool_call_is_the_text_not_a_tool_call() -> None:
    reply = {
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_j",
                "name": "json_answer_person",
                "input": {"age": 36},
            }
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }
    completion = WIRE.parse_reply(reply, MODEL)
    assert (completion.text, completion.tool_calls) == ('{"age": 36}', ())
    assert completion.raw_finish_reason == "end_turn"


def events(*items: tuple[str, dict[str, Any]]) -> list[SSEEvent]:
    return [SSEEvent(json.dumps(data), name) for name, data in items]


def start(index: int, id_: str, name: str) -> tuple[str, dict[str, Any]]:
    block = {"type": "tool_use", "id": id_, "name": name, "input": {}}
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def piece(index: int, kind: str, key: str, value: str) -> tuple[str, dict[str, Any]]:
    delta = {"type": kind, key: value}
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def run_stream(items: list[SSEEvent]) -> tuple[list[Any], StreamState]:
    state = StreamState(MODEL)
    deltas = [delta for item in items for delta in WIRE.parse_event(item, state)]
    return deltas, state


MESSAGE_START = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "model": MODEL,
            "usage": {"input_tokens": 7, "cache_read_input_tokens": 20, "output_tokens": 1},
        },
    },
)


def test_a_stream_with_text_and_two_tool_calls_in_pieces() -> None:
    deltas, state = run_stream(
        events(
            MESSAGE_START,
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            piece(0, "text_delta", "text", "Let me check."),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            start(1, "toolu_a", "get_weather"),
            piece(1, "input_json_delta", "partial_json", ""),
            piece(1, "input_json_delta", "partial_json", '{"city": "Pa'),
            piece(1, "input_json_delta", "partial_json", 'ris"}'),
            start(2, "toolu_b", "get_time"),
            piece(2, "input_json_delta", "partial_json", "{}"),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 30},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        )
    )
    assert deltas == [
        TextDelta("Let me check."),
        ToolCallDelta(0, "toolu_a", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"city": "Pa'),
        ToolCallDelta(0, None, None, 'ris"}'),
        ToolCallDelta(1, "toolu_b", "get_time", ""),
        ToolCallDelta(1, None, None, "{}"),
    ]
    completion = state.completion("anthropic", "message_stop")
    assert completion.tool_calls == (
        ToolCall("toolu_a", "get_weather", '{"city": "Paris"}'),
        ToolCall("toolu_b", "get_time", "{}"),
    )
    assert completion.raw_finish_reason == "tool_use"
    assert completion.usage == Usage(input_tokens=27, output_tokens=30, cached_tokens=20)


def test_a_streamed_json_tool_call_is_text() -> None:
    deltas, state = run_stream(
        events(
            MESSAGE_START,
            start(0, "toolu_j", "json_answer_response"),
            piece(0, "input_json_delta", "partial_json", '{"echo": '),
            piece(0, "input_json_delta", "partial_json", '"hi"}'),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 5},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        )
    )
    assert deltas == [TextDelta('{"echo": '), TextDelta('"hi"}')]
    completion = state.completion("anthropic", "message_stop")
    assert (completion.text, completion.tool_calls) == ('{"echo": "hi"}', ())
    assert completion.raw_finish_reason == "end_turn"


# -- through the runtime, against the fake server ---------------------------------------------


@pytest.fixture
async def rt(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789abcdef")
    config = one_provider_config(fake_providers, "anthropic", MODEL, (3, 15))
    async with open_runtime(config) as runtime_:
        yield runtime_


ASK = Request(
    messages=[Message("user", "get_weather Paris and get_time please")], tools=[WEATHER, TIME]
)


def results_for(reply: Reply) -> Request:
    """ASK continued: the reply's message and a result for each of its calls."""
    results = [Message("tool", f"result of {c.name}", tool_call_id=c.id) for c in reply.tool_calls]
    return attrs.evolve(ASK, messages=[*ASK.messages, reply.message, *results])


async def test_a_tool_call_round_trip(rt: Runtime, fake_providers: FakeProviderServer) -> None:
    first = await rt.complete(ASK)
    assert [(c.name, c.args) for c in first.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    assert all(c.id.startswith("toolu_") for c in first.tool_calls)
    assert (first.finish_reason, first.raw_finish_reason) == ("tool_calls", "tool_use")
    second = await rt.complete(results_for(first))
    assert second.text == "results: result of get_weather result of get_time"
    assert (second.finish_reason, second.tool_calls) == ("stop", ())
    sent = fake_providers.requests("anthropic")[-1].json
    assert [block["type"] for block in sent["messages"][-1]["content"]] == ["tool_result"] * 2


async def test_a_tool_call_round_trip_streamed(rt: Runtime) -> None:
    async with rt.stream(ASK) as stream:
        seen = [event async for event in stream.events()]
    calls = [event for event in seen if isinstance(event, ToolCallDelta)]
    assert {event.index for event in calls} == {0, 1}
    assert "".join(e.arguments for e in calls if e.index == 0) == '{"city": "Paris"}'
    done = seen[-1]
    assert isinstance(done, ReplyDone)
    assert [c.name for c in done.reply.tool_calls] == ["get_weather", "get_time"]
    assert done.reply.finish_reason == "tool_calls"
    async with rt.stream(results_for(done.reply)) as stream:
        texts = [event.text async for event in stream.events() if isinstance(event, TextDelta)]
    assert "".join(texts) == "results: result of get_weather result of get_time"


async def test_a_json_schema_answer_validates(rt: Runtime) -> None:
    request = Request(
        "describe Ada",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON},
        },
    )
    reply = await rt.complete(request)
    jsonschema.validate(json.loads(reply.text), PERSON)
    assert (reply.tool_calls, reply.finish_reason) == ((), "stop")
    async with rt.stream(request) as stream:
        streamed = "".join([text async for text in stream])
    jsonschema.validate(json.loads(streamed), PERSON)


async def refusal(server: FakeProviderServer, sent: dict[str, Any]) -> str:
    """The fake server's 400 message for `sent` (an invalid_request_error)."""
    async with httpx.AsyncClient() as client:
        response = await client.post(
            server.url_for("anthropic") + "/v1/messages",
            json=sent,
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    message: str = error["message"]
    return message


async def test_the_fake_server_refuses_a_call_without_its_result(
    fake_providers: FakeProviderServer,
) -> None:
    sent = body(Request(messages=CONVERSATION, tools=[WEATHER, TIME]))
    sent["messages"][1]["content"][1]["id"] = "toolu_other"
    message = await refusal(fake_providers, sent)
    assert message.startswith("messages.1: `tool_use` ids were found without `tool_result`")
    assert "toolu_other" in message


async def test_the_fake_server_refuses_a_result_without_its_call(
    fake_providers: FakeProviderServer,
) -> None:
    sent = body(Request(messages=CONVERSATION, tools=[WEATHER, TIME]))
    sent["messages"][2]["content"].insert(0, {"type": "tool_result", "tool_use_id": "toolu_x"})
    message = await refusal(fake_providers, sent)
    assert message.startswith("messages.2.content.0: unexpected `tool_use_id` found in")


async def test_the_fake_server_refuses_a_bad_tool_schema(
    fake_providers: FakeProviderServer,
) -> None:
    sent = body(Request("hi", tools=[WEATHER]))
    sent["tools"][0]["input_schema"]["properties"]["city"]["type"] = "text"
    message = await refusal(fake_providers, sent)
    assert message.startswith("tools.0.custom.input_schema: JSON schema is invalid")
    sent["tools"][0]["input_schema"] = {"type": "array"}
    assert "input_schema.type" in await refusal(fake_providers, sent)


# -- generated conversations -------------------------------------------------------------------

WORDS = st.text(alphabet=st.characters(codec="utf-8"), min_size=1)
IMAGES = st.one_of(
    st.builds(lambda n: ImagePart(data=PNG * n, media_type="image/png"), st.integers(1, 3)),
    st.builds(lambda n: ImagePart(url=f"https://example.com/{n}.png"), st.integers(0, 9)),
)
ARGUMENTS = st.dictionaries(
    st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=8)), max_size=3
)


@st.composite
def turns(draw: st.DrawFn, number: int, last: bool) -> list[Message]:
    """A user turn (text and images), then the assistant's text and tool calls (optional in the
    last turn: two user turns in a row would be merged), each call answered by a tool message."""
    parts = draw(st.lists(st.one_of(WORDS.map(TextPart), IMAGES), min_size=1, max_size=3))
    out = [Message("user", parts)]
    names = draw(st.lists(st.sampled_from(["get_weather", "get_time"]), max_size=2))
    calls = tuple(
        ToolCall(f"toolu_{number}_{n}", name, draw(ARGUMENTS)) for n, name in enumerate(names)
    )
    text = draw(st.one_of(st.none(), WORDS) if last or calls else WORDS)
    if calls or text is not None:
        out.append(Message("assistant", text, calls))
    out += [Message("tool", draw(WORDS), tool_call_id=call.id) for call in calls]
    return out


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    system = draw(st.one_of(st.none(), WORDS))
    out = [Message("system", system)] if system is not None else []
    count = draw(st.integers(1, 3))
    for number in range(count):
        out += draw(turns(number, number == count - 1))
    return out


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    conversations(),
    st.sampled_from([None, "auto", "required", "none"]),
    st.sampled_from([None, True, False]),
)
def test_generated_conversations_round_trip(
    conversation: list[Message], tool_choice: str | None, parallel: bool | None
) -> None:
    request = Request(
        messages=conversation,
        tools=[WEATHER, TIME],
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        model=MODEL,
        temperature=0.5,
    )
    back = WIRE.read_request(body(request))
    assert back.conversation == request.conversation
    # What the wire cannot tell apart (see anthropic_tools): an "auto" choice that only carries
    # the parallel setting reads back as no choice; a "none" choice carries no parallel setting.
    carried = tool_choice in (None, "auto") and parallel is not None
    assert back == attrs.evolve(
        request,
        tool_choice=None if carried else tool_choice,
        parallel_tool_calls=None if tool_choice == "none" else parallel,
    )
