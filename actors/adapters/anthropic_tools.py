"""Tools, tool choice and JSON output in Anthropic Messages' shape, and back.

Tools carry their JSON Schema as ``input_schema``; ``tool_choice`` is ``auto``, ``any`` (OpenAI's
"required"), ``tool`` (one named) or ``none``, and ``disable_parallel_tool_use`` says "at most
one call" (``parallel_tool_calls=False``); it needs a ``tool_choice``, so a request that sets it
without one sends ``auto``; reading back, an ``auto`` choice that carries it is no choice (the
same to the model as an explicit "auto").

Anthropic has no JSON mode here: a JSON answer is asked for with one more tool, the *JSON tool*,
whose ``input_schema`` is the wanted schema (``{"type": "object"}`` for any object), forced with
``tool_choice`` (or ``any`` when the request also offers its own tools). Its call's input is the
answer's text, not a tool call. The reply carries no trace of the request, so the JSON tool is
known by its name: `JSON_TOOL_PREFIX` and the response format's name ("json_answer_response").
A request's own tool must not use that prefix (UNSUPPORTED).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from actors.adapters.wire import WireError
from actors.chat import ResponseFormat, Tool, ToolChoice
from actors.errors import FailureKind
from actors.messages import Request

__all__ = [
    "JSON_TOOL_PREFIX",
    "is_json_tool",
    "read_tools",
    "write_tools",
]

#: What names the JSON tool (see the module docstring).
JSON_TOOL_PREFIX = "json_answer_"
#: Anthropic's longest tool name.
MAX_TOOL_NAME = 64
_JSON_OBJECT = "Answer by calling this tool: its input is the answer, a JSON object."
_JSON_SCHEMA = "Answer by calling this tool: its input is the answer, JSON matching the schema."


def is_json_tool(name: object) -> bool:
    return isinstance(name, str) and name.startswith(JSON_TOOL_PREFIX)


def json_tool_name(response_format: ResponseFormat) -> str:
    return (JSON_TOOL_PREFIX + response_format.name)[:MAX_TOOL_NAME]


def write_tools(request: Request) -> dict[str, Any]:
    """The body's ``tools`` and ``tool_choice`` for `request` (empty when it has neither).

    A tool of the request's own named like the JSON tool would be read back as the answer's
    text: UNSUPPORTED, before anything is sent."""
    clash = next((tool.name for tool in request.tools if is_json_tool(tool.name)), None)
    if clash is not None:
        raise WireError(
            FailureKind.UNSUPPORTED,
            f"tool {clash!r}: names starting {JSON_TOOL_PREFIX!r} are reserved",
        )
    tools = [_tool(tool) for tool in request.tools]
    json_format = request.response_format
    if json_format is not None and json_format.is_json:
        tools.append(_json_tool(json_format))
        choice = _json_choice(request, json_tool_name(json_format))
    else:
        choice = _choice(request.tool_choice)
    if not tools:
        return {}
    if request.parallel_tool_calls is not None and choice.get("type") != "none":
        choice = {"type": "auto", **choice}
        choice["disable_parallel_tool_use"] = not request.parallel_tool_calls
    return {"tools": tools, "tool_choice": choice} if choice else {"tools": tools}


def _tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["input_schema"] = copy.deepcopy(dict(tool.parameters))  # the body is the caller's to change
    if tool.strict is not None:
        out["strict"] = tool.strict
    return out


def _json_tool(response_format: ResponseFormat) -> dict[str, Any]:
    schema = response_format.schema
    out: dict[str, Any] = {
        "name": json_tool_name(response_format),
        "description": _JSON_OBJECT if schema is None else _JSON_SCHEMA,
        "input_schema": {"type": "object"} if schema is None else copy.deepcopy(dict(schema)),
    }
    if response_format.strict is not None:
        out["strict"] = response_format.strict
    return out


def _choice(choice: ToolChoice | None) -> dict[str, Any]:
    if choice is None:
        return {}
    if choice.mode == "function":
        return {"type": "tool", "name": choice.name}
    return {"type": {"required": "any"}.get(choice.mode, choice.mode)}


def _json_choice(request: Request, json_tool: str) -> dict[str, Any]:
    """Force the JSON tool; with tools of the request's own, force *a* call (``any``): the JSON
    tool's is the answer, another's a tool call. A named choice or "none" is kept."""
    choice = request.tool_choice
    if choice is not None and choice.mode == "function":
        return _choice(choice)
    if request.tools and (choice is None or choice.mode != "none"):
        return {"type": "any"}
    return {"type": "tool", "name": json_tool}


# -- reading ----------------------------------------------------------------------------------


def read_tools(body: Mapping[str, Any]) -> dict[str, Any]:
    """`Request` arguments from the body's ``tools`` and ``tool_choice`` (the inverse of
    `write_tools`): tools, tool_choice, parallel_tool_calls, response_format."""
    tools = [t for t in body.get("tools") or [] if not is_json_tool(t["name"])]
    json_tools = [t for t in body.get("tools") or [] if is_json_tool(t["name"])]
    out: dict[str, Any] = {"tools": [_read_tool(tool) for tool in tools]}
    choice = dict(body.get("tool_choice") or {})
    if "disable_parallel_tool_use" in choice:
        out["parallel_tool_calls"] = not choice.pop("disable_parallel_tool_use")
        if choice == {"type": "auto"}:  # only there to carry the setting
            choice = {}
    if json_tools:
        out["response_format"] = _read_json_tool(json_tools[0])
        if choice.get("type") == "any" or choice.get("name") == json_tools[0]["name"]:
            choice = {}
    out["tool_choice"] = _read_choice(choice)
    return out


def _read_tool(tool: Mapping[str, Any]) -> Tool:
    return Tool(
        name=tool["name"],
        description=tool.get("description") or "",
        parameters=tool["input_schema"],
        strict=tool.get("strict"),
    )


def _read_json_tool(tool: Mapping[str, Any]) -> ResponseFormat:
    name = tool["name"][len(JSON_TOOL_PREFIX) :]
    strict = tool.get("strict")
    if tool.get("description") == _JSON_OBJECT:
        return ResponseFormat("json_object", None, name, strict)
    return ResponseFormat("json_schema", tool["input_schema"], name, strict)


def _read_choice(choice: Mapping[str, Any]) -> ToolChoice | None:
    kind = choice.get("type")
    if kind is None:
        return None
    if kind == "tool":
        return ToolChoice("function", choice["name"])
    modes = {"auto": "auto", "any": "required", "none": "none"}
    if kind not in modes:
        raise ValueError(f"tool_choice type {kind!r} is not auto, any, tool or none")
    return ToolChoice(modes[kind])  # type: ignore[arg-type]
