"""Ollama chat API: the local-LLM path.

``POST {base_url}/api/chat``. Ollama streams unless the body says ``"stream": false``, so `complete`
always says so explicitly. Streaming is NDJSON: one JSON object per line with the next piece of
``message.content``; a tool call arrives whole, in one line's ``message.tool_calls`` (never in
fragments); the last line has ``"done": true``, ``done_reason`` and the token counts
(``prompt_eval_count``, ``eval_count``). A failure after streaming began arrives as a line
``{"error": "..."}``. No key by default; set ``api_key_env`` for an Ollama behind an auth proxy.

What the body cannot say (see the capability contract): image URLs (images are base64), a
``tool_choice`` of "required" or one named function (there is no tool_choice: "none" is sent as
no tools). ``user`` and ``metadata`` are hints Ollama has no field for. Tool calls carry no ids:
they are made on the way in (`new_call_id`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from actors.adapters.http import register_wire
from actors.adapters.ollama_conversation import read_messages, wire_messages
from actors.adapters.parsing import as_dict, text_or_empty, token_count
from actors.adapters.sse import NDJSONDecoder
from actors.adapters.status import in_band_kind
from actors.adapters.wire import (
    Deltas,
    RequestShape,
    StreamState,
    WireDefaults,
    WireError,
    WireRequest,
    new_call_id,
)
from actors.chat import Message, ResponseFormat, ToolCall, to_tools
from actors.errors import FailureKind
from actors.messages import Completion, Request, Usage
from actors.validation import FieldError

__all__ = ["OllamaWire"]

PATH = "/api/chat"
#: Request fields sent as the Ollama option of the same name, in the order they are sent.
_SAMPLING = ("top_p", "seed", "stop", "presence_penalty", "frequency_penalty")


def _usage(reply: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=token_count(reply.get("prompt_eval_count")),
        output_tokens=token_count(reply.get("eval_count")),
    )


def _raise_if_error(reply: dict[str, Any]) -> None:
    if "error" in reply:
        raise WireError(in_band_kind(reply["error"]), f"error mid-stream: {reply['error']}")


def _done_reason(reply: dict[str, Any]) -> str | None:
    reason = reply.get("done_reason")
    return str(reason) if reason else None


def _tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    """A reply's calls; the id kept when a server sends one, else made."""
    calls = []
    for item in message.get("tool_calls") or ():
        call = as_dict(item, "tool_call")
        function = as_dict(call["function"], "tool_call.function")
        calls.append(
            ToolCall(
                call.get("id") or new_call_id(), function["name"], function.get("arguments") or {}
            )
        )
    return tuple(calls)


def _check_expressible(request: Request) -> None:
    """The router never sends what Ollama cannot say; refuse it here too, rather than drop it."""
    choice = request.tool_choice
    if choice is not None and choice.mode in ("required", "function"):
        raise WireError(
            FailureKind.UNSUPPORTED, f"ollama cannot force a tool call (tool_choice {choice.mode})"
        )


def _tools(request: Request) -> list[dict[str, Any]]:
    if not request.wants_tool_calls:
        return []
    tools = []
    for tool in request.tools:
        function: dict[str, Any] = {"name": tool.name}
        if tool.description:
            function["description"] = tool.description
        function["parameters"] = dict(tool.parameters)
        tools.append({"type": "function", "function": function})
    return tools


def _format(response_format: ResponseFormat | None) -> str | dict[str, Any] | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.schema is None:
        return "json"
    return dict(response_format.schema)


def _options(request: Request, shape: RequestShape) -> dict[str, Any]:
    options: dict[str, Any] = {"num_predict": request.max_tokens}
    if shape.temperature is not None:
        options["temperature"] = shape.temperature
    for field in _SAMPLING:
        value = getattr(request, field)
        if value is not None and value != ():
            options[field] = list(value) if field == "stop" else value
    return options


