"""The Gemini wire format, end to end: conversations, tools, tool choices, JSON output, images and
sampling in Gemini's own body shape and back, replies and streams with function calls, and the
whole tool round trip through the runtime against the fake Gemini server."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest
from adapter_support import build
from chat_support import one_provider_config
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.adapters.gemini import GeminiWire
from actors.adapters.sse import SSEEvent
from actors.adapters.wire import RequestShape, StreamState, WireError
from actors.chat import ImagePart, Message, TextPart, Tool, ToolCall
from actors.errors import FailureKind, ProviderError
from actors.messages import ReplyDone, Request, TextDelta, ToolCallDelta, Usage
from actors.validation import FieldError
from runtime.embed import Runtime, open_runtime
from runtime.testing import FakeProviderServer

WIRE = GeminiWire()
KEY = "AIzaTest0123456789abcdefghijkl"
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = Tool(
    "get_weather",
    "The weather in a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
        "required": ["city"],
    },
)
CLOCK = Tool("get_time", parameters={"type": "object", "properties": {"zone": {"type": "string"}}})
CALLS = (
    ToolCall("call_w", "get_weather", '{"city":"Paris","unit":"C"}'),
    ToolCall("call_t", "get_time", '{"zone":"CET"}'),
)
TOOL_TURNS = [
    Message("system", "You answer with tools."),
    Message("user", "get_weather Paris and get_time"),
    Message("assistant", "Checking.", CALLS),
    Message("tool", "18 degrees", tool_call_id="call_w"),
    Message("tool", "14:00", tool_call_id="call_t"),
]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}

#: Requests that Gemini expresses whole, so `read_request(build_request(r)) == r`.
REPRESENTATIVE = {
    "plain": Request("hello there", system="be brief", max_tokens=100, temperature=0.3),
    "image": Request(
        messages=[
            {"role": "system", "content": "Describe images."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                ],
            },
        ]
    ),
    "tools": Request(messages=TOOL_TURNS, tools=[WEATHER, CLOCK], tool_choice="auto"),
    "tool_none": Request("get_weather Paris", tools=[WEATHER], tool_choice="none"),
    "tool_required": Request("weather?", tools=[WEATHER, CLOCK], tool_choice="required"),
    "tool_named": Request(
        "weather?", tools=[WEATHER, CLOCK], tool_choice={"type": "function", "name": "get_time"}
    ),
    "json_object": Request("name a person", response_format={"type": "json_object"}),
    "json_schema": Request(
        "name a person",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": SCHEMA},
        },
    ),
    "text_format": Request("hi", response_format="text"),
    "sampling": Request(
        "count to ten",
        stop=["7", "eight"],
        top_p=0.9,
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.25,
        temperature=1.2,
    ),
    "multi_turn": Request(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "how are you"},
        ]
    ),
}


def body_of(request: Request, *, stream: bool = False) -> dict[str, Any]:
    wire = WIRE.build_request(
        request, "gemini-2.0-flash", RequestShape(temperature=request.temperature), stream=stream
    )
    return dict(wire.body)


# -- build_request --------------------------------------------------------------------------------


def test_a_plain_prompt_is_sent_as_before() -> None:
    wire = WIRE.build_request(
        REPRESENTATIVE["plain"], "gemini-2.0-flash", RequestShape(temperature=0.3), stream=True
    )
    assert wire.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert wire.params == {"alt": "sse"}
    assert json.dumps(wire.body) == json.dumps(
        {
            "contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
            "generationConfig": {"maxOutputTokens": 100, "temperature": 0.3},
            "systemInstruction": {"parts": [{"text": "be brief"}]},
        }
    )


def test_a_conversation_with_tool_calls_and_results() -> None:
    body = body_of(REPRESENTATIVE["tools"])
    assert body["systemInstruction"] == {"parts": [{"text": "You answer with tools."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "get_weather Paris and get_time"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                # A call Gemini did not sign here: the first of the step gets the bypass value.
                {
                    "functionCall": {
                        "id": "call_w",
                        "name": "get_weather",
                        "args": {"city": "Paris", "unit": "C"},
                    },
                    "thoughtSignature": "skip_thought_signature_validator",
                },
                {"functionCall": {"id": "call_t", "name": "get_time", "args": {"zone": "CET"}}},
            ],
        },
        # Both results in one user content, each named after the call it answers.
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": "call_w",
                        "name": "get_weather",
                        "response": {"output": "18 degrees"},
                    }
                },
                {
                    "functionResponse": {
                        "id": "call_t",
                        "name": "get_time",
                        "response": {"output": "14:00"},
                    }
                },
            ],
        },
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parametersJsonSchema": WEATHER.parameters,
                },
                {"name": "get_time", "parametersJsonSchema": CLOCK.parameters},
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


def test_developer_messages_join_the_system_instruction() -> None:
    request = Request(
        messages=[
            {"role": "system", "content": "one"},
            {"role": "developer", "content": "two"},
            {"role": "user", "content": "hi"},
        ]
    )
    assert body_of(request)["systemInstruction"] == {"parts": [{"text": "one"}, {"text": "two"}]}


def test_a_model_without_a_system_instruction_gets_it_before_the_prompt() -> None:
    wire = WIRE.build_request(
        REPRESENTATIVE["plain"], "gemma", RequestShape(system_role="user"), stream=False
    )
    assert "systemInstruction" not in wire.body
    assert wire.body["contents"] == [
        {"role": "user", "parts": [{"text": "be brief"}, {"text": "hello there"}]}
    ]


def test_images_are_inline_data() -> None:
    body = body_of(REPRESENTATIVE["image"])
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "what is this?"},
                {"inlineData": {"mimeType": "image/png", "data": PIXEL}},
            ],
        }
    ]


def test_an_image_url_is_unsupported() -> None:
    request = Request(
        messages=[{"role": "user", "content": [{"type": "image", "url": "https://x.test/a.png"}]}]
    )
    with pytest.raises(WireError) as caught:
        body_of(request)
    assert caught.value.kind is FailureKind.UNSUPPORTED


async def test_the_adapter_refuses_an_image_url_before_sending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    sent: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    adapter = build("gemini", handler)
    request = Request(
        messages=[{"role": "user", "content": [{"type": "image", "url": "https://x.test/a.png"}]}]
    )
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(request, "test-model")
    assert caught.value.kind is FailureKind.UNSUPPORTED
    assert sent == []
    await adapter.aclose()


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("tool_none", {"mode": "NONE"}),
        ("tool_required", {"mode": "ANY"}),
        ("tool_named", {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
    ],
)
def test_each_tool_choice(name: str, config: dict[str, Any]) -> None:
    assert body_of(REPRESENTATIVE[name])["toolConfig"] == {"functionCallingConfig": config}


def test_no_tool_choice_sends_no_tool_config() -> None:
    assert "toolConfig" not in body_of(Request("hi", tools=[WEATHER]))
    assert "tools" not in body_of(Request("hi"))


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("json_object", {"responseMimeType": "application/json"}),
        ("json_schema", {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}),
        ("text_format", {"responseMimeType": "text/plain"}),
    ],
)
def test_response_formats(name: str, extra: dict[str, Any]) -> None:
    assert body_of(REPRESENTATIVE[name])["generationConfig"] == {
        "maxOutputTokens": 500,
        "temperature": 0.7,
        **extra,
    }


def test_stop_top_p_seed_and_penalties() -> None:
    assert body_of(REPRESENTATIVE["sampling"])["generationConfig"] == {
        "maxOutputTokens": 500,
        "temperature": 1.2,
        "stopSequences": ["7", "eight"],
        "topP": 0.9,
        "seed": 42,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.25,
    }


def test_user_and_metadata_are_left_out() -> None:
    plain = body_of(Request("hi"))
    assert body_of(Request("hi", user="u-1", metadata={"k": "v"})) == plain


# -- read_request ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
def test_read_request_inverts_build_request(name: str) -> None:
    request = REPRESENTATIVE[name]
    assert WIRE.read_request(body_of(request)) == request


def test_read_request_makes_ids_and_matches_responses_by_name() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "weather"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "get_weather", "response": {"t": 18}}}],
            },
        ],
        "tools": [{"functionDeclarations": [{"name": "get_weather"}]}],
    }
    request = WIRE.read_request(body)
    call = request.conversation[1].tool_calls[0]
    assert call.id.startswith("call_")
    assert request.conversation[2] == Message("tool", '{"t": 18}', tool_call_id=call.id)


def test_read_request_takes_openapi_parameters_and_snake_case() -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "system_instruction": {"parts": [{"text": "sys"}]},
        "tools": [
            {
                "function_declarations": [
                    {
                        "name": "f",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"n": {"type": "INTEGER", "nullable": True}},
                            "propertyOrdering": ["n"],
                        },
                    }
                ]
            }
        ],
        "generation_config": {"max_output_tokens": 9, "response_mime_type": "application/json"},
    }
    request = WIRE.read_request(body)
    assert request.system == "sys"
    assert request.max_tokens == 9
    assert request.response_format is not None and request.response_format.type == "json_object"
    assert request.tools[0].parameters == {
        "type": "object",
        "properties": {"n": {"type": ["integer", "null"]}},
    }


def test_read_request_refuses_a_response_without_its_call() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
        ]
    }
    with pytest.raises(FieldError) as caught:
        WIRE.read_request(body)
    assert "function response turn comes immediately after a function call turn" in str(
        caught.value
    )


# -- replies and streams --------------------------------------------------------------------------


def test_a_reply_with_function_calls_and_usage() -> None:
    reply = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking...", "thought": True},
                        {"text": "Let me look."},
                        {
                            "functionCall": {
                                "id": "fc-1",
                                "name": "get_weather",
                                "args": {"city": "Oslo"},
                            }
                        },
                        {"functionCall": {"name": "get_time", "args": {}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 120,
            "cachedContentTokenCount": 100,
            "candidatesTokenCount": 20,
            "thoughtsTokenCount": 7,
        },
        "modelVersion": "gemini-2.5-flash",
    }
    completion = WIRE.parse_reply(reply, "gemini-2.5-flash")
    assert completion.text == "Let me look."
    first, second = completion.tool_calls
    assert first == ToolCall("fc-1", "get_weather", '{"city":"Oslo"}')
    assert (second.name, second.args) == ("get_time", {})
    assert second.id.startswith("call_")
    assert completion.raw_finish_reason == "STOP"
    assert completion.usage == Usage(
        input_tokens=120, output_tokens=27, reasoning_tokens=7, cached_tokens=100
    )


def _event(parts: list[dict[str, Any]], **extra: Any) -> SSEEvent:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
    if "finishReason" in extra:
        candidate["finishReason"] = extra.pop("finishReason")
    return SSEEvent(json.dumps({"candidates": [candidate], **extra}))


def test_a_stream_with_several_function_calls() -> None:
    state = StreamState("gemini-2.0-flash")
    deltas = []
    for event in [
        _event([{"text": "On it. "}]),
        _event([{"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]),
        _event(
            [
                {"functionCall": {"id": "given", "name": "get_time", "args": {"zone": "UTC"}}},
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
            ],
            finishReason="STOP",
            usageMetadata={"promptTokenCount": 5, "candidatesTokenCount": 9},
        ),
    ]:
        deltas += WIRE.parse_event(event, state)
    assert deltas[0] == TextDelta("On it. ")
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert [(d.index, d.name, d.arguments) for d in calls] == [
        (0, "get_weather", '{"city":"Rome"}'),
        (1, "get_time", '{"zone":"UTC"}'),
        (2, "get_weather", '{"city":"Oslo"}'),
    ]
    assert calls[1].id == "given"
    completion = state.completion("gemini", WIRE.end_marker)
    assert [c.id for c in completion.tool_calls] == [d.id for d in calls]
    assert completion.text == "On it. "
    assert completion.usage == Usage(5, 9)


def test_thought_signatures_go_back_with_their_calls() -> None:
    wire = GeminiWire()
    signed = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "get_weather", "args": {}},
                            "thoughtSignature": "c2ln",
                        },
                        {"functionCall": {"name": "get_time", "args": {}}},
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    calls = wire.parse_reply(signed, "gemini-3-pro").tool_calls
    conversation = [
        Message("user", "get_weather and get_time"),
        Message("assistant", tool_calls=calls),
        *(Message("tool", "ok", tool_call_id=c.id) for c in calls),
    ]
    body = wire.build_request(
        Request(messages=conversation), "gemini-3-pro", RequestShape(), stream=False
    ).body
    model_parts = body["contents"][1]["parts"]
    assert model_parts[0]["thoughtSignature"] == "c2ln"
    assert "thoughtSignature" not in model_parts[1]


def test_a_stream_cut_before_the_finish_reason_is_incomplete() -> None:
    state = StreamState("g")
    WIRE.parse_event(_event([{"functionCall": {"name": "f", "args": {}}}]), state)
    assert not state.ended


# -- through the runtime, against the fake server -------------------------------------------------


@pytest.fixture
async def rt(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    fake_providers.expect_key("gemini", KEY)
    async with open_runtime(
        one_provider_config(fake_providers, "gemini", "gemini-pro", (1.25, 5))
    ) as runtime_:
        yield runtime_


ASK = [
    {"role": "system", "content": "Use the tools."},
    {"role": "user", "content": "get_weather Paris then get_time"},
]


def answered(reply_message: Message, calls: tuple[ToolCall, ...]) -> list[Message]:
    results = [Message("tool", f"result of {c.name}", tool_call_id=c.id) for c in calls]
    return [*Request(messages=ASK).conversation, reply_message, *results]


async def test_a_tool_call_round_trip(rt: Runtime, fake_providers: FakeProviderServer) -> None:
    reply = await rt.complete(Request(messages=ASK, tools=[WEATHER, CLOCK]))
    assert reply.finish_reason == "tool_calls"
    assert reply.raw_finish_reason == "STOP"
    assert [(c.name, c.args) for c in reply.tool_calls] == [
        ("get_weather", {"city": "Paris", "unit": "C"}),
        ("get_time", {"zone": "example"}),
    ]
    follow_up = Request(messages=answered(reply.message, reply.tool_calls), tools=[WEATHER, CLOCK])
    final = await rt.complete(follow_up)
    assert final.text == "results: result of get_weather result of get_time"
    assert final.finish_reason == "stop"
    sent = json.loads(fake_providers.requests("gemini")[-1].body)
    responses = sent["contents"][-1]["parts"]
    assert [r["functionResponse"]["name"] for r in responses] == ["get_weather", "get_time"]
    assert [r["functionResponse"]["id"] for r in responses] == [c.id for c in reply.tool_calls]


async def test_a_tool_call_round_trip_streamed(rt: Runtime) -> None:
    request = Request(messages=ASK, tools=[WEATHER, CLOCK])
    async with rt.stream(request) as stream:
        events = [event async for event in stream.events()]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    done = events[-1]
    assert isinstance(done, ReplyDone)
    assert [d.name for d in deltas] == ["get_weather", "get_time"]
    assert [c.id for c in done.reply.tool_calls] == [d.id for d in deltas]
    assert done.reply.finish_reason == "tool_calls"
    follow_up = Request(messages=answered(done.message, done.reply.tool_calls))
    async with rt.stream(follow_up) as stream:
        texts = [e.text async for e in stream.events() if isinstance(e, TextDelta)]
    assert "".join(texts) == "results: result of get_weather result of get_time"


async def test_one_call_when_parallel_calls_are_off(rt: Runtime) -> None:
    request = Request(messages=ASK, tools=[WEATHER, CLOCK], parallel_tool_calls=False)
    reply = await rt.complete(request)
    assert [c.name for c in reply.tool_calls] == ["get_weather"]
    async with rt.stream(request) as stream:
        events = [event async for event in stream.events()]
    assert [e.index for e in events if isinstance(e, ToolCallDelta)] == [0]
    assert isinstance(events[-1], ReplyDone) and len(events[-1].reply.tool_calls) == 1


async def test_a_gemini_3_conversation_sends_its_signatures_back(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gemini 3 refuses its own function calls sent back unsigned; the fake server does too."""
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    config = one_provider_config(fake_providers, "gemini", "gemini-3-pro-preview", (1.25, 5))
    async with open_runtime(config) as rt3:
        reply = await rt3.complete(Request(messages=ASK, tools=[WEATHER, CLOCK]))
        first = fake_providers.requests("gemini")[-1]
        assert first.path.endswith("gemini-3-pro-preview:generateContent")
        final = await rt3.complete(
            Request(messages=answered(reply.message, reply.tool_calls), tools=[WEATHER, CLOCK])
        )
    assert final.text.startswith("results: ")
    sent = json.loads(fake_providers.requests("gemini")[-1].body)
    signature = sent["contents"][1]["parts"][0]["thoughtSignature"]
    # The signature the server signed the call with, not the bypass value.
    assert base64.b64decode(signature).startswith(b"fake-thought:")
    unsigned = dict(sent)
    del unsigned["contents"][1]["parts"][0]["thoughtSignature"]
    url = fake_providers.url_for("gemini") + "/v1beta/models/gemini-3-pro-preview:generateContent"
    async with httpx.AsyncClient() as client:
        refused = await client.post(url, json=unsigned, headers={"x-goog-api-key": KEY})
    assert refused.status_code == 400
    assert "missing a thought_signature" in refused.json()["error"]["message"]


