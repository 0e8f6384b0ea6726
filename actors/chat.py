"""The conversation model: messages, content parts, tools, tool calls and output formats.

One shape for every provider. Each class is frozen and validated at construction; each also takes
the OpenAI Chat Completions dict shape (``{"role": "user", "content": [...]}``,
``{"type": "function", "function": {...}}``), since that is what most callers already hold. An
error names the field it is about, down to the item: ``messages[2].tool_calls[0].arguments``.

Images given as ``data:`` URLs are split into base64 data and a media type here, once, so every
wire format can send them in its own shape (Anthropic, Gemini and Ollama take base64, not URLs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeAlias, TypeVar

import attrs

from actors.validation import FieldError

__all__ = [
    "IMAGE_MEDIA_TYPES",
    "ROLES",
    "ContentPart",
    "ImagePart",
    "Message",
    "ResponseFormat",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "check_conversation",
    "openai_part",
    "to_messages",
    "to_response_format",
    "to_tool_choice",
    "to_tools",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool")
#: The image types every provider that takes images accepts.
IMAGE_MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: OpenAI's rule for function names, which the other providers' rules include.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
T = TypeVar("T")
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)


def _fail(field: str, message: str) -> FieldError:
    return FieldError(field, message)


@attrs.frozen
class TextPart:
    text: str


@attrs.frozen
class ImagePart:
    """An image, as a URL the provider fetches or as base64 `data` with its `media_type`."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    #: OpenAI's "low", "high" or "auto"; other providers have no such setting.
    detail: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.url is None) == (self.data is None):
            raise _fail("image", "give exactly one of url or data")
        if self.data is not None and self.media_type not in IMAGE_MEDIA_TYPES:
            raise _fail(
                "media_type",
                f"{self.media_type!r} is not one of: {', '.join(IMAGE_MEDIA_TYPES)}",
            )

    @property
    def data_url(self) -> str:
        """The image as OpenAI's ``image_url.url``: the URL, or a ``data:`` URL."""
        return self.url if self.url is not None else f"data:{self.media_type};base64,{self.data}"


ContentPart: TypeAlias = TextPart | ImagePart


def _image(url: str, detail: str | None = None) -> ImagePart:
    match = _DATA_URL.match(url)
    if match is not None:
        return ImagePart(data=match["data"], media_type=match["type"], detail=detail)
    if not url.startswith(("http://", "https://")):
        raise _fail("url", f"{url[:40]!r} is not an http(s) or base64 data: URL")
    return ImagePart(url=url, detail=detail)


def _part(value: object) -> ContentPart:
    if isinstance(value, TextPart | ImagePart):
        return value
    if isinstance(value, str):
        return TextPart(value)
    if not isinstance(value, Mapping):
        raise _fail("content", f"{value!r} is not a text or image part")
    kind = value.get("type")
    if kind == "text" and isinstance(value.get("text"), str):
        return TextPart(value["text"])
    if kind == "image_url":
        image = value.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if not isinstance(url, str):
            raise _fail("image_url.url", f"{url!r} is not a string")
        return _image(url, image.get("detail") if isinstance(image, Mapping) else None)
    if kind == "image":
        if isinstance(value.get("url"), str):
            return _image(value["url"])
        return ImagePart(data=value.get("data"), media_type=value.get("media_type"))
    raise _fail("type", f"{kind!r} is not one of: text, image_url, image")


