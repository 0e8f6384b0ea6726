"""Hypothesis strategies for conversations: roles, text and image parts, tools, tool calls and
their results, always a conversation every provider accepts (each call answered, in order)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

import runtime
from actors.chat import ImagePart, Message, TextPart, Tool, ToolCall

PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

# Words, not arbitrary unicode: what is under test is structure, and every wire format carries
# any text the same way (JSON strings).
words = st.lists(
    st.sampled_from(
        ["weather", "Paris", "time", "café", "naïve", "42", "ok", "λ", "new\nline", "get_weather",
         "add", "now"]
    ),
    min_size=1,
    max_size=6,
).map(" ".join)

TOOLS = (
    Tool(
        "get_weather",
        "Weather in a city",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    ),
    Tool(
        "add",
        "Add two integers",
        {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    ),
    Tool("now", "The time", {"type": "object", "properties": {}}),
)

arguments = {
    "get_weather": st.builds(lambda w: {"city": w}, words),
    "add": st.builds(lambda a, b: {"a": a, "b": b}, st.integers(-99, 99), st.integers(-99, 99)),
    "now": st.just({}),
}


@st.composite
def user_message(draw: st.DrawFn, images: bool = True) -> Message:
    parts: list[Any] = [TextPart(draw(words))]
    if images and draw(st.booleans()):
        parts.append(ImagePart(data=PIXEL, media_type="image/png"))
    return Message("user", tuple(parts))


@st.composite
def tool_turn(draw: st.DrawFn, tools: tuple[Tool, ...], counter: list[int]) -> list[Message]:
    """An assistant turn calling 1-3 tools, then one tool message per call, in order."""
    calls = []
    for tool in draw(st.lists(st.sampled_from(tools), min_size=1, max_size=3)):
        counter[0] += 1
        args = draw(arguments[tool.name])
        calls.append(ToolCall(f"call_{counter[0]}", tool.name, json.dumps(args)))
    text = draw(st.one_of(st.just(""), words))
    assistant = Message("assistant", (TextPart(text),) if text else (), tuple(calls))
    results = [Message("tool", draw(words), tool_call_id=call.id) for call in calls]
    return [assistant, *results]


@st.composite
def conversations(
    draw: st.DrawFn, images: bool = True, forced_choice: bool = True
) -> runtime.Request:
    """A request: an optional system prompt, then 1-3 exchanges (a user turn, perhaps tool calls
    and their results, then an assistant answer before the next user turn), ending on a user or
    tool turn;
    tools offered with any tool choice (none that forces a call unless `forced_choice`)."""
    tools: tuple[Tool, ...] = tuple(draw(st.lists(st.sampled_from(TOOLS), min_size=0, max_size=3, unique_by=lambda t: t.name)))
    counter = [0]
    messages: list[Message] = []
    if draw(st.booleans()):
        messages.append(Message("system", draw(words)))
    for _ in range(draw(st.integers(1, 3))):
        if messages and messages[-1].role == "user":
            # Turns alternate, as every provider's API has them (Anthropic merges two in a row).
            messages.append(Message("assistant", draw(words)))
        messages.append(draw(user_message(images)))
        call_tools: bool = draw(st.booleans())
        if tools and call_tools:
            messages += draw(tool_turn(tools, counter))
    choices: list[Any] = [None, "auto", "none"]
    if forced_choice and tools:
        choices += ["required", {"type": "function", "function": {"name": tools[-1].name}}]
    return runtime.Request(
        messages=messages,
        tools=tools,
        tool_choice=draw(st.sampled_from(choices)) if tools else None,
        parallel_tool_calls=draw(st.sampled_from([None, True, False])) if tools else None,
        max_tokens=draw(st.integers(1, 4096)),
    )
