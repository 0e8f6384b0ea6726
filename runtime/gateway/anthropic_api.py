"""Anthropic's Messages shape, out: a `Reply` as a ``message``, a streamed reply in Anthropic's
event sequence, a failure after the first event as an ``error`` event.

The body is read by the Anthropic wire format's own reader (the inverse of what the adapter
sends), so a JSON answer asked for with a forced *JSON tool* (`anthropic_tools`) is read as a
response format; its answer goes back the way Anthropic would give it, as that tool's
``tool_use`` block. Stream events, in order: ``message_start``; per content block
``content_block_start``, ``content_block_delta`` (``text_delta``, or ``input_json_delta`` for a
tool's input), ``content_block_stop``; then ``message_delta`` (stop reason, usage) and
``message_stop``. A block stops when the next begins, as Anthropic's do.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from actors.adapters.anthropic import AnthropicWire
from actors.adapters.anthropic_tools import json_tool_name
from actors.cascade import Answering
from actors.messages import Reply, Request, TextDelta, ToolCallDelta, Usage
from runtime.gateway.errors import Dialect, GatewayError, error_body
from runtime.gateway.streaming import sse

__all__ = ["READER", "STOP_REASONS", "AnthropicStream", "json_tool", "message", "read", "usage"]

#: Reads a Messages body into a `Request` (the inverse of what the adapter sends).
READER = AnthropicWire()

#: The runtime's finish reasons in Anthropic's vocabulary.
STOP_REASONS: Mapping[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


def read(body: Mapping[str, Any]) -> Request:
    """The body as a `Request`; a 400 naming the field when it is not one (``max_tokens`` is
    required, as Anthropic's API has it)."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise GatewayError(400, "model: a model name is required", param="model")
    if "max_tokens" not in body:
        raise GatewayError(400, "max_tokens: a limit is required", param="max_tokens")
    limit = body["max_tokens"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise GatewayError(400, "max_tokens: must be an integer >= 1", param="max_tokens")
    if not isinstance(body.get("messages"), list):
        raise GatewayError(400, "messages: a list of messages is required", param="messages")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise GatewayError(400, "stream: must be true or false", param="stream")
    try:
        return READER.read_request(body)
    except KeyError as exc:
        field = str(exc.args[0]) if exc.args else "a field"
        raise GatewayError(400, f"{field}: a required field is missing", param=field) from None
    except AttributeError:  # a mapping expected (metadata, a block...) was something else
        raise GatewayError(400, "the body's shape is not Anthropic's Messages shape") from None


def json_tool(request: Request) -> str | None:
    """The name of the JSON tool the request forced, when it asked for a JSON answer."""
    fmt = request.response_format
    return json_tool_name(fmt) if fmt is not None and fmt.is_json else None


def usage(value: Usage) -> dict[str, Any]:
    """Anthropic's usage: its ``input_tokens`` leaves out those read from the cache."""
    out: dict[str, Any] = {
        "input_tokens": max(0, value.input_tokens - value.cached_tokens),
        "output_tokens": value.output_tokens,
        "cache_read_input_tokens": value.cached_tokens,
    }
    if value.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": value.reasoning_tokens}
    return out


def _tool_use(call_id: str, name: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": value}


def _tool_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def content(reply: Reply, json_name: str | None) -> list[dict[str, Any]]:
    """The reply's content blocks: its text (a JSON answer as the JSON tool's input), then a
    ``tool_use`` block per tool call, ids kept."""
    blocks: list[dict[str, Any]] = []
    text = reply.text or reply.refusal or ""
    answer = _json_object(text) if json_name is not None and text else None
    if json_name is not None and answer is not None:
        blocks.append(_tool_use(_tool_id(), json_name, answer))
    elif text:
        blocks.append({"type": "text", "text": text})
    blocks += [_tool_use(call.id, call.name, call.args) for call in reply.tool_calls]
    return blocks


def stop_reason(reply: Reply, answered_in_json: bool) -> str:
    """Anthropic's stop reason: a JSON answer came as a tool's call, so "tool_use"."""
    if answered_in_json and reply.finish_reason == "stop":
        return "tool_use"
    return STOP_REASONS.get(reply.finish_reason, "end_turn")


def message(reply: Reply, request_id: str, request: Request) -> dict[str, Any]:
    """The whole reply as an Anthropic ``message``."""
    json_name = json_tool(request)
    blocks = content(reply, json_name)
    in_json = any(b["type"] == "tool_use" and b["name"] == json_name for b in blocks)
    return {
        "id": request_id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": blocks,
        "stop_reason": stop_reason(reply, in_json),
        "stop_sequence": None,
        "usage": usage(reply.usage),
    }


def _event(data: dict[str, Any]) -> bytes:
    return sse(data, event=str(data["type"]))


class AnthropicStream:
    """A streamed reply in Anthropic's event sequence (see `StreamRenderer`)."""

    dialect: Dialect = "anthropic"

    def __init__(self, request_id: str, model: str, request: Request) -> None:
        self._id = request_id
        self._model = model
        self._json_name = json_tool(request)
        self._started = False
        self._answered_in_json = False
        #: Blocks begun so far; the open one's key ("text", "json" or a call's index) and index.
        self._blocks = 0
        self._open: tuple[object, int] | None = None
        #: The runtime's tool-call index -> its block's index.
        self._calls: dict[int, int] = {}

    def start(self, answering: Answering) -> list[bytes]:
        self._model = answering.model
        return self._message_start()

    def _message_start(self) -> list[bytes]:
        """``message_start``, once (also when the stream began without a known answerer)."""
        if self._started:
            return []
        self._started = True
        body: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},  # the real counts: message_delta
        }
        return [_event({"type": "message_start", "message": body})]

    def _begin(self, key: object, block: dict[str, Any]) -> list[bytes]:
        """Start a block (stopping the open one), unless it is the open one already."""
        if self._open is not None and self._open[0] == key:
            return []
        out = self._stop()
        self._open = (key, self._blocks)
        self._blocks += 1
        start = {"type": "content_block_start", "index": self._open[1], "content_block": block}
        return [*out, _event(start)]

    def _stop(self) -> list[bytes]:
        if self._open is None:
            return []
        index, self._open = self._open[1], None
        return [_event({"type": "content_block_stop", "index": index})]

    def _delta(self, index: int, kind: str, field: str, value: str) -> bytes:
        delta = {"type": kind, field: value}
        return _event({"type": "content_block_delta", "index": index, "delta": delta})

    def _text(self, text: str, as_json: bool = True) -> list[bytes]:
        if as_json and self._json_name is not None:  # the JSON answer: the JSON tool's input
            self._answered_in_json = True
            out = self._begin("json", _tool_use(_tool_id(), self._json_name, {}))
            assert self._open is not None
            return [*out, self._delta(self._open[1], "input_json_delta", "partial_json", text)]
        out = self._begin("text", {"type": "text", "text": ""})
        assert self._open is not None
        return [*out, self._delta(self._open[1], "text_delta", "text", text)]

    def _call(self, event: ToolCallDelta) -> list[bytes]:
        out: list[bytes] = []
        if event.index not in self._calls:
            block = _tool_use(event.id or _tool_id(), event.name or "", {})
            out = self._begin(("call", event.index), block)
            self._calls[event.index] = self._blocks - 1
        if event.arguments:  # a late piece of an earlier call goes to its own block
            index = self._calls[event.index]
            out.append(self._delta(index, "input_json_delta", "partial_json", event.arguments))
        return out

    def delta(self, event: TextDelta | ToolCallDelta) -> list[bytes]:
        out = self._message_start()
        if isinstance(event, TextDelta):
            return [*out, *self._text(event.text)] if event.text else out
        return [*out, *self._call(event)]

    def _replay(self, reply: Reply) -> list[bytes]:
        """A reply that came whole (no deltas), as its blocks' events."""
        out: list[bytes] = []
        for block in content(reply, self._json_name):
            if block["type"] == "text":  # not JSON, though asked for: kept as text
                out += self._text(block["text"], as_json=False)
            elif block["name"] == self._json_name:
                out += self._text(json.dumps(block["input"], ensure_ascii=False))
            else:
                index = len(self._calls)
                call_input = json.dumps(block["input"], ensure_ascii=False)
                out += self._call(ToolCallDelta(index, block["id"], block["name"], call_input))
        return out

    def done(self, reply: Reply) -> list[bytes]:
        self._model = reply.model
        out = self._message_start()
        if self._blocks == 0:
            out += self._replay(reply)
        out += self._stop()
        delta = {"stop_reason": stop_reason(reply, self._answered_in_json), "stop_sequence": None}
        out.append(_event({"type": "message_delta", "delta": delta, "usage": usage(reply.usage)}))
        out.append(_event({"type": "message_stop"}))
        return out

    def error(self, error: GatewayError) -> list[bytes]:
        """A failure after the first event: Anthropic's ``error`` event."""
        return [sse(error_body(error, "anthropic"), event="error")]