def _content(value: object) -> tuple[ContentPart, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (TextPart(value),) if value else ()
    if isinstance(value, TextPart | ImagePart | Mapping):
        value = [value]
    if not isinstance(value, Iterable):
        raise _fail("content", f"{value!r} is not a string or a list of parts")
    parts = []
    for index, item in enumerate(value):
        try:
            parts.append(_part(item))
        except FieldError as exc:
            raise _fail(f"content[{index}].{exc.field}", exc.message) from None
    return tuple(parts)


def _arguments(value: object) -> str:
    """Tool-call arguments as JSON text of an object (OpenAI sends text, others an object)."""
    if isinstance(value, Mapping):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if not isinstance(value, str):
        raise _fail("arguments", f"{value!r} is not JSON text or an object")
    try:
        parsed = json.loads(value or "{}")
    except ValueError:
        raise _fail("arguments", f"{value[:60]!r} is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise _fail("arguments", f"{value[:60]!r} is not a JSON object")
    return value or "{}"


@attrs.frozen
class ToolCall:
    """A call the model asked for: `arguments` is JSON text of an object, as OpenAI sends it."""

    id: str
    name: str
    arguments: str = attrs.field(default="{}", converter=_arguments)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise _fail("id", f"{self.id!r} must be a non-empty string")
        if not isinstance(self.name, str) or not self.name:
            raise _fail("name", f"{self.name!r} must be a non-empty string")

    @property
    def args(self) -> dict[str, Any]:
        """The arguments, parsed."""
        parsed: dict[str, Any] = json.loads(self.arguments)
        return parsed


def _tool_call(value: object) -> ToolCall:
    if isinstance(value, ToolCall):
        return value
    if not isinstance(value, Mapping):
        raise _fail("tool_calls", f"{value!r} is not a tool call")
    function = value.get("function")
    source = function if isinstance(function, Mapping) else value
    return ToolCall(
        id=value.get("id"),  # type: ignore[arg-type]  # checked by ToolCall
        name=source.get("name"),  # type: ignore[arg-type]
        arguments=source.get("arguments", "{}"),
    )


def _each(
    value: object, field: str, what: str, convert: Callable[[object], T], single: type
) -> tuple[T, ...]:
    """A list of items (None: none), each converted; an error names the item's index. A lone
    item (a string, a mapping, a `single`) is refused: it is not a list."""
    if value is None:
        return ()
    if isinstance(value, str | Mapping | single) or not isinstance(value, Iterable):
        raise _fail(field, f"{value!r} is not a list of {what}")
    items = []
    for index, item in enumerate(value):
        try:
            items.append(convert(item))
        except FieldError as exc:
            raise _fail(f"{field}[{index}].{exc.field}", exc.message) from None
    return tuple(items)


def _tool_calls(value: object) -> tuple[ToolCall, ...]:
    return _each(value, "tool_calls", "tool calls", _tool_call, ToolCall)


@attrs.frozen
class Message:
    """One turn of a conversation.

    `content` takes a string or a list of parts and is kept as parts. An assistant message may
    carry `tool_calls` (and no text); a tool message answers one call, by `tool_call_id`.
    """

    role: Role
    content: tuple[ContentPart, ...] = attrs.field(default=(), converter=_content)
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_tool_calls)
    tool_call_id: str | None = None
    #: A participant's name (OpenAI's `name`); most providers have no such field.
    name: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.role not in ROLES:
            raise _fail("role", f"{self.role!r} is not one of: {', '.join(ROLES)}")
        if self.tool_calls and self.role != "assistant":
            raise _fail("tool_calls", f"only assistant messages carry tool calls, not {self.role}")
        if self.role == "tool":
            if not isinstance(self.tool_call_id, str) or not self.tool_call_id:
                raise _fail("tool_call_id", "a tool message needs the id of the call it answers")
        elif self.tool_call_id is not None:
            raise _fail("tool_call_id", f"only tool messages carry one, not {self.role}")
        if self.role != "user" and any(isinstance(p, ImagePart) for p in self.content):
            raise _fail("content", f"images go in user messages, not {self.role}")
        if not self.content and not self.tool_calls:
            raise _fail("content", "must not be empty")

    @property
    def text(self) -> str:
        """The text parts, joined."""
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(part for part in self.content if isinstance(part, ImagePart))

    def to_openai(self) -> dict[str, Any]:
        """The message in OpenAI's chat shape (what `Request(messages=...)` also takes)."""
        out: dict[str, Any] = {"role": self.role}
        if self.images:
            out["content"] = [openai_part(part) for part in self.content]
        else:
            out["content"] = self.text if self.content else None
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


def openai_part(part: ContentPart) -> dict[str, Any]:
    """A content part in OpenAI's chat shape."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: dict[str, Any] = {"url": part.data_url}
    if part.detail is not None:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _message(value: object) -> Message:
    if isinstance(value, Message):
        return value
    if not isinstance(value, Mapping):
        raise _fail("role", f"{value!r} is not a message")
    unknown = set(value) - {"role", "content", "tool_calls", "tool_call_id", "name"}
    if unknown:
        raise _fail(sorted(unknown)[0], "is not a message field")
    return Message(
        role=value.get("role"),  # type: ignore[arg-type]  # checked by Message
        content=value.get("content"),
        tool_calls=value.get("tool_calls"),
        tool_call_id=value.get("tool_call_id"),
        name=value.get("name"),
    )


def to_messages(value: object) -> tuple[Message, ...]:
    """`Request.messages`: a list of `Message` or OpenAI-shaped dicts; errors name the index."""
    return _each(value, "messages", "messages", _message, Message)


def check_conversation(messages: tuple[Message, ...]) -> None:
    """What every provider rejects: a tool result with no matching call before it, a
    conversation with no user turn, tool calls left unanswered before the next user turn."""
    if not any(m.role == "user" for m in messages):
        raise _fail("messages", "must hold at least one user message")
    open_calls: dict[str, int] = {}
    for index, message in enumerate(messages):
        if message.role == "tool":
            if message.tool_call_id not in open_calls:
                raise _fail(
                    f"messages[{index}].tool_call_id",
                    f"{message.tool_call_id!r} answers no tool call of an earlier assistant "
                    "message",
                )
            del open_calls[message.tool_call_id]
        elif open_calls and message.role in ("user", "assistant"):
            missing = ", ".join(open_calls)
            raise _fail(f"messages[{index}]", f"tool call(s) {missing} have no tool message")
        for call in message.tool_calls:
            if call.id in open_calls:
                raise _fail(f"messages[{index}].tool_calls", f"id {call.id!r} is used twice")
            open_calls[call.id] = index
    if open_calls:
        missing = ", ".join(open_calls)
        raise _fail("messages", f"tool call(s) {missing} have no tool message")


@attrs.frozen
class Tool:
    """A function the model may call; `parameters` is its JSON Schema (an object schema)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(factory=lambda: {"type": "object", "properties": {}})
    #: OpenAI's strict mode: the arguments always match the schema.
    strict: bool | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOOL_NAME.match(self.name):
            raise _fail("name", f"{self.name!r} must be 1-64 letters, digits, _ or -")
        if not isinstance(self.description, str):
            raise _fail("description", f"{self.description!r} is not a string")
        if not isinstance(self.parameters, Mapping) or self.parameters.get("type") != "object":
            raise _fail("parameters", "must be a JSON Schema with type 'object'")


def _tool(value: object) -> Tool:
    if isinstance(value, Tool):
        return value
    if not isinstance(value, Mapping):
        raise _fail("name", f"{value!r} is not a tool")
    if value.get("type", "function") != "function":
        raise _fail("type", f"{value.get('type')!r} is not 'function'")
    source = value.get("function", value)
    if not isinstance(source, Mapping):
        raise _fail("function", f"{source!r} is not an object")
    return Tool(
        name=source.get("name"),  # type: ignore[arg-type]  # checked by Tool
        description=source.get("description") or "",
        parameters=source.get("parameters") or {"type": "object", "properties": {}},
        strict=source.get("strict"),
    )


def to_tools(value: object) -> tuple[Tool, ...]:
    tools = _each(value, "tools", "tools", _tool, Tool)
    names = [tool.name for tool in tools]
    for name in names:
        if names.count(name) > 1:
            raise _fail("tools", f"{name!r} is defined twice")
    return tuple(tools)


@attrs.frozen
class ToolChoice:
    """auto (the model decides), none, required (some tool), or function (the one named)."""

    mode: Literal["auto", "none", "required", "function"]
    name: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("auto", "none", "required", "function"):
            raise _fail("tool_choice", f"{self.mode!r} is not one of: auto, none, required")
        if (self.mode == "function") != (self.name is not None):
            raise _fail("tool_choice", "a function choice names exactly one function")

    def to_openai(self) -> str | dict[str, Any]:
        if self.mode == "function":
            return {"type": "function", "function": {"name": self.name}}
        return self.mode


def to_tool_choice(value: object) -> ToolChoice | None:
    if value is None or isinstance(value, ToolChoice):
        return value
    if isinstance(value, str):
        if value in ("auto", "none", "required"):
            return ToolChoice(value)  # type: ignore[arg-type]
        raise _fail("tool_choice", f"{value!r} is not one of: auto, none, required")
    if isinstance(value, Mapping):
        function = value.get("function")
        name = function.get("name") if isinstance(function, Mapping) else value.get("name")
        if isinstance(name, str) and name:
            return ToolChoice("function", name)
    raise _fail("tool_choice", f"{value!r} is not auto, none, required or a named function")


@attrs.frozen
class ResponseFormat:
    """text, json_object (any JSON object) or json_schema (one matching `schema`)."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: Mapping[str, Any] | None = None
    #: The schema's name (OpenAI and Anthropic's forced tool need one).
    name: str = "response"
    strict: bool | None = None

    def __attrs_post_init__(self) -> None:
        if self.type not in ("text", "json_object", "json_schema"):
            raise _fail(
                "response_format.type",
                f"{self.type!r} is not one of: text, json_object, json_schema",
            )
        if (self.type == "json_schema") != (self.schema is not None):
            raise _fail("response_format.schema", "json_schema needs a schema, and only it")
        if self.schema is not None and not isinstance(self.schema, Mapping):
            raise _fail("response_format.schema", f"{self.schema!r} is not an object")
        if not _TOOL_NAME.match(self.name):
            raise _fail("response_format.name", f"{self.name!r} must be 1-64 letters, digits, _ or -")

    @property
    def is_json(self) -> bool:
        return self.type != "text"

    def to_openai(self) -> dict[str, Any]:
        if self.type != "json_schema":
            return {"type": self.type}
        spec: dict[str, Any] = {"name": self.name, "schema": self.schema}
        if self.strict is not None:
            spec["strict"] = self.strict
        return {"type": "json_schema", "json_schema": spec}


def to_response_format(value: object) -> ResponseFormat | None:
    if value is None or isinstance(value, ResponseFormat):
        return value
    if isinstance(value, str):
        return ResponseFormat(value)  # type: ignore[arg-type]  # checked by ResponseFormat
    if not isinstance(value, Mapping):
        raise _fail("response_format", f"{value!r} is not a response format")
    spec = value.get("json_schema")
    if isinstance(spec, Mapping):
        return ResponseFormat(
            "json_schema", spec.get("schema"), spec.get("name") or "response", spec.get("strict")
        )
    return ResponseFormat(
        value.get("type", "text"),
        value.get("schema"),
        value.get("name") or "response",
        value.get("strict"),
    )
