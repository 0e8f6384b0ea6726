"""A conversation in Anthropic Messages' shape, and back.

Anthropic has no system role: system and developer messages are joined into the top-level
``system``. Tool calls are ``tool_use`` blocks of the assistant message, tool results
``tool_result`` blocks of the next user message, so consecutive tool (and user) messages are merged
into one user message, results first, as the API requires. Images are ``image`` blocks with a
``base64`` or ``url`` source. A message that is one text part is sent as a plain string.

Reading back (`read_conversation`) splits a user message's ``tool_result`` blocks into tool
messages again, so a conversation survives the round trip, except for what Anthropic cannot hold:
developer messages come back as system, OpenAI's image ``detail`` and message ``name`` are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from actors.chat import ContentPart, ImagePart, Message, TextPart, ToolCall

__all__ = ["read_conversation", "write_conversation"]

Block = dict[str, Any]


def write_conversation(
    conversation: Iterable[Message],
) -> tuple[str | None, list[dict[str, Any]]]:
    """The top-level system text (None when there is none) and the ``messages`` list."""
    instructions: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in conversation:
        if message.role in ("system", "developer"):
            instructions.append(message.text)
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = _as_blocks(messages[-1]["content"]) + blocks
        else:
            messages.append({"role": role, "content": _compact(blocks)})
    return ("\n\n".join(instructions) if instructions else None), messages


def _blocks(message: Message) -> list[Block]:
    if message.role == "tool":
        return [_tool_result(message)]
    blocks = [_part_block(part) for part in message.content if _kept(part)]
    blocks += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.args}
        for call in message.tool_calls
    ]
    return blocks


def _kept(part: ContentPart) -> bool:
    """Anthropic refuses empty text blocks."""
    return not isinstance(part, TextPart) or bool(part.text)


def _tool_result(message: Message) -> Block:
    block: Block = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if message.content:
        block["content"] = message.text
    return block


def _part_block(part: ContentPart) -> Block:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if part.url is not None:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    source = {"type": "base64", "media_type": part.media_type, "data": part.data}
    return {"type": "image", "source": source}


def _compact(blocks: list[Block]) -> str | list[Block]:
    """One text block is sent as a plain string (the shape of a plain prompt)."""
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        text: str = blocks[0]["text"]
        return text
    return blocks


def _as_blocks(content: str | list[Block]) -> list[Block]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


# -- reading ----------------------------------------------------------------------------------


def read_conversation(system: object, messages: Iterable[Mapping[str, Any]]) -> list[Message]:
    """The conversation an Anthropic ``system`` and ``messages`` hold (the inverse of
    `write_conversation`). Shape errors raise KeyError, TypeError or ValueError."""
    conversation: list[Message] = []
    system_text = _text(system)
    if system_text:
        conversation.append(Message("system", system_text))
    for message in messages:
        role = message["role"]
        if role not in ("user", "assistant"):
            raise ValueError(f"role {role!r} is not user or assistant")
        conversation.extend(_read_message(role, _as_blocks(message["content"])))
    return conversation


def _read_message(role: str, blocks: list[Block]) -> list[Message]:
    """One Anthropic message: tool results become tool messages, the rest one message."""
    out = [_tool_message(b) for b in blocks if b.get("type") == "tool_result"]
    parts = [_read_part(b) for b in blocks if b.get("type") in ("text", "image")]
    calls = [
        ToolCall(b["id"], b["name"], b.get("input") or {})
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    if parts or calls:
        out.append(Message(role, tuple(parts), tuple(calls)))  # type: ignore[arg-type]
    return out


def _tool_message(block: Block) -> Message:
    return Message("tool", _text(block.get("content")), tool_call_id=block["tool_use_id"])


def _read_part(block: Block) -> ContentPart:
    if block["type"] == "text":
        return TextPart(block["text"])
    source = block["source"]
    if source["type"] == "url":
        return ImagePart(url=source["url"])
    return ImagePart(data=source["data"], media_type=source["media_type"])


def _text(content: object) -> str:
    """A string, or the text blocks of a list of blocks, joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TypeError(f"{content!r} is not text or a list of blocks")
    return "".join(b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text")