def _read_format(value: object) -> ResponseFormat | None:
    if value in (None, ""):
        return None
    if value == "json":
        return ResponseFormat("json_object")
    if isinstance(value, Mapping):
        return ResponseFormat("json_schema", value)
    raise FieldError("format", f'{value!r} is not "json" or a JSON schema')


def _read_options(options: object) -> dict[str, Any]:
    """The Request fields Ollama's options carry; a limit of -1 or -2 (none) is left out."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise FieldError("options", f"{options!r} is not an object")
    fields: dict[str, Any] = {
        field: options[field] for field in ("temperature", *_SAMPLING) if field in options
    }
    limit = options.get("num_predict")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        fields["max_tokens"] = limit
    return fields


def _conversation_fields(messages: tuple[Message, ...]) -> dict[str, Any]:
    """A plain one-turn text conversation as the `prompt` / `system` shorthand (what built it),
    anything else as `messages` (a blank turn too: a message may hold only whitespace, the
    shorthand may not)."""
    if not messages or messages[-1].role != "user" or messages[-1].images:
        return {"messages": messages}
    prompt = messages[-1].text
    if not prompt.strip():
        return {"messages": messages}
    if len(messages) == 1:
        return {"prompt": prompt}
    if len(messages) == 2 and messages[0].role == "system" and messages[0].text.strip():
        return {"prompt": prompt, "system": messages[0].text}
    return {"messages": messages}


class OllamaWire(WireDefaults):
    name = "ollama"
    reply_name = "an /api/chat reply"
    models_path = "/api/tags"
    end_marker = "done=true"
    # finish reasons: ``done_reason`` is "stop", "length", or "load"/"unload" (read as "stop");
    # a reply with tool calls says "stop", and the shared adapter reports "tool_calls".

    def build_request(
        self, request: Request, model: str, shape: RequestShape, *, stream: bool
    ) -> WireRequest:
        _check_expressible(request)
        body: dict[str, Any] = {
            "model": model,
            "messages": wire_messages(request.conversation, shape.system_role),
        }
        tools = _tools(request)
        if tools:
            body["tools"] = tools
        response_format = _format(request.response_format)
        if response_format is not None:
            body["format"] = response_format
        body["stream"] = stream
        body["options"] = _options(request, shape)
        return WireRequest(PATH, body)

    def read_request(
        self, body: Mapping[str, Any], *, make_id: Callable[[], str] = new_call_id
    ) -> Request:
        """An /api/chat body as a `Request` (the inverse of `build_request`); tool-call ids made
        by `make_id`. A body the model cannot hold raises `FieldError` naming the field."""
        messages = read_messages(body.get("messages") or (), make_id)
        fields = _conversation_fields(messages)
        fields.update(_read_options(body.get("options")))
        tools = to_tools(body.get("tools"))
        if tools:
            fields["tools"] = tools
        response_format = _read_format(body.get("format"))
        if response_format is not None:
            fields["response_format"] = response_format
        return Request(model=body.get("model"), **fields)

    def parse_reply(self, data: Any, model: str) -> Completion:
        reply = as_dict(data, "reply")
        _raise_if_error(reply)
        message = as_dict(reply["message"], "message")
        return Completion(
            text=text_or_empty(message.get("content")),
            model=str(reply.get("model") or model),
            usage=_usage(reply),
            raw_finish_reason=_done_reason(reply),
            tool_calls=_tool_calls(message),
        )

    def stream_decoder(self) -> NDJSONDecoder:
        return NDJSONDecoder()

    def parse_event(self, item: Any, state: StreamState) -> Deltas:
        reply = as_dict(item, "line")
        _raise_if_error(reply)
        state.reply_model = reply.get("model") or state.reply_model
        message = as_dict(reply.get("message") or {}, "message")
        deltas = state.add_text(text_or_empty(message.get("content")))
        for call in _tool_calls(message):
            deltas += state.add_tool_call(len(state.calls), call.id, call.name, call.arguments)
        if reply.get("done") is True:
            state.done = state.ended = True
            state.finish_reason = _done_reason(reply)
            state.usage = _usage(reply)
        return deltas


register_wire(OllamaWire())
