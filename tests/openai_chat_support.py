"""Representative chat requests for the OpenAI wire tests, shared by the translation tests and the
SDK-referee tests, and the body building both use."""

from __future__ import annotations

from typing import Any

from actors.adapters.openai import OpenAIWire
from actors.adapters.shaping import model_shape, request_shape
from actors.messages import Request

WIRE = OpenAIWire()
MODEL = "gpt-4o"

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}

#: A conversation with two tool calls answered, then a follow-up question.
TOOL_TURNS: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "get_weather Paris and get_time there"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a1",
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"city":"Paris","unit":"celsius"}',
                },
            },
            {
                "id": "call_b2",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"zone":"CET"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_a1", "content": "18C, cloudy"},
    {"role": "tool", "tool_call_id": "call_b2", "content": "14:05"},
    {"role": "assistant", "content": "18C and 14:05.", "name": "helper"},
    {"role": "user", "content": "thanks", "name": "ana"},
]

IMAGE_TURN: list[dict[str, Any]] = [
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

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


def representative_requests() -> dict[str, Request]:
    """One request for each thing the format carries, each pinned to `MODEL`."""
    return {
        "plain": Request(messages=[{"role": "user", "content": "hello"}], model=MODEL),
        "images": Request(messages=IMAGE_TURN, model=MODEL, max_tokens=120),
        "tool_turns": Request(messages=TOOL_TURNS, tools=[WEATHER, TIME], model=MODEL),
        "tool_choice_named": Request(
            messages=[{"role": "user", "content": "weather in Oslo"}],
            tools=[WEATHER, TIME],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            parallel_tool_calls=False,
            model=MODEL,
        ),
        "tool_choice_required": Request(
            messages=[{"role": "user", "content": "anything"}],
            tools=[TIME],
            tool_choice="required",
            model=MODEL,
        ),
        "json_schema": Request(
            messages=[{"role": "user", "content": "Paris facts"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "city_facts", "schema": SCHEMA, "strict": True},
            },
            model=MODEL,
        ),
        "json_object": Request(
            messages=[{"role": "user", "content": "a JSON object please"}],
            response_format={"type": "json_object"},
            model=MODEL,
        ),
        "sampling": Request(
            messages=[{"role": "user", "content": "count"}],
            stop=["\n\n", "END"],
            top_p=0.9,
            seed=7,
            presence_penalty=0.5,
            frequency_penalty=-0.25,
            user="user-42",
            temperature=1.3,
            model=MODEL,
        ),
    }


def body_for(request: Request, *, stream: bool = False, model: str = MODEL) -> dict[str, Any]:
    """The body the HTTP adapter sends for `request` to `model`, shaped as that model takes it."""
    shape = request_shape(request, model_shape(model), WIRE.temperature_range)
    return dict(WIRE.build_request(request, model, shape, stream=stream).body)
