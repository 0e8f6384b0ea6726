"""A conversation in Ollama's ``/api/chat`` shape, and back.

Ollama's message is ``{"role", "content", "images"?, "tool_calls"?, "tool_name"?}``: one text per
message, images as a list of bare base64 strings (no URLs, no media type), assistant tool calls
as ``{"function": {"name", "arguments": <object>}}`` without ids, and a tool result naming the
function it answers (``tool_name``), not a call id. So ids are made on the way in, and a tool
result's ``tool_name`` is found on the way out from the earlier call with its id; on the way in,
a result answers the earliest call of that name still unanswered.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from actors.adapters.wire import WireError
from actors.chat import ImagePart, Message, TextPart, ToolCall
from actors.errors import FailureKind
from actors.validation import FieldError

__all__ = ["image_media_type", "read_messages", "wire_messages"]

#: Ollama has no developer role; its instructions are system instructions.
_WIRE_ROLE = {"system": "system", "developer": "system"}
#: The first bytes of each image type every provider takes, as they start in base64.
_MAGIC = (
    ("iVBORw0KGgo", "image/png"),
    ("/9j/", "image/jpeg"),
    ("R0lGOD", "image/gif"),
    ("UklGR", "image/webp"),
)


def wire_messages(
    conversation: Sequence[Message], system_role: str = "system"
) -> list[dict[str, Any]]:
    """`conversation` as Ollama's ``messages``; `system_role` "user" folds the instructions
    into the first user message (for a model whose template drops system messages)."""
    names = {call.id: call.name for message in conversation for call in message.tool_calls}
    if system_role == "user":
        conversation = _folded(conversation)
    return [_wire_message(message, names) for message in conversation]


def _folded(conversation: Sequence[Message]) -> list[Message]:
    instructions = "\n\n".join(m.text for m in conversation if m.role in ("system", "developer"))
    rest = [m for m in conversation if m.role not in ("system", "developer")]
    if not instructions:
        return rest
    first = next(i for i, m in enumerate(rest) if m.role == "user")
    user = rest[first]
    rest[first] = Message("user", (TextPart(f"{instructions}\n\n{user.text}"), *user.images))
    return rest


def _wire_message(message: Message, names: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": _WIRE_ROLE.get(message.role, message.role)}
    out["content"] = message.text
    if message.images:
        out["images"] = [_wire_image(image) for image in message.images]
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": call.name, "arguments": call.args}} for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_name"] = names[message.tool_call_id]
    return out


def _wire_image(image: ImagePart) -> str:
    if image.data is None:
        raise WireError(FailureKind.UNSUPPORTED, "ollama takes images as base64 data, not URLs")
    return image.data


def image_media_type(data: str) -> str:
    """The media type of base64 image `data`, from its first bytes (Ollama sends none); PNG
    when they match no known type (Ollama itself sniffs the bytes, so any label serves)."""
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), "image/png")


def read_messages(messages: Iterable[Any], make_id: Callable[[], str]) -> tuple[Message, ...]:
    """Ollama's ``messages`` as the runtime's; ids made by `make_id`. Errors name the index."""
    open_calls: list[ToolCall] = []
    out = []
    for index, item in enumerate(messages):
        try:
            out.append(_read_message(item, open_calls, make_id))
        except FieldError as exc:
            raise FieldError(f"messages[{index}].{exc.field}", exc.message) from None
    return tuple(out)


def _read_message(item: Any, open_calls: list[ToolCall], make_id: Callable[[], str]) -> Message:
    if not isinstance(item, Mapping):
        raise FieldError("role", f"{item!r} is not a message")
    role = item.get("role")
    content = item.get("content") or ""
    if not isinstance(content, str):
        raise FieldError("content", f"{content!r} is not a string")
    parts: list[TextPart | ImagePart] = [TextPart(content)] if content else []
    parts += [_read_image(n, data) for n, data in enumerate(item.get("images") or ())]
    if role == "tool":
        call = _answered_call(item.get("tool_name"), open_calls)
        return Message("tool", tuple(parts), tool_call_id=call.id)
    calls = tuple(
        _read_call(n, call, make_id) for n, call in enumerate(item.get("tool_calls") or ())
    )
    open_calls += calls
    return Message(role, tuple(parts), calls)  # type: ignore[arg-type]  # checked by Message


def _read_image(index: int, data: Any) -> ImagePart:
    if not isinstance(data, str):
        raise FieldError(f"images[{index}]", "is not a base64 string")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise FieldError(f"images[{index}]", "is not valid base64") from None
    return ImagePart(data=data, media_type=image_media_type(data))


def _read_call(index: int, call: Any, make_id: Callable[[], str]) -> ToolCall:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping):
        raise FieldError(f"tool_calls[{index}].function", "is not an object")
    try:
        return ToolCall(
            call.get("id") or make_id(),
            function.get("name"),  # type: ignore[arg-type]  # checked by ToolCall
            function.get("arguments") or {},
        )
    except FieldError as exc:
        raise FieldError(f"tool_calls[{index}].function.{exc.field}", exc.message) from None


def _answered_call(name: object, open_calls: list[ToolCall]) -> ToolCall:
    """The earliest unanswered call named `name` (any, when the result names none), removed."""
    for index, call in enumerate(open_calls):
        if name is None or call.name == name:
            return open_calls.pop(index)
    raise FieldError("tool_name", f"{name!r} answers no tool call of an earlier assistant message")
