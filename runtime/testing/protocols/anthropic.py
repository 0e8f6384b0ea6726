"""The fake Anthropic Messages wire: tool_use / tool_result pairing checked as the real API does,
tool calls as `tool_use` blocks streamed in `input_json_delta` pieces, JSON through the forced
tool."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from actors.adapters.anthropic import AnthropicWire as AnthropicFormat
from actors.adapters.anthropic_tools import json_tool_name
from actors.messages import Request
from actors.validation import FieldError
from runtime.testing.protocols.base import (
    CREATED_AT,
    Answer,
    Call,
    Headers,
    Quota,
    Reason,
    StreamBody,
    Wire,
    WireError,
    count_tokens,
    int_or_none,
    last_user_text,
    load_object,
    sse,
    text_of,
)

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
            sse(start, "content_block_start"),
            *(sse(delta, "content_block_delta") for delta in deltas),
            sse(stop, "content_block_stop"),
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
    listed_models = ("claude-sonnet-4-0", "claude-3-5-haiku-latest")

    def models_reply(self) -> Any:
        data = [
            {
                "type": "model",
                "id": model,
                "display_name": model,
                "created_at": CREATED_AT,
            }
            for model in self.listed_models
        ]
        first, last = data[0]["id"], data[-1]["id"]
        return {"data": data, "has_more": False, "first_id": first, "last_id": last}

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
        data = load_object(body, "There was an issue with your request body: invalid JSON")
        for field in ("model", "messages", "max_tokens"):
            if field not in data:
                raise WireError(400, "invalid_request", f"{field}: Field required")
        model, messages, max_tokens = data["model"], data["messages"], data["max_tokens"]
        if not isinstance(model, str) or not model:
            raise WireError(400, "invalid_request", "model: Input should be a valid string")
        if not isinstance(messages, list) or not messages:
            raise WireError(400, "invalid_request", "messages: at least one message is required")
        if int_or_none(max_tokens) is None or max_tokens < 1:
            raise WireError(400, "invalid_request", "max_tokens: Input should be a valid integer")
        temperature = data.get("temperature")
        if isinstance(temperature, int | float) and not 0 <= temperature <= 1:
            raise WireError(400, "invalid_request", "temperature: range: 0..1")
        _check_anthropic_tools(data.get("tools"))
        _check_tool_results(messages)
        texts = [text_of(m.get("content")) for m in messages if isinstance(m, dict)]
        texts.append(text_of(data.get("system")))
        return Call(
            model=model,
            prompt=last_user_text(messages),
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
        prologue = [sse(start, "message_start"), *events[:opening], sse({"type": "ping"}, "ping")]
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
                sse(final, "message_delta"),
                sse({"type": "message_stop"}, "message_stop"),
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
        return sse(self.error_body(529, "overloaded"), "error")

    def malformed_body(self) -> bytes:
        return b'{"id": "msg_malformed", "type": "message", "content": [{"type": "text", "te'

    def malformed_event(self, call: Call) -> bytes:
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'