async def test_a_conversation_begun_elsewhere_is_finished_by_gemini_3(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two calls another provider made (its ids, no thought signature) and their results: Gemini 3
    takes them (the bypass value on the step's first call) and answers in text."""
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    async with open_runtime(
        one_provider_config(fake_providers, "gemini", "gemini-3-flash", (1.25, 5))
    ) as rt3:
        reply = await rt3.complete(Request(messages=TOOL_TURNS, tools=[WEATHER, CLOCK]))
    assert reply.text == "results: 18 degrees 14:00"
    assert reply.message == Message("assistant", "results: 18 degrees 14:00")
    sent = json.loads(fake_providers.requests("gemini")[-1].body)
    assert [p["functionResponse"]["id"] for p in sent["contents"][-1]["parts"]] == [
        "call_w",
        "call_t",
    ]


async def test_a_json_schema_answer_validates(rt: Runtime) -> None:
    request = Request(
        "Ada Lovelace",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": SCHEMA},
        },
    )
    reply = await rt.complete(request)
    jsonschema.validate(json.loads(reply.text), SCHEMA)
    async with rt.stream(request) as stream:
        text = "".join([chunk async for chunk in stream])
    jsonschema.validate(json.loads(text), SCHEMA)


async def test_an_image_reaches_the_fake_server(
    rt: Runtime, fake_providers: FakeProviderServer
) -> None:
    request = REPRESENTATIVE["image"]
    reply = await rt.complete(request)
    assert reply.text == "echo: what is this?"
    sent = json.loads(fake_providers.requests("gemini")[-1].body)
    assert sent["contents"][0]["parts"][1]["inlineData"]["data"] == PIXEL


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {
                        "role": "user",
                        "parts": [{"functionResponse": {"name": "f", "response": {}}}],
                    },
                ]
            },
            "Please ensure that function response turn comes immediately after a function call "
            "turn",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                    {"role": "user", "parts": [{"text": "and?"}]},
                ]
            },
            "Please ensure that the number of function response parts is equal to the number of "
            "function call parts",
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parametersJsonSchema": {
                                    "type": "object",
                                    "properties": {"a": {"type": "text"}},
                                },
                            }
                        ]
                    }
                ],
            },
            "* GenerateContentRequest.tools[0].function_declarations[0].parametersJsonSchema"
            ".properties[a].type: Invalid value 'text'",
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": {"type": "OBJECT", "required": ["missing"]},
                            }
                        ]
                    }
                ],
            },
            "* GenerateContentRequest.tools[0].function_declarations[0].parameters.required[0]: "
            "property is not defined",
        ),
    ],
)
async def test_the_fake_server_refuses_what_gemini_refuses(
    fake_providers: FakeProviderServer, body: dict[str, Any], message: str
) -> None:
    url = fake_providers.url_for("gemini") + "/v1beta/models/gemini-pro:generateContent"
    async with httpx.AsyncClient() as client:
        response = await client.post(url, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith(message)


def test_image_parts_read_back_as_images() -> None:
    request = WIRE.read_request(body_of(REPRESENTATIVE["image"]))
    assert request.conversation[-1].content == (
        TextPart("what is this?"),
        ImagePart(data=PIXEL, media_type="image/png"),
    )


# -- generated conversations ----------------------------------------------------------------------

TOOL_NAMES = ("get_weather", "get_time", "lookup")
_texts = st.text(min_size=1, max_size=12)
_args = st.dictionaries(
    st.text(min_size=1, max_size=5), st.integers() | st.text(max_size=5) | st.booleans(), max_size=3
)


@st.composite
def _user(draw: st.DrawFn) -> list[Message]:
    parts: list[TextPart | ImagePart] = [TextPart(draw(_texts))]
    if draw(st.booleans()):
        data = base64.b64encode(draw(st.binary(min_size=1, max_size=8))).decode()
        parts.insert(draw(st.integers(0, 1)), ImagePart(data=data, media_type="image/jpeg"))
    return [Message("user", parts)]


@st.composite
def _assistant(draw: st.DrawFn, counter: list[int]) -> list[Message]:
    calls = []
    for _ in range(draw(st.integers(0, 3))):
        counter[0] += 1
        calls.append(ToolCall(f"call_{counter[0]}", draw(st.sampled_from(TOOL_NAMES)), draw(_args)))
    text = draw(_texts) if not calls or draw(st.booleans()) else ""
    results = [
        Message("tool", draw(_texts), tool_call_id=c.id) for c in draw(st.permutations(calls))
    ]
    return [Message("assistant", text, calls), *results]


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    counter = [0]
    messages = [Message("system", draw(_texts)) for _ in range(draw(st.integers(0, 2)))]
    messages += draw(_user())
    for _ in range(draw(st.integers(0, 4))):
        messages += draw(st.one_of(_user(), _assistant(counter)))
    return messages


@settings(max_examples=150, deadline=None)
@given(conversation=conversations(), choice=st.sampled_from([None, "auto", "none", "required"]))
def test_generated_conversations_round_trip(
    conversation: list[Message], choice: str | None
) -> None:
    tools = [Tool(name) for name in TOOL_NAMES]
    request = Request(messages=conversation, tools=tools, tool_choice=choice)
    read = WIRE.read_request(body_of(request))
    assert read.conversation == request.conversation
    assert (read.tools, read.tool_choice) == (request.tools, request.tool_choice)
