"""A request's tools, tool choice, output format and sampling in Gemini's shape, and back.

- Tools are one ``{"functionDeclarations": [...]}`` entry; each declaration's parameters go as
  ``parametersJsonSchema`` (JSON Schema as is, which the API takes besides its OpenAPI-subset
  ``parameters``). Read back, ``parameters`` is accepted too and turned into JSON Schema.
- ``tool_choice`` is ``toolConfig.functionCallingConfig``: auto AUTO, none NONE, required ANY,
  one function ANY with ``allowedFunctionNames`` naming it.
- JSON output is ``responseMimeType: application/json``, with ``responseJsonSchema`` for a
  schema; an explicit text format is ``text/plain``. Gemini has no schema name or strict flag.
- ``stop``, ``top_p``, ``seed`` and the penalties go in ``generationConfig``. ``user`` and
  ``metadata`` have no Gemini field and are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.adapters.gemini_conversation import proto_field
from actors.chat import ResponseFormat, Tool, ToolChoice
from actors.messages import Request
from actors.validation import FieldError

__all__ = [
    "generation_fields",
    "json_schema",
    "read_generation",
    "read_tool_choice",
    "read_tools",
    "tool_fields",
]

_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}
#: generationConfig keys and the Request fields they carry.
_SAMPLING = (
    ("stopSequences", "stop"),
    ("topP", "top_p"),
    ("seed", "seed"),
    ("presencePenalty", "presence_penalty"),
    ("frequencyPenalty", "frequency_penalty"),
)


def _declaration(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["parametersJsonSchema"] = dict(tool.parameters)
    return out


def tool_fields(request: Request) -> dict[str, Any]:
    """``tools`` and ``toolConfig``, for a request that offers tools."""
    if not request.tools:
        return {}
    body: dict[str, Any] = {
        "tools": [{"functionDeclarations": [_declaration(tool) for tool in request.tools]}]
    }
    choice = request.tool_choice
    if choice is not None:
        config: dict[str, Any] = {"mode": _MODES[choice.mode]}
        if choice.name is not None:
            config["allowedFunctionNames"] = [choice.name]
        body["toolConfig"] = {"functionCallingConfig": config}
    return body


def generation_fields(request: Request) -> dict[str, Any]:
    """The ``generationConfig`` keys besides the output limit and temperature."""
    config: dict[str, Any] = {}
    for key, name in _SAMPLING:
        value = getattr(request, name)
        if value is not None and value != ():
            config[key] = list(value) if name == "stop" else value
    response_format = request.response_format
    if response_format is not None:
        if response_format.is_json:
            config["responseMimeType"] = "application/json"
        else:
            config["responseMimeType"] = "text/plain"
        if response_format.schema is not None:
            config["responseJsonSchema"] = dict(response_format.schema)
    return config


# -- inbound --------------------------------------------------------------------------------------

#: OpenAPI-subset type names (``parameters``, ``responseSchema``) in JSON Schema's spelling.
_OPENAPI_TYPES = {
    "STRING": "string",
    "NUMBER": "number",
    "INTEGER": "integer",
    "BOOLEAN": "boolean",
    "ARRAY": "array",
    "OBJECT": "object",
    "NULL": "null",
}


def json_schema(schema: Any) -> Any:
    """A schema in Gemini's OpenAPI subset as JSON Schema: type names lower-cased, ``nullable``
    as a ``null`` type, ``propertyOrdering`` dropped; everything else is shared."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = _OPENAPI_TYPES.get(value.upper(), value.lower())
        elif key in ("properties", "$defs", "definitions") and isinstance(value, Mapping):
            out[key] = {name: json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf", "not"):
            out[key] = json_schema(value)
        elif key not in ("nullable", "propertyOrdering", "property_ordering"):
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _read_tool(value: object, field: str) -> Tool:
    if not isinstance(value, Mapping):
        raise FieldError(field, f"{value!r} is not a function declaration")
    native, openapi = proto_field(value, "parametersJsonSchema"), value.get("parameters")
    if native is not None and openapi is not None:
        raise FieldError(
            field, "parameters and parameters_json_schema are mutually exclusive; set only one"
        )
    parameters = native if native is not None else json_schema(openapi)
    try:
        return Tool(
            name=value.get("name"),  # type: ignore[arg-type]  # checked by Tool
            description=value.get("description") or "",
            parameters=parameters or {"type": "object", "properties": {}},
        )
    except FieldError as exc:
        raise FieldError(f"{field}.{exc.field}", exc.message) from None


def read_tools(tools: object) -> list[Tool]:
    """The function declarations of ``tools`` (other tools, like search, have no equivalent)."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise FieldError("tools", f"{tools!r} is not a list")
    found = []
    for index, tool in enumerate(tools):
        declarations = (
            proto_field(tool, "functionDeclarations") if isinstance(tool, Mapping) else None
        )
        for number, value in enumerate(declarations or []):
            found.append(_read_tool(value, f"tools[{index}].functionDeclarations[{number}]"))
    return found


def read_tool_choice(tool_config: object) -> ToolChoice | None:
    config = (
        proto_field(tool_config, "functionCallingConfig")
        if isinstance(tool_config, Mapping)
        else None
    )
    if not isinstance(config, Mapping):
        return None
    mode = str(config.get("mode") or "AUTO").upper()
    names = proto_field(config, "allowedFunctionNames") or []
    if names and mode != "ANY":
        raise FieldError(
            "toolConfig.functionCallingConfig",
            "allowed_function_names may be set only when mode is ANY",
        )
    if mode == "ANY":
        return ToolChoice("function", names[0]) if len(names) == 1 else ToolChoice("required")
    if mode in ("AUTO", "VALIDATED", "MODE_UNSPECIFIED"):
        return ToolChoice("auto")
    if mode == "NONE":
        return ToolChoice("none")
    raise FieldError("toolConfig.functionCallingConfig.mode", f"{mode!r} is not a mode")


def _response_format(config: Mapping[str, Any]) -> ResponseFormat | None:
    mime = proto_field(config, "responseMimeType")
    schema = proto_field(config, "responseJsonSchema")
    if schema is None and proto_field(config, "responseSchema") is not None:
        schema = json_schema(proto_field(config, "responseSchema"))
    if mime is None and schema is None:
        return None
    if mime == "text/plain" and schema is None:
        return ResponseFormat("text")
    if mime not in ("application/json", None) or (mime is None and schema is not None):
        raise FieldError(
            "generationConfig.responseMimeType",
            "a response schema needs response_mime_type application/json",
        )
    return (
        ResponseFormat("json_schema", schema)
        if schema is not None
        else ResponseFormat("json_object")
    )


def read_generation(config: object) -> dict[str, Any]:
    """``generationConfig`` as `Request` keyword arguments."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise FieldError("generationConfig", f"{config!r} is not an object")
    out: dict[str, Any] = {}
    if proto_field(config, "maxOutputTokens") is not None:
        out["max_tokens"] = proto_field(config, "maxOutputTokens")
    if config.get("temperature") is not None:
        out["temperature"] = config["temperature"]
    for key, name in _SAMPLING:
        if proto_field(config, key) is not None:
            out[name] = proto_field(config, key)
    response_format = _response_format(config)
    if response_format is not None:
        out["response_format"] = response_format
    return out
