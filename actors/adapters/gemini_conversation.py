"""A conversation in Gemini's shape and back: ``contents`` with roles user and model, and
``systemInstruction``.

- System and developer messages become the parts of ``systemInstruction`` (Gemini has no such
  role), one text part per message; read back, each part is a system message.
- Assistant messages are ``model`` contents: a text part, then one ``functionCall`` part per
  tool call, ``args`` the parsed arguments and ``id`` the call's id (the API takes and echoes it;
  its replies mostly carry none, so ids are made on the way in).
- Tool results are ``user`` contents of ``functionResponse`` parts, consecutive results in one
  content. Gemini matches a response to its call by function name, so the name is looked up from
  the earlier assistant message's call with that id; ``response`` is ``{"output": <text>}``, the
  key the API documents for a function's output.
- A model turn's first function call carries its ``thoughtSignature``: the one Gemini sent with
  it (remembered by call id), else the bypass value Gemini documents for calls it did not make.
- Images are ``inlineData`` (base64 and a MIME type); Gemini cannot fetch an image URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from actors.adapters.wire import WireError, new_call_id
from actors.chat import ContentPart, ImagePart, Message, TextPart, ToolCall
from actors.errors import FailureKind
from actors.validation import FieldError

__all__ = [
    "FOREIGN_SIGNATURE",
    "from_contents",
    "proto_field",
    "system_instruction_texts",
    "to_contents",
]


def _text_parts(message: Message) -> list[dict[str, Any]]:
    return [{"text": message.text}] if message.text else []


def _user_part(part: ContentPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if part.data is None:
        raise WireError(FailureKind.UNSUPPORTED, "gemini takes images as base64 data, not URLs")
    return {"inlineData": {"mimeType": part.media_type, "data": part.data}}


#: What Gemini documents for a function call it did not make itself (another provider's, or one
#: whose signature is not known here): it skips the thought-signature check for that call.
FOREIGN_SIGNATURE = "skip_thought_signature_validator"

#: A call id's thought signature, when the reply that made the call carried one.
SignatureOf = Callable[[str], "str | None"]


def _call_parts(calls: Iterable[ToolCall], signature_of: SignatureOf) -> list[dict[str, Any]]:
    """The calls of one model turn. Gemini 3 refuses a turn whose first call lacks its thought
    signature (parallel calls carry one, on the first): the one it sent, else the bypass."""
    parts = []
    for index, call in enumerate(calls):
        part: dict[str, Any] = {
            "functionCall": {"id": call.id, "name": call.name, "args": call.args}
        }
        signature = signature_of(call.id) or (FOREIGN_SIGNATURE if index == 0 else None)
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _response_part(message: Message, names: Mapping[str, str]) -> dict[str, Any]:
    call_id = message.tool_call_id or ""
    if call_id not in names:
        raise WireError(
            FailureKind.UNSUPPORTED, f"tool result {call_id!r} answers no earlier tool call"
        )
    return {
        "functionResponse": {
            "id": call_id,
            "name": names[call_id],
            "response": {"output": message.text},
        }
    }


def to_contents(
    conversation: Iterable[Message],
    *,
    fold_system: bool = False,
    signature_of: SignatureOf = lambda call_id: None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """The system texts (for ``systemInstruction``) and the ``contents``.

    `fold_system` puts the system texts before the first user message's parts instead, for a
    model that takes no system instruction. `signature_of` gives a call's thought signature.
    """
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for message in conversation:
        if message.role in ("system", "developer"):
            system.append(message.text)
        elif message.role == "tool":
            part = _response_part(message, names)
            last = contents[-1] if contents else None
            if (
                last is not None
                and last["role"] == "user"
                and "functionResponse" in last["parts"][0]
            ):
                last["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
        elif message.role == "assistant":
            names.update((call.id, call.name) for call in message.tool_calls)
            parts = _text_parts(message) + _call_parts(message.tool_calls, signature_of)
            contents.append({"role": "model", "parts": parts})
        else:
            contents.append({"role": "user", "parts": [_user_part(p) for p in message.content]})
    if fold_system and system:
        _fold(system, contents)
        return [], contents
    return system, contents


def _fold(system: list[str], contents: list[dict[str, Any]]) -> None:
    """The system texts as a leading text part of the first user message."""
    first = next(
        c for c in contents if c["role"] == "user" and "functionResponse" not in c["parts"][0]
    )
    first["parts"].insert(0, {"text": "\n\n".join(system)})


# -- inbound --------------------------------------------------------------------------------------


def proto_field(value: Mapping[str, Any], camel: str) -> Any:
    """A field by its JSON name or its proto (snake_case) name: the API takes both."""
    if camel in value:
        return value[camel]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return value.get(snake)


def _object(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FieldError(field, f"{value!r} is not an object")
    return value


def _parts(content: object, field: str) -> list[Mapping[str, Any]]:
    parts = _object(content, field).get("parts")
    if not isinstance(parts, list) or not parts:
        raise FieldError(f"{field}.parts", "must be a non-empty list")
    return [_object(part, f"{field}.parts[{i}]") for i, part in enumerate(parts)]


def system_instruction_texts(instruction: object) -> list[str]:
    """The text parts of a ``systemInstruction`` (a Content; the API also takes a bare string)."""
    if instruction is None:
        return []
    if isinstance(instruction, str):
        return [instruction]
    texts = []
    for index, part in enumerate(_parts(instruction, "systemInstruction")):
        if not isinstance(part.get("text"), str):
            raise FieldError(f"systemInstruction.parts[{index}]", "takes only text parts")
        texts.append(part["text"])
    return texts


def _image(part: Mapping[str, Any], field: str) -> ImagePart:
    blob = _object(proto_field(part, "inlineData"), f"{field}.inlineData")
    try:
        return ImagePart(data=blob.get("data"), media_type=proto_field(blob, "mimeType"))
    except FieldError as exc:
        raise FieldError(f"{field}.inlineData", exc.message) from None


def _user_content(parts: list[Mapping[str, Any]], field: str) -> Message:
    content: list[ContentPart] = []
    for index, part in enumerate(parts):
        if isinstance(part.get("text"), str):
            content.append(TextPart(part["text"]))
        elif proto_field(part, "inlineData") is not None:
            content.append(_image(part, f"{field}.parts[{index}]"))
        else:
            raise FieldError(f"{field}.parts[{index}]", "is not a text or inlineData part")
    return Message("user", content)


_UNANSWERED = (
    "Please ensure that the number of function response parts is equal to the number of "
    "function call parts of the function call turn."
)


class _Calls:
    """The function calls made so far that have no response yet, to match responses to."""

    def __init__(self) -> None:
        self.open: list[ToolCall] = []

    def model_content(self, parts: list[Mapping[str, Any]], field: str) -> Message:
        texts: list[str] = []
        calls: list[ToolCall] = []
        for index, part in enumerate(parts):
            call = proto_field(part, "functionCall")
            if call is not None:
                calls.append(_tool_call(call, f"{field}.parts[{index}].functionCall"))
            elif isinstance(part.get("text"), str) and not part.get("thought"):
                texts.append(part["text"])
        self.open = list(calls)
        return Message("assistant", "".join(texts), calls)

    def answer(self, part: Mapping[str, Any], field: str) -> Message:
        response = _object(proto_field(part, "functionResponse"), field)
        call_id, name = response.get("id"), response.get("name")
        match = next(
            (c for c in self.open if (c.id == call_id if call_id else c.name == name)), None
        )
        if match is None:
            raise FieldError(
                field,
                "Please ensure that function response turn comes immediately after a function "
                "call turn, and answers one of its calls.",
            )
        self.open.remove(match)
        return Message("tool", _output_text(response.get("response")), tool_call_id=match.id)


def _tool_call(call: object, field: str) -> ToolCall:
    value = _object(call, field)
    args = value.get("args") or {}
    try:
        return ToolCall(value.get("id") or new_call_id(), value.get("name"), args)  # type: ignore[arg-type]
    except FieldError as exc:
        raise FieldError(f"{field}.{exc.field}", exc.message) from None


def _output_text(response: object) -> str:
    """A function response's text: its ``output`` when that is text, else the JSON of it."""
    if isinstance(response, Mapping) and set(response) == {"output"}:
        output = response["output"]
        return output if isinstance(output, str) else json.dumps(output)
    return json.dumps(response if response is not None else {})


def from_contents(contents: object) -> list[Message]:
    """``contents`` back into messages: function calls keep the ids they carry (or get new
    ones), and a response is matched to its call by id, else by name."""
    if not isinstance(contents, list) or not contents:
        raise FieldError("contents", "contents is not specified")
    calls = _Calls()
    messages: list[Message] = []
    for index, content in enumerate(contents):
        field = f"contents[{index}]"
        parts = _parts(content, field)
        role = _object(content, field).get("role", "user")
        answers = [p for p in parts if proto_field(p, "functionResponse") is not None]
        if calls.open and not answers:
            raise FieldError(field, _UNANSWERED)
        if role == "model":
            messages.append(calls.model_content(parts, field))
            continue
        if role != "user":
            raise FieldError(
                f"{field}.role", f"Please use a valid role: user, model (not {role!r})"
            )
        for number, part in enumerate(answers):
            messages.append(calls.answer(part, f"{field}.parts[{number}].functionResponse"))
        rest = [p for p in parts if proto_field(p, "functionResponse") is None]
        if rest:
            if calls.open:
                raise FieldError(field, _UNANSWERED)
            messages.append(_user_content(rest, field))
    return messages
