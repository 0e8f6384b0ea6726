"""The fake OpenAI Chat Completions wire (also Mistral, Hugging Face's router, Groq, vLLM):
reasoning-model rules, tool turns checked as the real API checks them, tool calls streamed in
pieces."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from actors.adapters.openai import OpenAIWire as OpenAIFormat
from actors.chat import ToolCall
from actors.messages import Request
from actors.validation import FieldError
from runtime.testing.protocols.base import (
    CREATED,
    Answer,
    Call,
    Headers,
    Quota,
    Reason,
    StreamBody,
    Wire,
    WireError,
    chat_prompt_tokens,
    int_or_none,
    last_user_text,
    load_object,
    sse,
)

#: OpenAI's reasoning models (o1, o3, o4 and gpt-5 families, dated or sized variants included).
_REASONING_MODEL = re.compile(r"^(o1|o3|o4|gpt-5)([.-]|$)")
#: The first reasoning models, which take neither a system nor a developer message.
_NO_SYSTEM_MODEL = re.compile(r"^o1-(mini|preview)([.-]|$)")


def _openai_refusal(code: str | None, param: str, message: str) -> WireError:
    """OpenAI's 400 for a parameter or value this model does not take."""
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }
    return WireError(400, "invalid_request", message, body)


def _check_reasoning_request(model: str, data: dict[str, Any], messages: list[Any]) -> None:
    """Refuse what OpenAI's reasoning models refuse: `max_tokens` (they take
    `max_completion_tokens`), a temperature other than 1, and on o1-mini / o1-preview a system
    or developer message."""
    if not _REASONING_MODEL.match(model):
        return
    if data.get("max_tokens") is not None:
        raise _openai_refusal(
            "unsupported_parameter",
            "max_tokens",
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
        )
    temperature = data.get("temperature")
    if temperature is not None and temperature != 1:
        raise _openai_refusal(
            "unsupported_value",
            "temperature",
            f"Unsupported value: 'temperature' does not support {json.dumps(temperature)} with "
            "this model. Only the default (1) value is supported.",
        )
    if _NO_SYSTEM_MODEL.match(model):
        for index, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role in ("system", "developer"):
                param = f"messages[{index}].role"
                raise _openai_refusal(
                    "unsupported_value",
                    param,
                    f"Unsupported value: '{param}' does not support '{role}' with this model.",
                )


#: The runtime's own reading of an OpenAI body (`Call.request`).
_OPENAI_FORMAT = OpenAIFormat()
#: How many characters of a tool call's arguments each streamed chunk carries.
OPENAI_ARGUMENT_PIECE = 8


def _openai_check_tool_turns(messages: list[Any]) -> None:
    """OpenAI's 400s for tool messages: one that answers no call of the assistant message just
    before it, and an assistant's calls not all answered before the next turn."""
    pending: list[str] = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "tool":
            if message.get("tool_call_id") not in pending:
                raise _openai_refusal(
                    None,
                    f"messages.[{index}].role",
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                )
            pending.remove(message["tool_call_id"])
            continue
        if pending:
            raise _openai_unanswered(pending, index)
        calls = message.get("tool_calls") if role == "assistant" else None
        pending = [str(c.get("id")) for c in calls or () if isinstance(c, dict)]
    if pending:
        raise _openai_unanswered(pending, len(messages) - 1)


def _openai_unanswered(pending: list[str], index: int) -> WireError:
    return _openai_refusal(
        None,
        f"messages.[{index}].role",
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(map(str, pending)),
    )


def _openai_check_tools(data: dict[str, Any]) -> None:
    """OpenAI's 400s for tools: a function schema that is not an object schema, and
    tool_choice or parallel_tool_calls without tools."""
    tools = data.get("tools")
    for index, tool in enumerate(tools if isinstance(tools, list) else ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict):
            continue
        schema = function.get("parameters", {"type": "object"})
        if not isinstance(schema, dict) or schema.get("type") != "object":
            got = schema.get("type") if isinstance(schema, dict) else None
            raise _openai_refusal(
                "invalid_function_parameters",
                f"tools[{index}].function.parameters",
                f"Invalid schema for function '{function.get('name')}': schema must be a JSON "
                f"Schema of 'type: \"object\"', got 'type: \"{got}\"'.",
            )
    if not tools:
        for field in ("tool_choice", "parallel_tool_calls"):
            if data.get(field) is not None:
                raise _openai_refusal(
                    None,
                    field,
                    f"Invalid value for '{field}': '{field}' is only allowed when 'tools' are "
                    "specified.",
                )


def _openai_read_request(data: dict[str, Any]) -> Request:
    """The body as a `Request` (see `actors.adapters.openai`); a 400 naming the field the
    runtime's model refuses, for what the checks above leave."""
    try:
        return _OPENAI_FORMAT.read_request(data)
    except FieldError as exc:
        raise _openai_refusal(
            "invalid_value", exc.field, f"Invalid value for '{exc.field}': {exc.message}"
        ) from None


