"""Representative requests for the Ollama wire format, shared by its chat and fidelity tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from actors.adapters.ollama import OllamaWire
from actors.adapters.wire import RequestShape
from actors.messages import Request

MODEL = "llama3.2"
WIRE = OllamaWire()

PNG = "iVBORw0KGgoAAAAAAAAAAA=="
JPEG = "/9j/4AAAAAAAAAAA"

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
}

#: A conversation with two tool calls and their results, answered in the other order.
TOOL_CONVERSATION = [
    {"role": "system", "content": "Use the tools."},
    {"role": "user", "content": "get_weather Paris and get_time Europe/Paris"},
    {
        "role": "assistant",
        "content": "Looking.",
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"zone":"Europe/Paris"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "09:00"},
    {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
]

#: Requests whose every field Ollama can say: `read_request(build_request(r))` is `r`.
REQUESTS: dict[str, Request] = {
    "plain": Request(prompt="Tell me a joke", model=MODEL, max_tokens=64),
    "plain-system": Request(prompt="Tell me a joke", system="Be brief.", model=MODEL),
    "images": Request(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What are these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image", "data": JPEG, "media_type": "image/jpeg"},
                ],
            }
        ],
        model=MODEL,
    ),
    "tools": Request(
        messages=TOOL_CONVERSATION, tools=[WEATHER, TIME], model=MODEL, temperature=0.5
    ),
    "multi-turn": Request(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "get_weather Oslo"},
        ],
        tools=[WEATHER],
        model=MODEL,
    ),
    "json-schema": Request(
        prompt="Paris facts",
        response_format={"type": "json_schema", "json_schema": {"schema": CITY_SCHEMA}},
        stop=["\n\n", "END"],
        top_p=0.9,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        model=MODEL,
    ),
    "json-object": Request(prompt="Paris facts", response_format="json_object", model=MODEL),
}


def numbered_ids() -> Callable[[], str]:
    """Ids call_0, call_1...: what `TOOL_CONVERSATION` uses, so a round trip is exact."""
    numbers = itertools.count()
    return lambda: f"call_{next(numbers)}"


def body(
    request: Request, *, stream: bool = False, shape: RequestShape | None = None
) -> dict[str, Any]:
    """The body `request` is sent as; by default shaped as the adapter shapes it for a model
    that takes a temperature (the request's own)."""
    shape = shape or RequestShape(temperature=request.temperature)
    return dict(WIRE.build_request(request, MODEL, shape, stream=stream).body)
