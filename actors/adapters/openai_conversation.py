"""The conversation in OpenAI Chat Completions' shape: messages and tools (tool choice and
response format are `actors.chat`'s own `to_openai`).

Outbound, `wire_messages` keeps every role but shapes the instructions (system and developer
messages) for the model: sent as they are under ``system_role = "system"``, all as ``developer``
for the reasoning models that want it, and folded into the first user message for the models that
take neither (o1-mini, o1-preview). Content is a plain string unless it holds an image or several
parts, so a plain prompt's body stays what it always was. The way back in is `actors.chat`'s own
reading of the OpenAI shapes (`to_messages`, `to_tools`...), which inverts these exactly for
everything the format expresses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actors.chat import (
    ContentPart,
    Message,
    TextPart,
    Tool,
    ToolCall,
    openai_part,
)

__all__ = [
    "wire_messages",
    "wire_tools",
]

_INSTRUCTIONS = ("system", "developer")


def _content(parts: Sequence[ContentPart]) -> str | list[dict[str, Any]] | None:
    """A string for one text part (what a plain prompt always sent), else the list of parts."""
    if not parts:
        return None
    if len(parts) == 1 and isinstance(parts[0], TextPart):
        return parts[0].text
    return [openai_part(part) for part in parts]


def _tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _message(message: Message, role: str) -> dict[str, Any]:
    out: dict[str, Any] = {"role": role, "content": _content(message.content)}
    if message.tool_calls:
        out["tool_calls"] = [_tool_call(call) for call in message.tool_calls]
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
        # A tool message has no `name` on this wire, and its content must be text.
        out["content"] = message.text
    elif message.name is not None:
        out["name"] = message.name
    return out


def _fold(instructions: str, message: Message) -> Message:
    """`message` (the first user turn) with the instructions before its text, as the models that
    take no system message want them."""
    content = message.content
    if len(content) == 1 and isinstance(content[0], TextPart):
        folded: tuple[ContentPart, ...] = (TextPart(f"{instructions}\n\n{content[0].text}"),)
    else:
        folded = (TextPart(f"{instructions}\n\n"), *content)
    return Message("user", folded, name=message.name)


def wire_messages(conversation: Sequence[Message], system_role: str) -> list[dict[str, Any]]:
    """`conversation` as OpenAI messages for a model whose instructions role is `system_role`
    ("system", "developer", or "user": folded into the first user message)."""
    if system_role != "user":
        return [
            _message(
                m, system_role if m.role in _INSTRUCTIONS and system_role != "system" else m.role
            )
            for m in conversation
        ]
    instructions = "\n\n".join(m.text for m in conversation if m.role in _INSTRUCTIONS)
    out: list[dict[str, Any]] = []
    for message in conversation:
        if message.role in _INSTRUCTIONS:
            continue
        if instructions and message.role == "user":
            message, instructions = _fold(instructions, message), ""
        out.append(_message(message, message.role))
    return out


def wire_tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = dict(tool.parameters)
        if tool.strict is not None:
            function["strict"] = tool.strict
        out.append({"type": "function", "function": function})
    return out
