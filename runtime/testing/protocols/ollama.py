"""The fake Ollama `/api/chat` wire: NDJSON streams, tool calls whole with object arguments,
and the Go decoder's error wording for bodies of the wrong types."""

from __future__ import annotations

import base64
import binascii
import itertools
from collections.abc import Mapping
from typing import Any

from actors.adapters.ollama import OllamaWire as OllamaFormat
from actors.messages import Request
from actors.validation import FieldError
from runtime.testing.protocols.base import (
    CREATED_AT,
    Answer,
    Call,
    Reason,
    StreamBody,
    Wire,
    WireError,
    chat_prompt_tokens,
    dump,
    int_or_none,
    last_user_text,
    load_object,
)

#: The adapter's wire format, which reads a body back into a `Request`.
_OLLAMA = OllamaFormat()


def _go_type_error(value: Any, field: str, go_type: str) -> WireError:
    """Ollama's 400 for a body field of the wrong JSON type, worded as Go's decoder words it."""
    kinds = {bool: "bool", str: "string", dict: "object", list: "array", int: "number"}
    kind = kinds.get(type(value), "number")
    return WireError(
        400,
        "invalid_request",
        f"json: cannot unmarshal {kind} into Go struct field {field} of type {go_type}",
    )


def _check_ollama_tools(tools: Any) -> None:
    """What Ollama's decoder refuses in `tools`: a parameters schema of the wrong shape (JSON
    null is no value to Go, so it passes)."""
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _go_type_error(tools, "ChatRequest.tools", "api.Tools")
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else tool
        if not isinstance(function, dict):
            raise _go_type_error(function, "Tool.tools.function", "api.ToolFunction")
        params = function.get("parameters")
        if params is None:
            continue
        if not isinstance(params, dict):
            raise _go_type_error(
                params, "ToolFunction.tools.function.parameters", "api.ToolFunctionParameters"
            )
        where = "ToolFunctionParameters.tools.function.parameters"
        kind, properties, required = (params.get(k) for k in ("type", "properties", "required"))
        if kind is not None and not isinstance(kind, str):
            raise _go_type_error(kind, f"{where}.type", "string")
        if properties is not None and not (
            isinstance(properties, dict) and all(isinstance(p, dict) for p in properties.values())
        ):
            raise _go_type_error(properties, f"{where}.properties", "map[string]api.ToolProperty")
        if required is not None and not (
            isinstance(required, list) and all(isinstance(r, str) for r in required)
        ):
            raise _go_type_error(required, f"{where}.required", "[]string")


def _check_ollama_messages(messages: list[Any]) -> None:
    """What Ollama's decoder refuses in `messages`: images that are not base64, tool-call
    arguments that are not an object."""
    for message in messages:
        if not isinstance(message, dict):
            raise _go_type_error(message, "ChatRequest.messages", "api.Message")
        for image in message.get("images") or ():
            try:
                base64.b64decode(image, validate=True)
            except (binascii.Error, TypeError, ValueError):
                refusal = "illegal base64 data at input byte 0"
                raise WireError(400, "invalid_request", refusal) from None
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments", {}) if isinstance(function, dict) else None
            if not isinstance(arguments, dict):
                raise _go_type_error(
                    arguments,
                    "ToolCallFunction.messages.tool_calls.function.arguments",
                    "api.ToolCallFunctionArguments",
                )


def _ollama_request(data: dict[str, Any]) -> Request | None:
    """The body as a `Request` (tool-call ids numbered, so answers are deterministic); a
    conversation the runtime cannot hold (a tool result answering no call) is a 400."""
    if not data.get("messages"):
        return None  # Ollama loads the model and answers with an empty message
    numbers = itertools.count()
    try:
        return _OLLAMA.read_request(data, make_id=lambda: f"call_{next(numbers)}")
    except FieldError as exc:
        raise WireError(400, "invalid_request", str(exc)) from None


def _ollama_calls(answer: Answer) -> list[dict[str, Any]]:
    """Tool calls as Ollama sends them: whole, arguments an object, no ids."""
    return [{"function": {"name": c.name, "arguments": c.args}} for c in answer.tool_calls]


