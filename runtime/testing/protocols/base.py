"""What every fake wire format shares: the `Wire` interface, a request as the server understood it
(`Call`), its deterministic `Answer`, quota and stream shapes, and small body helpers.

Nothing here sleeps or does I/O; the server applies faults on top.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from actors.chat import ToolCall
from actors.kinds import HTTP_KINDS, kinds_speaking
from actors.messages import Request
from actors.synthetic import synthetic_answer

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


def sse(data: Any, event: str | None = None, newline: bytes = b"\n") -> bytes:
    payload = data if isinstance(data, bytes) else dump(data)
    head = b"event: " + event.encode() + newline if event else b""
    return head + b"data: " + payload + newline + newline


def load_object(body: bytes, invalid: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(400, "invalid_request", invalid) from exc
    if not isinstance(value, dict):
        raise WireError(400, "invalid_request", invalid)
    return value


def text_of(content: Any) -> str:
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


def chat_prompt_tokens(messages: list[Any]) -> int:
    """Tokens in a chat-format `messages` list (OpenAI and Ollama)."""
    return sum(count_tokens(text_of(m.get("content"))) for m in messages if isinstance(m, dict))


def last_user_text(messages: list[Any], role_key: str = "role") -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get(role_key, "user") == "user":
            return text_of(message.get("content"))
    return ""


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Wire:
    """One provider protocol. Subclasses fill in the shapes."""

    #: The path a provider of this kind is posted to, relative to its mount point.
    paths: tuple[str, ...] = ()
    #: The models listing, answered to GET (what a recovery probe asks).
    models_path = "/v1/models"
    #: The models a listing names.
    listed_models: tuple[str, ...] = ()
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

    def models_reply(self) -> Any:
        """The models listing's body, in the provider's shape."""
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


