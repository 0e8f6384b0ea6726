"""The deterministic answers of the simulated providers and the fake provider server.

One documented convention, so tests and examples can ask for tool calls and JSON without a model:

- **Tool calls.** When tools are offered and `tool_choice` is not "none": a named `tool_choice`
  calls that tool; otherwise every offered tool whose name appears as a word in the last user
  message is called, in the order the tools are listed (only the first when
  `parallel_tool_calls` is false); "required" with no name mentioned calls the first tool. A
  conversation whose last message is a tool result is answered in text, never with more calls.
- **Arguments** are built from the tool's JSON Schema: for each property, its `enum`'s first
  value or its `default`, else by type: a string is the word after the tool's name in the prompt
  (or "example"), a number or integer 1, a boolean true, an array empty, an object filled the
  same way.
- **Text.** "echo: " and the last user message's words; after tool results, "results: " and the
  results' text. With a JSON response format the text is JSON instead: a value built from the
  schema the same way (a string is the last user message's first word), or
  ``{"echo": <last user text>}`` for a plain JSON object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from actors.chat import Tool, ToolCall
from actors.messages import Request

__all__ = ["SyntheticAnswer", "example_value", "synthetic_answer"]


@attrs.frozen
class SyntheticAnswer:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()


def synthetic_answer(request: Request, make_id: Callable[[int], str]) -> SyntheticAnswer:
    """The convention's answer to `request`; `make_id(n)` names the n-th tool call."""
    last = request.conversation[-1]
    if last.role == "tool":
        results = [m.text for m in request.conversation if m.role == "tool"]
        return SyntheticAnswer(_as_format(request, "results: " + " ".join(results)))
    calls = _called_tools(request)
    if calls:
        prompt = request.last_user_text
        return SyntheticAnswer(
            "",
            tuple(
                ToolCall(make_id(n), tool.name, json.dumps(_arguments(tool, prompt)))
                for n, tool in enumerate(calls)
            ),
        )
    return SyntheticAnswer(_as_format(request, "echo: " + request.last_user_text))


def _called_tools(request: Request) -> list[Tool]:
    if not request.wants_tool_calls:
        return []
    choice = request.tool_choice
    if choice is not None and choice.mode == "function":
        return [tool for tool in request.tools if tool.name == choice.name]
    words = set(re.findall(r"[A-Za-z0-9_-]+", request.last_user_text))
    called = [tool for tool in request.tools if tool.name in words]
    if not called and choice is not None and choice.mode == "required":
        called = [request.tools[0]]
    return called[:1] if request.parallel_tool_calls is False else called


def _arguments(tool: Tool, prompt: str) -> Any:
    match = re.search(rf"\b{re.escape(tool.name)}\W+([A-Za-z0-9_.-]+)", prompt)
    return example_value(tool.parameters, match[1] if match else "example")


def example_value(schema: Mapping[str, Any], word: str = "example") -> Any:
    """A value valid against `schema` (the subset tools and structured outputs use)."""
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example_value(schema[key][0], word)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: example_value(sub, word) for name, sub in properties.items()}
    if kind == "array":
        return []
    if kind in ("number", "integer"):
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return word


def _as_format(request: Request, text: str) -> str:
    """`text`, or JSON when the request asked for a JSON response."""
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return text
    if response_format.schema is not None:
        first_word = re.findall(r"\w[\w-]*", request.last_user_text)[:1] or ["example"]
        return json.dumps(example_value(response_format.schema, first_word[0]))
    return json.dumps({"echo": request.last_user_text})
