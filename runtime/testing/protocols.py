"""The four provider wire formats the fake server speaks, byte for byte where adapters care.

Each `Wire` turns a request body into a `Call`, and a deterministic `Answer` into the provider's
own reply shapes: the JSON reply, the stream (SSE or NDJSON) split into prologue, one event per
text chunk, and epilogue, and the provider's real error bodies. The server applies faults on top;
nothing here sleeps or does I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from actors.adapters.anthropic import AnthropicWire as AnthropicFormat
from actors.adapters.anthropic_tools import json_tool_name
from actors.adapters.gemini import GeminiWire as GeminiFormat
from actors.adapters.gemini_conversation import FOREIGN_SIGNATURE
from actors.adapters.ollama import OllamaWire as OllamaFormat
from actors.adapters.openai import OpenAIWire as OpenAIFormat
from actors.chat import ToolCall
from actors.kinds import HTTP_KINDS, kind_named, kinds_speaking
from actors.messages import Request
from actors.synthetic import synthetic_answer
from actors.validation import FieldError

#: Kinds that speak OpenAI Chat Completions (their real APIs are OpenAI-compatible).
OPENAI_FORMAT_KINDS = frozenset(kind.name for kind in kinds_speaking("openai"))
KINDS = HTTP_KINDS

#: Fixed timestamps keep replies byte-for-byte deterministic.
CREATED = 1_700_000_000
CREATED_AT = "2023-11-14T22:13:20Z"

Reason = Literal[
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "method_not_allowed",
    "rate_limit",
    "quota",
    "context_length",
    "server_error",
    "overloaded",
    "unavailable",
]
Headers = list[tuple[str, str]]


def count_tokens(text: str) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def reply_chunks(prompt: str, max_tokens: int | None = None) -> tuple[str, ...]:
    """The text chunks the fake server answers `prompt` with: "echo: " and the prompt's words.

    Each chunk is one word (with its trailing space), one streamed event each; the whole reply is
    `"".join(chunks)`. `max_tokens` truncates to that many words (finish reason "length").
    """
    words = ("echo: " + prompt).split()
    if max_tokens is not None:
        words = words[: max(max_tokens, 0)]
    return (*(word + " " for word in words[:-1]), *words[-1:])


def reason_for_status(status: int) -> Reason:
    """The error a provider means by a bare status code."""
    reasons: dict[int, Reason] = {
        400: "invalid_request",
        401: "authentication",
        403: "permission",
        404: "not_found",
        405: "method_not_allowed",
        429: "rate_limit",
        503: "unavailable",
        529: "overloaded",
    }
    if status in reasons:
        return reasons[status]
    return "server_error" if status >= 500 else "invalid_request"


class WireError(Exception):
    """A request the provider would refuse: answered with the provider's own error body, or
    with `body` when the refusal has a shape of its own (a parameter named, error details)."""

    def __init__(self, status: int, reason: Reason, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body


@attrs.frozen
class Call:
    """What the server understood of one request."""

    model: str
    #: Text of the last user message: what the reply echoes.
    prompt: str
    prompt_tokens: int
    max_tokens: int | None
    stream: bool
    #: OpenAI `stream_options.include_usage`: a usage chunk before `[DONE]`.
    include_usage: bool = False
    #: Gemini: `alt=sse` streams SSE, without it a JSON array.
    sse: bool = True
    #: The whole request as the runtime models it (read back by the wire format), when the
    #: wire reads it: what tool calls and JSON answers are made from (`actors.synthetic`).
    request: Request | None = None


@attrs.frozen
class Answer:
    """The deterministic reply to a `Call`."""

    chunks: tuple[str, ...]
    truncated: bool
    prompt_tokens: int
    #: Tool calls, by the convention of `actors.synthetic` (ids deterministic per conversation).
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def completion_tokens(self) -> int:
        return len(self.chunks)

    @classmethod
    def for_call(cls, call: Call) -> Answer:
        request = call.request
        if request is not None and _needs_synthetic(request):
            return cls._synthetic(call, request)
        full = reply_chunks(call.prompt)
        chunks = reply_chunks(call.prompt, call.max_tokens)
        return cls(
            chunks=chunks, truncated=len(chunks) < len(full), prompt_tokens=call.prompt_tokens
        )


    @classmethod
    def _synthetic(cls, call: Call, request: Request) -> Answer:
        """Tool calls or JSON (see `actors.synthetic`); text split into words as `reply_chunks`."""
        digest = hashlib.sha256(repr(request.conversation).encode()).hexdigest()[:12]
        answer = synthetic_answer(request, lambda n: f"call_{digest}{n}")
        words = answer.text.split(" ") if answer.text else []
        chunks = tuple(w + " " for w in words[:-1]) + tuple(words[-1:])
        limited = chunks if call.max_tokens is None else chunks[: max(call.max_tokens, 0)]
        return cls(
            chunks=limited,
            truncated=len(limited) < len(chunks),
            prompt_tokens=call.prompt_tokens,
            tool_calls=answer.tool_calls,
        )


def _needs_synthetic(request: Request) -> bool:
    return bool(
        request.tools
        or request.response_format is not None
        or request.conversation[-1].role == "tool"
    )


@attrs.frozen
class Quota:
    """Rate-limit state reported in headers: limits and what is left after this request."""

    limit_requests: int
    limit_tokens: int
    remaining_requests: int
    remaining_tokens: int


@attrs.frozen
class StreamBody:
    content_type: str
    prologue: tuple[bytes, ...]
    #: One event per text chunk of the answer, in order.
    chunks: tuple[bytes, ...]
    #: Finish reason, usage, end marker: what tells a client the stream is complete.
    epilogue: tuple[bytes, ...]


def dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _sse(data: Any, event: str | None = None, newline: bytes = b"\n") -> bytes:
    payload = data if isinstance(data, bytes) else dump(data)
    head = b"event: " + event.encode() + newline if event else b""
    return head + b"data: " + payload + newline + newline


def _load_object(body: bytes, invalid: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(400, "invalid_request", invalid) from exc
    if not isinstance(value, dict):
        raise WireError(400, "invalid_request", invalid)
    return value


def _text_of(content: Any) -> str:
    """Text of an OpenAI / Anthropic / Ollama message content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _chat_prompt_tokens(messages: list[Any]) -> int:
    """Tokens in a chat-format `messages` list (OpenAI and Ollama)."""
    return sum(count_tokens(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))