def _openai_tool_calls(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def _openai_call_deltas(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    """The streamed deltas of `calls`, as OpenAI sends them: per call, one naming it (id, type,
    name, empty arguments), then its arguments in pieces."""
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        head = {"index": index, "id": call.id, "type": "function"}
        deltas.append({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]})
        text = call.arguments
        for start in range(0, len(text), OPENAI_ARGUMENT_PIECE):
            piece = text[start : start + OPENAI_ARGUMENT_PIECE]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    return deltas


class OpenAIWire(Wire):
    """OpenAI Chat Completions; also Mistral, Hugging Face's router, Groq, vLLM, llama.cpp."""

    paths = ("/v1/chat/completions",)
    listed_models = ("gpt-4o", "gpt-4o-mini")

    def models_reply(self) -> Any:
        return {
            "object": "list",
            "data": [
                {"id": model, "object": "model", "created": CREATED, "owned_by": "system"}
                for model in self.listed_models
            ],
        }

    def parse(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> Call:
        if path != "/v1/chat/completions":
            raise WireError(404, "not_found", f"Invalid URL (POST {path})")
        data = load_object(
            body,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)",
        )
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise WireError(400, "invalid_request", "you must provide a model parameter")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise WireError(400, "invalid_request", "Missing required parameter: 'messages'.")
        _check_reasoning_request(model, data, messages)
        _openai_check_tool_turns(messages)
        _openai_check_tools(data)
        request = _openai_read_request(data)
        max_tokens = int_or_none(data.get("max_completion_tokens"))
        if max_tokens is None:
            max_tokens = int_or_none(data.get("max_tokens"))
        options = data.get("stream_options")
        return Call(
            model=model,
            prompt=last_user_text(messages),
            prompt_tokens=chat_prompt_tokens(messages),
            max_tokens=max_tokens,
            stream=data.get("stream") is True,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
            request=request,
        )

    def _usage(self, answer: Answer) -> dict[str, int]:
        return {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        }

    def _finish(self, answer: Answer) -> str:
        if answer.tool_calls:
            return "tool_calls"
        return "length" if answer.truncated else "stop"

    def _message(self, answer: Answer) -> dict[str, Any]:
        """The assistant message: null content when it only calls tools, as OpenAI sends it."""
        text = answer.text if answer.text or not answer.tool_calls else None
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if answer.tool_calls:
            message["tool_calls"] = _openai_tool_calls(answer.tool_calls)
        return message

    def reply(self, call: Call, answer: Answer, seq: int) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-fake{seq}",
            "object": "chat.completion",
            "created": CREATED,
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": self._message(answer),
                    "logprobs": None,
                    "finish_reason": self._finish(answer),
                }
            ],
            "usage": self._usage(answer),
            "system_fingerprint": "fp_fake",
        }

    def stream(self, call: Call, answer: Answer, seq: int) -> StreamBody:
        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            body: dict[str, Any] = {
                "id": f"chatcmpl-fake{seq}",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": call.model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if call.include_usage:
                body["usage"] = None
            return body

        epilogue = [sse(chunk({}, self._finish(answer)))]
        if call.include_usage:
            usage_chunk = chunk({}, None)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = self._usage(answer)
            epilogue.append(sse(usage_chunk))
        epilogue.append(b"data: [DONE]\n\n")
        deltas = [{"content": text} for text in answer.chunks]
        deltas += _openai_call_deltas(answer.tool_calls)
        # A reply that only calls tools opens with null content and its first call's head.
        first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        if answer.tool_calls and not answer.chunks:
            first = {"role": "assistant", "content": None, **deltas.pop(0), "refusal": None}
        return StreamBody(
            content_type="text/event-stream; charset=utf-8",
            prologue=(sse(chunk(first, None)),),
            chunks=tuple(sse(chunk(delta, None)) for delta in deltas),
            epilogue=tuple(epilogue),
        )

    def default_message(self, reason: Reason) -> str:
        return {
            "authentication": (
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            ),
            "rate_limit": "Rate limit reached for requests. Please try again later.",
            "quota": (
                "You exceeded your current quota, please check your plan and billing details."
            ),
            "server_error": (
                "The server had an error while processing your request. Sorry about that!"
            ),
            "unavailable": "The engine is currently overloaded, please try again later.",
            "overloaded": "The engine is currently overloaded, please try again later.",
        }.get(reason) or super().default_message(reason)

    def error_body(self, status: int, reason: Reason, message: str | None = None) -> Any:
        kinds: dict[Reason, tuple[str, str | None]] = {
            "authentication": ("invalid_request_error", "invalid_api_key"),
            "permission": ("invalid_request_error", "unsupported_country_region_territory"),
            "not_found": ("invalid_request_error", "unknown_url"),
            "rate_limit": ("requests", "rate_limit_exceeded"),
            "quota": ("insufficient_quota", "insufficient_quota"),
            "context_length": ("invalid_request_error", "context_length_exceeded"),
            "server_error": ("server_error", None),
            "overloaded": ("server_error", None),
            "unavailable": ("server_error", None),
        }
        error_type, code = kinds.get(reason, ("invalid_request_error", None))
        return {
            "error": {
                "message": message or self.default_message(reason),
                "type": error_type,
                "param": "messages" if reason == "context_length" else None,
                "code": code,
            }
        }

    def context_message(self, tokens: int, limit: int) -> str:
        return (
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {tokens} tokens. Please reduce the length of the messages."
        )

    def rate_limit_headers(self, quota: Quota) -> Headers:
        return [
            ("x-ratelimit-limit-requests", str(quota.limit_requests)),
            ("x-ratelimit-limit-tokens", str(quota.limit_tokens)),
            ("x-ratelimit-remaining-requests", str(quota.remaining_requests)),
            ("x-ratelimit-remaining-tokens", str(quota.remaining_tokens)),
            ("x-ratelimit-reset-requests", "6ms" if quota.remaining_requests else "1s"),
            ("x-ratelimit-reset-tokens", "0s" if quota.remaining_tokens else "1s"),
        ]

    def reply_headers(self, seq: int) -> Headers:
        return [("x-request-id", f"req_fake{seq}"), ("openai-processing-ms", "1")]

    def stream_error_event(self, call: Call, sent_chunks: int) -> bytes:
        return sse(self.error_body(500, "server_error"))