class OllamaWire(Wire):
    """Ollama `/api/chat`: NDJSON streaming unless `"stream": false`; no key of its own."""

    paths = ("/api/chat",)
    models_path = "/api/tags"
    listed_models = ("llama3.2",)

    def models_reply(self) -> Any:
        return {
            "models": [
                {"name": f"{model}:latest", "model": f"{model}:latest", "modified_at": CREATED_AT}
                for model in self.listed_models
            ]
        }
    has_rate_limit_headers = False

    def parse(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> Call:
        if path != "/api/chat":
            raise WireError(404, "not_found", "404 page not found")
        data = load_object(body, "invalid character in request body")
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise WireError(400, "invalid_request", "model is required")
        messages = data.get("messages") or []
        if not isinstance(messages, list):
            raise WireError(400, "invalid_request", "messages must be a list")
        _check_ollama_messages(messages)
        _check_ollama_tools(data.get("tools"))
        fmt = data.get("format")
        if fmt not in (None, "", "json") and not isinstance(fmt, dict):
            raise WireError(400, "invalid_request", "invalid JSON schema in format")
        options = data.get("options")
        max_tokens = int_or_none(options.get("num_predict")) if isinstance(options, dict) else None
        if max_tokens is not None and max_tokens < 0:  # -1 means "no limit" to Ollama
            max_tokens = None
        return Call(
            model=model,
            prompt=last_user_text(messages),
            prompt_tokens=chat_prompt_tokens(messages),
            max_tokens=max_tokens,
            stream=data.get("stream", True) is not False,
            request=_ollama_request(data),
        )

    def _message(self, content: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        return message

    def _final(self, call: Call, answer: Answer, message: dict[str, Any]) -> dict[str, Any]:
        # A reply with tool calls says "stop", as Ollama's does.
        return {
            "model": call.model,
            "created_at": CREATED_AT,
            "message": message,
            "done": True,
            "done_reason": "length" if answer.truncated else "stop",
            "total_duration": 1_000_000,
            "load_duration": 1_000,
            "prompt_eval_count": answer.prompt_tokens,
            "prompt_eval_duration": 1_000,
            "eval_count": answer.completion_tokens,
            "eval_duration": 1_000,
        }

    def reply(self, call: Call, answer: Answer, seq: int) -> dict[str, Any]:
        return self._final(call, answer, self._message(answer.text, _ollama_calls(answer)))

    def _line(self, call: Call, message: dict[str, Any]) -> bytes:
        line = {"model": call.model, "created_at": CREATED_AT, "message": message, "done": False}
        return dump(line) + b"\n"

    def stream(self, call: Call, answer: Answer, seq: int) -> StreamBody:
        """A line per text chunk; tool calls whole, in one line of their own, before the last."""
        chunks = [self._line(call, self._message(text, [])) for text in answer.chunks]
        if answer.tool_calls:
            chunks.append(self._line(call, self._message("", _ollama_calls(answer))))
        return StreamBody(
            content_type="application/x-ndjson",
            prologue=(),
            chunks=tuple(chunks),
            epilogue=(dump(self._final(call, answer, self._message("", []))) + b"\n",),
        )

    def default_message(self, reason: Reason) -> str:
        return {
            "authentication": "unauthorized",
            "unavailable": "server busy, please try again.  maximum pending requests exceeded",
            "server_error": "an error was encountered while running the model",
            "not_found": "404 page not found",
        }.get(reason) or super().default_message(reason)

    def error_body(self, status: int, reason: Reason, message: str | None = None) -> Any:
        return {"error": message or self.default_message(reason)}

    def context_message(self, tokens: int, limit: int) -> str:
        return f"input length ({tokens} tokens) exceeds the model's context length ({limit} tokens)"

    def stream_error_event(self, call: Call, sent_chunks: int) -> bytes:
        return dump(self.error_body(500, "server_error")) + b"\n"

    def malformed_body(self) -> bytes:
        return b'{"model": "malformed", "message": {"role": "assistant", "content": "ec'

    def malformed_event(self, call: Call) -> bytes:
        return b'{"model": "malformed", "message": {"content": \n'