def _last_user_text(messages: list[Any], role_key: str = "role") -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get(role_key, "user") == "user":
            return _text_of(message.get("content"))
    return ""


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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


class Wire:
    """One provider protocol. Subclasses fill in the shapes."""

    #: The path a provider of this kind is posted to, relative to its mount point.
    paths: tuple[str, ...] = ()
    #: Status of a missing or wrong key.
    auth_status = 401
    #: Whether this provider reports rate-limit headers (Gemini and Ollama don't).
    has_rate_limit_headers = True

    def presented_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        return auth[len("bearer ") :] if auth.lower().startswith("bearer ") else None

    def parse(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> Call:
        raise NotImplementedError

    def reply(self, call: Call, answer: Answer, seq: int) -> dict[str, Any]:
        raise NotImplementedError

    def stream(self, call: Call, answer: Answer, seq: int) -> StreamBody:
        raise NotImplementedError

    def error_body(self, status: int, reason: Reason, message: str | None = None) -> Any:
        raise NotImplementedError

    def auth_error(self, presented: str | None) -> WireError:
        """The refusal of a missing (`presented` None) or wrong key."""
        message = (
            self.default_message("authentication") if presented else "No API key was provided."
        )
        return WireError(self.auth_status, "authentication", message)

    def stream_error_event(self, call: Call, sent_chunks: int) -> bytes:
        """The provider's in-band error, sent mid-stream after `sent_chunks` text chunks (the
        HTTP status was already 200)."""
        raise NotImplementedError

    def default_message(self, reason: Reason) -> str:
        return {
            "invalid_request": "Invalid request.",
            "authentication": "Invalid API key.",
            "permission": "Permission denied.",
            "not_found": "Not found.",
            "method_not_allowed": "Method not allowed.",
            "rate_limit": "Rate limit exceeded, please retry later.",
            "quota": "Quota exceeded.",
            "context_length": "The prompt is too long for this model.",
            "server_error": "Internal server error.",
            "overloaded": "Overloaded.",
            "unavailable": "Service unavailable, please try again later.",
        }[reason]

    def context_message(self, tokens: int, limit: int) -> str:
        raise NotImplementedError

    def rate_limit_body(self, retry_after_s: float) -> Any:
        """The 429 body of a rate limit (the wait itself goes in Retry-After)."""
        return self.error_body(429, "rate_limit")

    def rate_limit_headers(self, quota: Quota) -> Headers:
        return []

    def reply_headers(self, seq: int) -> Headers:
        return []

    def malformed_body(self) -> bytes:
        """A 200 reply that is not JSON: cut off mid-object."""
        return b'{"id": "malformed", "choices": [{"message": {"content": "ec'

    def malformed_event(self, call: Call) -> bytes:
        """A stream event whose data is not JSON."""
        return b'data: {"choices": [{"delta": {"content": "ec\n\n'


class OpenAIWire(Wire):
    """OpenAI Chat Completions; also Mistral, Hugging Face's router, Groq, vLLM, llama.cpp."""

    paths = ("/v1/chat/completions",)

    def parse(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> Call:
        if path != "/v1/chat/completions":
            raise WireError(404, "not_found", f"Invalid URL (POST {path})")
        data = _load_object(
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
        max_tokens = _int_or_none(data.get("max_completion_tokens"))
        if max_tokens is None:
            max_tokens = _int_or_none(data.get("max_tokens"))
        options = data.get("stream_options")
        return Call(
            model=model,
            prompt=_last_user_text(messages),
            prompt_tokens=_chat_prompt_tokens(messages),
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

        epilogue = [_sse(chunk({}, self._finish(answer)))]
        if call.include_usage:
            usage_chunk = chunk({}, None)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = self._usage(answer)
            epilogue.append(_sse(usage_chunk))
        epilogue.append(b"data: [DONE]\n\n")
        deltas = [{"content": text} for text in answer.chunks]
        deltas += _openai_call_deltas(answer.tool_calls)
        # A reply that only calls tools opens with null content and its first call's head.
        first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        if answer.tool_calls and not answer.chunks:
            first = {"role": "assistant", "content": None, **deltas.pop(0), "refusal": None}
        return StreamBody(
            content_type="text/event-stream; charset=utf-8",
            prologue=(_sse(chunk(first, None)),),
            chunks=tuple(_sse(chunk(delta, None)) for delta in deltas),
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
        return _sse(self.error_body(500, "server_error"))


#: Anthropic's rule for tool names.
_ANTHROPIC_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_INVALID_SCHEMA = (
    "JSON schema is invalid. It must match JSON Schema draft 2020-12 "
    "(https://json-schema.org/draft/2020-12). Learn more about tool use at "
    "https://docs.claude.com/en/docs/tool-use."
)


def _check_anthropic_tools(tools: Any) -> None:
    """Refuse tools as the API does: a bad name, an input schema that is not an object schema
    or not valid JSON Schema (checked when `jsonschema` is installed, as in the test extra)."""
    if tools is None:
        return
    if not isinstance(tools, list):
        raise WireError(400, "invalid_request", "tools: Input should be a valid list")
    for index, tool in enumerate(tools):
        where = f"tools.{index}.custom"
        if not isinstance(tool, dict):
            raise WireError(400, "invalid_request", f"tools.{index}: Input should be an object")
        if not isinstance(tool.get("name"), str) or not _ANTHROPIC_TOOL_NAME.match(tool["name"]):
            message = f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            raise WireError(400, "invalid_request", message)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            message = f"{where}.input_schema.type: Input should be 'object'"
            raise WireError(400, "invalid_request", message)
        if not _valid_schema(schema):
            raise WireError(400, "invalid_request", f"{where}.input_schema: {_INVALID_SCHEMA}")


def _valid_schema(schema: dict[str, Any]) -> bool:
    try:
        from jsonschema import (  # type: ignore[import-untyped]
            Draft202012Validator,
            SchemaError,
        )
    except ImportError:  # the fake server runs without the test extra too
        return True
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError:
        return False
    return True


def _blocks_of(message: Any, kind: str) -> list[dict[str, Any]]:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict) and b.get("type") == kind]


def _check_tool_results(messages: list[Any]) -> None:
    """Each ``tool_result`` answers a ``tool_use`` of the message just before, and each
    ``tool_use`` is answered in the message just after (the API's own 400s)."""
    for index, message in enumerate(messages):
        before = messages[index - 1] if index else None
        called = {b.get("id") for b in _blocks_of(before, "tool_use")}
        content = message.get("content") if isinstance(message, dict) else None
        for position, block in enumerate(content if isinstance(content, list) else []):
            if _is_result(block) and block.get("tool_use_id") not in called:
                raise WireError(
                    400,
                    "invalid_request",
                    f"messages.{index}.content.{position}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                    "block must have a corresponding `tool_use` block in the previous message.",
                )
        if index + 1 < len(messages):
            _check_answered(index, message, messages[index + 1])


def _is_result(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "tool_result"


def _check_answered(index: int, message: Any, after: Any) -> None:
    answered = {b.get("tool_use_id") for b in _blocks_of(after, "tool_result")}
    calls = [str(b.get("id")) for b in _blocks_of(message, "tool_use")]
    missing = [id_ for id_ in calls if id_ not in answered]
    if missing:
        raise WireError(
            400,
            "invalid_request",
            f"messages.{index}: `tool_use` ids were found without `tool_result` blocks "
            f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
            "corresponding `tool_result` block in the next message.",
        )


def _read_anthropic(data: dict[str, Any]) -> Request:
    """The body as a `Request` (the adapter's inverse); what it cannot read is a 400."""
    try:
        return AnthropicFormat().read_request(data)
    except FieldError as exc:
        raise WireError(400, "invalid_request", f"{exc.field}: {exc.message}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(400, "invalid_request", f"invalid request body: {exc!r}") from None


@attrs.frozen
class _Block:
    """One content block of an Anthropic answer: whole (a reply) and in pieces (a stream)."""

    index: int
    kind: str
    whole: dict[str, Any]
    #: Text pieces (text_delta) or pieces of the input's JSON (input_json_delta).
    pieces: tuple[str, ...]

    def events(self) -> list[bytes]:
        text = self.kind == "text"
        opening = dict(self.whole, text="") if text else dict(self.whole, input={})
        start = {"type": "content_block_start", "index": self.index, "content_block": opening}
        key, delta_type = ("text", "text_delta") if text else ("partial_json", "input_json_delta")
        deltas = [
            {
                "type": "content_block_delta",
                "index": self.index,
                "delta": {"type": delta_type, key: piece},
            }
            for piece in self.pieces
        ]
        stop = {"type": "content_block_stop", "index": self.index}
        return [
            _sse(start, "content_block_start"),
            *(_sse(delta, "content_block_delta") for delta in deltas),
            _sse(stop, "content_block_stop"),
        ]


def _anthropic_blocks(call: Call, answer: Answer, seq: int) -> list[_Block]:
    """The answer's content blocks: its text (or the JSON tool's call, for a JSON answer), then
    a ``tool_use`` block per tool call, its input streamed in two pieces after an empty one."""
    blocks: list[_Block] = []
    json_answer = _json_answer(call, answer)
    if json_answer is not None:
        name, value = json_answer
        whole = {"type": "tool_use", "id": f"toolu_fake{seq}json", "name": name, "input": value}
        blocks.append(_Block(0, "tool_use", whole, ("", *answer.chunks)))
    elif answer.text or not answer.tool_calls:
        blocks.append(_Block(0, "text", {"type": "text", "text": answer.text}, answer.chunks))
    for tool_call in answer.tool_calls:
        whole = {
            "type": "tool_use",
            "id": "toolu_" + tool_call.id.removeprefix("call_"),
            "name": tool_call.name,
            "input": tool_call.args,
        }
        half = len(tool_call.arguments) // 2
        pieces = ("", tool_call.arguments[:half], tool_call.arguments[half:])
        blocks.append(_Block(len(blocks), "tool_use", whole, pieces))
    return blocks


def _json_answer(call: Call, answer: Answer) -> tuple[str, Any] | None:
    """The JSON tool's name and input, when the answer is a whole JSON answer."""
    request = call.request
    response_format = request.response_format if request is not None else None
    if response_format is None or not response_format.is_json or answer.tool_calls:
        return None
    try:
        value = json.loads(answer.text)
    except ValueError:  # cut short by max_tokens: sent as text
        return None
    return json_tool_name(response_format), value


def _anthropic_stop(answer: Answer, blocks: list[_Block]) -> str:
    if answer.truncated:
        return "max_tokens"
    return "tool_use" if any(block.kind == "tool_use" for block in blocks) else "end_turn"


class AnthropicWire(Wire):
    """Anthropic Messages: `x-api-key`, `anthropic-version`, 529 overloaded.

    The request is read back with the adapter's `read_request` (`Call.request`), after the
    checks the real API makes on tools and tool results. Tool calls are ``tool_use`` blocks
    (ids ``toolu_...``), streamed as ``content_block_start`` and ``input_json_delta`` pieces; a
    JSON answer is the forced JSON tool's call, as a real model answers it.
    """

    paths = ("/v1/messages",)

    def presented_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        # The API takes `x-api-key`; the SDKs can send `Authorization: Bearer` instead.
        return headers.get("x-api-key") or super().presented_key(headers, query)

    def parse(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> Call:
        if path != "/v1/messages":
            raise WireError(404, "not_found", "Not Found")
        if "anthropic-version" not in headers:
            raise WireError(400, "invalid_request", "anthropic-version: header is required")
        data = _load_object(body, "There was an issue with your request body: invalid JSON")
        for field in ("model", "messages", "max_tokens"):
            if field not in data:
                raise WireError(400, "invalid_request", f"{field}: Field required")
        model, messages, max_tokens = data["model"], data["messages"], data["max_tokens"]
        if not isinstance(model, str) or not model:
            raise WireError(400, "invalid_request", "model: Input should be a valid string")
        if not isinstance(messages, list) or not messages:
            raise WireError(400, "invalid_request", "messages: at least one message is required")
        if _int_or_none(max_tokens) is None or max_tokens < 1:
            raise WireError(400, "invalid_request", "max_tokens: Input should be a valid integer")
        temperature = data.get("temperature")
        if isinstance(temperature, int | float) and not 0 <= temperature <= 1:
            raise WireError(400, "invalid_request", "temperature: range: 0..1")
        _check_anthropic_tools(data.get("tools"))
        _check_tool_results(messages)
        texts = [_text_of(m.get("content")) for m in messages if isinstance(m, dict)]
        texts.append(_text_of(data.get("system")))
        return Call(
            model=model,
            prompt=_last_user_text(messages),
            prompt_tokens=sum(count_tokens(text) for text in texts),
            max_tokens=max_tokens,
            stream=data.get("stream") is True,
            request=_read_anthropic(data),
        )

    def _stop(self, answer: Answer) -> str:
        if answer.truncated:
            return "max_tokens"
        return "tool_use" if answer.tool_calls else "end_turn"

    def _usage(self, answer: Answer) -> dict[str, int]:
        arguments = sum(count_tokens(call.arguments) for call in answer.tool_calls)
        return {
            "input_tokens": answer.prompt_tokens,
            "output_tokens": answer.completion_tokens + arguments,
        }

    def reply(self, call: Call, answer: Answer, seq: int) -> dict[str, Any]:
        blocks = _anthropic_blocks(call, answer, seq)
        return {
            "id": f"msg_fake{seq}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [block.whole for block in blocks],
            "stop_reason": _anthropic_stop(answer, blocks),
            "stop_sequence": None,
            "usage": self._usage(answer),
        }

    def stream(self, call: Call, answer: Answer, seq: int) -> StreamBody:
        start = {
            "type": "message_start",
            "message": {
                "id": f"msg_fake{seq}",
                "type": "message",
                "role": "assistant",
                "model": call.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": 1},
            },
        }
        blocks = _anthropic_blocks(call, answer, seq)
        events = [event for block in blocks for event in block.events()]
        # A text block opens before the ping, as the API sends it; the last block's stop ends it.
        opening = 1 if blocks and blocks[0].kind == "text" else 0
        prologue = [_sse(start, "message_start"), *events[:opening], _sse({"type": "ping"}, "ping")]
        closing = 1 if blocks else 0
        final = {
            "type": "message_delta",
            "delta": {"stop_reason": _anthropic_stop(answer, blocks), "stop_sequence": None},
            "usage": {"output_tokens": self._usage(answer)["output_tokens"]},
        }
        return StreamBody(
            content_type="text/event-stream; charset=utf-8",
            prologue=tuple(prologue),
            chunks=tuple(events[opening : len(events) - closing]),
            epilogue=(
                *events[len(events) - closing :],
                _sse(final, "message_delta"),
                _sse({"type": "message_stop"}, "message_stop"),
            ),
        )

    def default_message(self, reason: Reason) -> str:
        return {
            "authentication": "invalid x-api-key",
            "rate_limit": (
                "This request would exceed the rate limit for your organization. "
                "Please try again later."
            ),
            "quota": "This request would exceed your organization's rate limit.",
            "server_error": "Internal server error",
            "overloaded": "Overloaded",
            "unavailable": "Service unavailable",
            "not_found": "Not Found",
        }.get(reason) or super().default_message(reason)

    def error_body(self, status: int, reason: Reason, message: str | None = None) -> Any:
        types: dict[Reason, str] = {
            "authentication": "authentication_error",
            "permission": "permission_error",
            "not_found": "not_found_error",
            "rate_limit": "rate_limit_error",
            "quota": "rate_limit_error",
            "server_error": "api_error",
            "unavailable": "api_error",
            "overloaded": "overloaded_error",
        }
        return {
            "type": "error",
            "error": {
                "type": types.get(reason, "invalid_request_error"),
                "message": message or self.default_message(reason),
            },
        }

    def context_message(self, tokens: int, limit: int) -> str:
        return f"prompt is too long: {tokens} tokens > {limit} maximum"

    def rate_limit_headers(self, quota: Quota) -> Headers:
        return [
            ("anthropic-ratelimit-requests-limit", str(quota.limit_requests)),
            ("anthropic-ratelimit-requests-remaining", str(quota.remaining_requests)),
            ("anthropic-ratelimit-tokens-limit", str(quota.limit_tokens)),
            ("anthropic-ratelimit-tokens-remaining", str(quota.remaining_tokens)),
        ]

    def reply_headers(self, seq: int) -> Headers:
        return [("request-id", f"req_fake{seq}")]

    def stream_error_event(self, call: Call, sent_chunks: int) -> bytes:
        return _sse(self.error_body(529, "overloaded"), "error")

    def malformed_body(self) -> bytes:
        return b'{"id": "msg_malformed", "type": "message", "content": [{"type": "text", "te'

    def malformed_event(self, call: Call) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'


_GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


_GEMINI_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})


def _gemini_schema_error(schema: Any, field: str) -> str | None:
    """What Gemini says of a bad function or response schema (JSON Schema or its OpenAPI
    subset), as ``field: message``; None for a good one."""
    if not isinstance(schema, dict):
        return f"{field}: Invalid JSON payload received. Expected an object."
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if kind is not None and (not isinstance(kind, str) or kind.lower() not in _GEMINI_TYPES):
            return f"{field}.type: Invalid value {kind!r}"
    properties = schema.get("properties") or {}
    if not isinstance(properties, dict):
        return f"{field}.properties: Invalid JSON payload received. Expected an object."
    for index, name in enumerate(schema.get("required") or []):
        if name not in properties:
            return f"{field}.required[{index}]: property is not defined"
    subschemas = [(f"{field}.properties[{k}]", v) for k, v in properties.items()]
    if "items" in schema:
        subschemas.append((f"{field}.items", schema["items"]))
    for where, sub in subschemas:
        error = _gemini_schema_error(sub, where)
        if error is not None:
            return error
    return None


def _gemini_schemas(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every schema of a generateContent body, with the field naming it."""
    found = []
    for index, tool in enumerate(data.get("tools") or []):
        declarations = tool.get("functionDeclarations") if isinstance(tool, dict) else None
        for number, declaration in enumerate(declarations or []):
            for key in ("parametersJsonSchema", "parameters"):
                if isinstance(declaration, dict) and declaration.get(key) is not None:
                    field = f"tools[{index}].function_declarations[{number}].{key}"
                    found.append((field, declaration[key]))
    config = data.get("generationConfig")
    if isinstance(config, dict):
        for key in ("responseJsonSchema", "responseSchema"):
            if config.get(key) is not None:
                found.append((f"generation_config.{key}", config[key]))
    return found


#: Models that sign their function calls (thinking models) and, for Gemini 3, want them back.
_SIGNING_MODEL = re.compile(r"^gemini-(2\.5|3)")
_CHECKED_SIGNATURES_MODEL = re.compile(r"^gemini-3")
_SIGNATURE_PREFIX = b"fake-thought:"
_BYPASS_SIGNATURES = frozenset({FOREIGN_SIGNATURE, "context_engineering_is_the_way_to_go"})


def _thought_signature(call: ToolCall) -> str:
    return base64.b64encode(_SIGNATURE_PREFIX + call.id.encode()).decode()


def _signature_error(signature: object) -> str | None:
    if not signature:
        return (
            "Function call is missing a thought_signature in functionCall parts. This is "
            "required for tools to work correctly, and missing thought_signature may lead to "
            "degraded model performance."
        )
    if signature in _BYPASS_SIGNATURES:
        return None
    try:
        ours = base64.b64decode(str(signature), validate=True).startswith(_SIGNATURE_PREFIX)
    except ValueError:
        ours = False
    return None if ours else "Corrupted thought signature."


def _check_gemini_signatures(contents: Any) -> None:
    """Gemini 3's rule: in the current turn (since the last user text), the first function call
    of each model step carries the thought signature the model sent with it."""
    if not isinstance(contents, list):
        return
    turn_start = 0
    for index, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if content.get("role", "user") == "user" and any(
            isinstance(p, dict) and "functionResponse" not in p for p in parts or []
        ):
            turn_start = index
    for content in contents[turn_start:]:
        calls = [
            p for p in content.get("parts") or [] if isinstance(p, dict) and "functionCall" in p
        ]
        if content.get("role") == "model" and calls:
            error = _signature_error(calls[0].get("thoughtSignature"))
            if error is not None:
                raise WireError(400, "invalid_request", error)


def _gemini_request(data: dict[str, Any]) -> Request:
    """The body as a `Request`, or the 400 INVALID_ARGUMENT Gemini answers a bad one with:
    ``* GenerateContentRequest.<field>: <what>`` (a function response that answers no call of
    the turn before it says so in a sentence of its own)."""
    for field, schema in _gemini_schemas(data):
        error = _gemini_schema_error(schema, field)
        if error is not None:
            raise WireError(400, "invalid_request", f"* GenerateContentRequest.{error}")
    try:
        return GeminiFormat().read_request(data)
    except FieldError as exc:
        if exc.message.startswith("Please ensure"):
            raise WireError(400, "invalid_request", exc.message) from None
        raise WireError(
            400, "invalid_request", f"* GenerateContentRequest.{exc.field}: {exc.message}"
        ) from None


class GeminiWire(Wire):
    """Gemini `generateContent` / `streamGenerateContent` (SSE with `alt=sse`, else a JSON array).

    A missing key is answered 403 PERMISSION_DENIED, a wrong one 400 INVALID_ARGUMENT with the
    reason API_KEY_INVALID in its details, as Gemini does.
    Gemini's SSE separates events with CRLF, which parsers must accept.
    """

    paths = (
        "/v1beta/models/{model}:generateContent",
        "/v1beta/models/{model}:streamGenerateContent",
    )
    auth_status = 403
    has_rate_limit_headers = False

    def presented_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-goog-api-key") or query.get("key")

    def parse(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> Call:
        prefix = next((p for p in ("/v1beta/models/", "/v1/models/") if path.startswith(p)), None)
        model, _, method = path[len(prefix) :].rpartition(":") if prefix else ("", "", "")
        if not model or method not in ("generateContent", "streamGenerateContent"):
            raise WireError(
                404, "not_found", f"The requested URL {path} was not found on this server."
            )
        data = _load_object(body, "Invalid JSON payload received.")
        request = _gemini_request(data)
        if _CHECKED_SIGNATURES_MODEL.match(model):
            _check_gemini_signatures(data["contents"])
        config = data.get("generationConfig", data.get("generation_config"))
        max_tokens = None
        if isinstance(config, dict):
            max_tokens = _int_or_none(
                config.get("maxOutputTokens", config.get("max_output_tokens"))
            )
        return Call(
            model=model,
            prompt=request.last_user_text,
            prompt_tokens=sum(count_tokens(m.text) for m in request.conversation),
            max_tokens=max_tokens,
            stream=method == "streamGenerateContent",
            sse=query.get("alt") == "sse",
            request=request,
        )

    def _usage(self, answer: Answer) -> dict[str, int]:
        # A function call counts as the words of its name and arguments.
        output = answer.completion_tokens + sum(
            count_tokens(f"{c.name} {c.arguments}") for c in answer.tool_calls
        )
        return {
            "promptTokenCount": answer.prompt_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": answer.prompt_tokens + output,
        }

    def _response(
        self,
        call: Call,
        text: str,
        finish: str | None,
        usage: dict[str, int] | None,
        seq: int,
        calls: tuple[ToolCall, ...] = (),
    ) -> dict[str, Any]:
        # Gemini's function calls carry no id (the client matches responses by name).
        parts: list[dict[str, Any]] = [{"text": text}] if text or not calls else []
        for index, tool_call in enumerate(calls):
            part: dict[str, Any] = {
                "functionCall": {"name": tool_call.name, "args": tool_call.args}
            }
            if index == 0 and _SIGNING_MODEL.match(call.model):
                # A thinking model signs the first call of a step (parallel calls: the first).
                part["thoughtSignature"] = _thought_signature(tool_call)
            parts.append(part)
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        body: dict[str, Any] = {"candidates": [candidate]}
        if usage is not None:
            body["usageMetadata"] = usage
        body["modelVersion"] = call.model
        body["responseId"] = f"fake{seq}"
        return body

    def _finish(self, answer: Answer) -> str:
        return "MAX_TOKENS" if answer.truncated else "STOP"

    def reply(self, call: Call, answer: Answer, seq: int) -> dict[str, Any]:
        finish, usage = self._finish(answer), self._usage(answer)
        return self._response(call, answer.text, finish, usage, seq, answer.tool_calls)

    def stream(self, call: Call, answer: Answer, seq: int) -> StreamBody:
        # Function calls arrive whole, in the last chunk, with the finish reason (STOP) and usage.
        events = [self._response(call, text, None, None, seq) for text in answer.chunks]
        final = self._response(
            call, "", self._finish(answer), self._usage(answer), seq, answer.tool_calls
        )
        if call.sse:
            return StreamBody(
                content_type="text/event-stream",
                prologue=(),
                chunks=tuple(_sse(event, newline=b"\r\n") for event in events),
                epilogue=(_sse(final, newline=b"\r\n"),),
            )
        # Without alt=sse Gemini streams one JSON array, element by element.
        return StreamBody(
            content_type="application/json; charset=UTF-8",
            prologue=(b"[",),
            chunks=tuple((b",\r\n" if i else b"") + dump(e) for i, e in enumerate(events)),
            epilogue=((b",\r\n" if events else b"") + dump(final) + b"]",),
        )

    def default_message(self, reason: Reason) -> str:
        return {
            "authentication": "API key not valid. Please pass a valid API key.",
            "permission": "API key not valid. Please pass a valid API key.",
            "rate_limit": "Resource has been exhausted (e.g. check quota).",
            "quota": (
                "You exceeded your current quota, please check your plan and billing details."
            ),
            "server_error": "An internal error has occurred. Please retry or report the issue.",
            "unavailable": "The model is overloaded. Please try again later.",
            "overloaded": "The model is overloaded. Please try again later.",
        }.get(reason) or super().default_message(reason)

    def error_body(self, status: int, reason: Reason, message: str | None = None) -> Any:
        name = _GRPC_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {
            "error": {
                "code": status,
                "message": message or self.default_message(reason),
                "status": name,
            }
        }

    def auth_error(self, presented: str | None) -> WireError:
        """No key: 403 PERMISSION_DENIED. A wrong one: 400 INVALID_ARGUMENT with an ErrorInfo
        detail whose reason is API_KEY_INVALID, as generativelanguage.googleapis.com answers."""
        if not presented:
            return WireError(
                403,
                "permission",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        message = self.default_message("authentication")
        body = self.error_body(400, "invalid_request", message)
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ]
        return WireError(400, "authentication", message, body)

    def stream_error_event(self, call: Call, sent_chunks: int) -> bytes:
        error = self.error_body(503, "unavailable")
        if call.sse:
            return _sse(error, newline=b"\r\n")
        return (b",\r\n" if sent_chunks else b"") + dump(error) + b"]"

    def rate_limit_body(self, retry_after_s: float) -> Any:
        # Gemini also states the wait in the body, as a google.rpc.RetryInfo detail.
        body = self.error_body(429, "rate_limit")
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{retry_after_s:g}s",
            }
        ]
        return body

    def context_message(self, tokens: int, limit: int) -> str:
        return (
            f"The input token count ({tokens}) exceeds the maximum number of tokens "
            f"allowed ({limit})."
        )

    def malformed_body(self) -> bytes:
        return b'{"candidates": [{"content": {"parts": [{"text": "ec'

    def malformed_event(self, call: Call) -> bytes:
        if not call.sse:
            return b'{"candidates": [{"content": '
        return b'data: {"candidates": [{"content": \r\n\r\n'


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
    has_rate_limit_headers = False

    def parse(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> Call:
        if path != "/api/chat":
            raise WireError(404, "not_found", "404 page not found")
        data = _load_object(body, "invalid character in request body")
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
        max_tokens = _int_or_none(options.get("num_predict")) if isinstance(options, dict) else None
        if max_tokens is not None and max_tokens < 0:  # -1 means "no limit" to Ollama
            max_tokens = None
        return Call(
            model=model,
            prompt=_last_user_text(messages),
            prompt_tokens=_chat_prompt_tokens(messages),
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


def wire_for(kind: str) -> Wire:
    wires: dict[str | None, type[Wire]] = {
        "openai": OpenAIWire,
        "anthropic": AnthropicWire,
        "gemini": GeminiWire,
        "ollama": OllamaWire,
    }
    wire = kind_named(kind).wire if kind in KINDS else None
    if wire not in wires:
        raise ValueError(f"kind={kind!r} is not one of: {', '.join(sorted(KINDS))}")
    return wires[wire]()
