"""The gateway's Anthropic-compatible API, with the official anthropic SDK as the client, on
loopback: against the demo's simulated providers, and against the fake provider server for
fallback across real wire protocols (real sockets, real time: wide timeouts).

Every message and stream event the gateway sends is also checked against the SDK's own types
(pydantic validation, not the SDK's lenient construction), read raw off the wire.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter
from support import quick_demo_config

import runtime
from actors.cascade import Answering
from actors.chat import ToolCall
from actors.faults import Fault, FaultKind
from actors.messages import Reply, TextDelta, ToolCallDelta, Usage
from runtime.gateway import GatewayServer, open_gateway
from runtime.gateway.anthropic_api import AnthropicStream, message
from runtime.gateway.errors import GatewayError, error_body
from runtime.testing import FakeProviderServer

anthropic = pytest.importorskip("anthropic")
types = anthropic.types

STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(types.RawMessageStreamEvent)

ASK = [{"role": "user", "content": "What is the VAT rate on books?"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayServer]:
    async with open_gateway(quick_demo_config()) as server:
        yield server


def client(server: GatewayServer) -> Any:
    return anthropic.AsyncAnthropic(
        base_url=server.base_url, api_key="unused", max_retries=0, timeout=60
    )


# -- the wire, raw, checked against the SDK's types ---------------------------------------------


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each server-sent event."""
    events = []
    for chunk in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in chunk.splitlines() if ": " in line)
        if "data" in fields:
            events.append((fields.get("event", ""), json.loads(fields["data"])))
    return events


def validated(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The events' data, each one validated by the SDK's types (an error event as an error)."""
    for name, data in events:
        assert name == data["type"]
        if name == "error":
            types.ErrorResponse.model_validate(data, strict=False)
        else:
            STREAM_EVENT.validate_python(data)
    return [data for _, data in events]


async def post(server: GatewayServer, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        return await http.post("/v1/messages", json=body, headers=headers)


async def raw_stream(server: GatewayServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await post(server, {**body, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return validated(sse_events(response.text))


def sequence(events: list[dict[str, Any]]) -> list[str]:
    """The event types, each run of deltas of one block as one entry."""
    out: list[str] = []
    for event in events:
        if not (out and out[-1] == event["type"] == "content_block_delta"):
            out.append(event["type"])
    return out


# -- the renderers, without a server ----------------------------------------------------------

PLAIN = runtime.Request(prompt="hi", max_tokens=50)


def reply(text: str = "", **changes: Any) -> Reply:
    fields: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4o",
        "level": "primary",
        "fallback_used": False,
        "attempts": (),
        "latency_ms": 1.0,
        "cost_usd": 0.0,
        "usage": Usage(input_tokens=100, output_tokens=7, cached_tokens=30),
    }
    return Reply(text, **{**fields, **changes})


def rendered(pieces: list[bytes]) -> list[dict[str, Any]]:
    return validated(sse_events(b"".join(pieces).decode()))


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_a_message_maps_the_finish_reason_and_usage_back(
    finish_reason: str, stop_reason: str
) -> None:
    body = message(reply("Hello", finish_reason=finish_reason), "msg_1", PLAIN)
    parsed = types.Message.model_validate(body)
    assert (parsed.stop_reason, parsed.stop_sequence) == (stop_reason, None)
    assert (parsed.usage.input_tokens, parsed.usage.cache_read_input_tokens) == (70, 30)
    assert parsed.usage.output_tokens == 7


def test_a_refusal_keeps_what_the_model_said() -> None:
    refused = reply("", refusal="I cannot help with that.", finish_reason="content_filter")
    parsed = types.Message.model_validate(message(refused, "msg_1", PLAIN))
    assert [b.text for b in parsed.content] == ["I cannot help with that."]
    assert parsed.stop_reason == "refusal"


def test_text_then_interleaved_calls_stream_as_blocks_in_order() -> None:
    stream = AnthropicStream("msg_1", "gpt-4o", PLAIN)
    pieces = [*stream.start(Answering("openai", "gpt-4o", "primary", False, 1))]
    deltas: list[TextDelta | ToolCallDelta] = [
        TextDelta("Let me"),
        TextDelta(" check."),
        ToolCallDelta(0, "call_a", "get_weather", '{"city":'),
        ToolCallDelta(1, "call_b", "get_time"),
        ToolCallDelta(0, arguments='"Paris"}'),  # a late piece of the first call
        ToolCallDelta(1, arguments="{}"),
    ]
    for event in deltas:
        pieces += stream.delta(event)
    calls = (ToolCall("call_a", "get_weather", '{"city":"Paris"}'), ToolCall("call_b", "get_time"))
    pieces += stream.done(reply("Let me check.", finish_reason="tool_calls", tool_calls=calls))
    events = rendered(pieces)
    starts = [
        (e["index"], e["content_block"]) for e in events if e["type"] == "content_block_start"
    ]
    assert [(i, b["type"], b.get("id")) for i, b in starts] == [
        (0, "text", None),
        (1, "tool_use", "call_a"),
        (2, "tool_use", "call_b"),
    ]
    assert [e["index"] for e in events if e["type"] == "content_block_stop"] == [0, 1, 2]
    inputs: dict[int, str] = {}
    for sent in events:
        if sent["type"] == "content_block_delta" and sent["index"] > 0:
            inputs[sent["index"]] = inputs.get(sent["index"], "") + sent["delta"]["partial_json"]
    assert inputs == {1: '{"city":"Paris"}', 2: "{}"}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"] == {
        "input_tokens": 70,
        "output_tokens": 7,
        "cache_read_input_tokens": 30,
    }


def test_a_reply_that_came_whole_is_streamed_as_its_blocks() -> None:
    """A stream whose reply arrives with no deltas (no answerer known at the start either)
    still gets the whole event sequence."""
    stream = AnthropicStream("msg_1", "uptax/auto", PLAIN)
    events = rendered(stream.done(reply("From the cache.", provider="cache", model="cache")))
    assert sequence(events) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[2]["delta"] == {"type": "text_delta", "text": "From the cache."}


def test_a_failure_after_the_first_event_is_an_error_event() -> None:
    stream = AnthropicStream("msg_1", "gpt-4o", PLAIN)
    pieces = [*stream.delta(TextDelta("Hel")), *stream.error(GatewayError(503, "overloaded"))]
    events = rendered(pieces)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert events[-1]["error"] == {"type": "overloaded_error", "message": "overloaded"}


# -- with the SDK -------------------------------------------------------------------------------


async def test_a_message_says_who_answered_in_its_headers(gateway: GatewayServer) -> None:
    raw = await client(gateway).messages.with_raw_response.create(
        model="uptax/auto", max_tokens=200, messages=ASK
    )
    message = await raw.parse()
    types.Message.model_validate(raw.http_response.json())
    assert message.id.startswith("msg_") and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0
    headers = raw.headers
    assert headers["x-request-id"] == message.id
    assert headers["x-uptax-provider"] and headers["x-uptax-level"] == "primary"
    assert headers["x-uptax-model"] == message.model
    assert headers["x-uptax-fallback"] in ("true", "false")
    assert int(headers["x-uptax-attempts"]) >= 1 and float(headers["x-uptax-cost-usd"]) > 0


async def test_a_stream_is_anthropic_s_event_sequence(gateway: GatewayServer) -> None:
    body = {"model": "claude-sonnet", "max_tokens": 200, "messages": ASK}
    async with client(gateway).messages.stream(**body) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text.startswith("[anthropic/claude-sonnet]")
    assert final.content[0].text == text and final.model == "claude-sonnet"
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0

    events = await raw_stream(gateway, body)
    assert sequence(events) == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert {e["delta"]["type"] for e in events if e["type"] == "content_block_delta"} == {
        "text_delta"
    }


async def test_a_streamed_tool_use_is_accumulated(gateway: GatewayServer) -> None:
    body = {
        "model": "gpt-4o",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "get_weather Paris"}],
        "tools": [WEATHER],
    }
    async with client(gateway).messages.stream(**body) as stream:
        final = await stream.get_final_message()
    [call] = final.content
    assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"city": "Paris"})
    assert call.id and final.stop_reason == "tool_use"

    events = await raw_stream(gateway, body)
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [(b["type"], b["name"], b["input"]) for b in starts] == [("tool_use", "get_weather", {})]
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"input_json_delta"}
    assert json.loads("".join(d["partial_json"] for d in deltas)) == {"city": "Paris"}


async def test_tool_use_and_tool_result_round_trip(gateway: GatewayServer) -> None:
    sdk = client(gateway)
    ask = [{"role": "user", "content": "get_weather Paris"}]
    first = await sdk.messages.create(
        model="claude-sonnet", max_tokens=200, messages=ask, tools=[WEATHER]
    )
    [call] = first.content
    assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"city": "Paris"})
    assert first.stop_reason == "tool_use"
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}
    second = await sdk.messages.create(
        model="claude-sonnet",
        max_tokens=200,
        messages=[
            *ask,
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {"role": "user", "content": [result]},
        ],
        tools=[WEATHER],
    )
    assert [block.type for block in second.content] == ["text"]
    assert second.content[0].text == "results: 18C and sunny"
    assert second.stop_reason == "end_turn"


async def test_a_forced_tool_gives_json_input(gateway: GatewayServer) -> None:
    record = {
        "name": "record_vat",
        "input_schema": {
            "type": "object",
            "properties": {"country": {"type": "string"}, "rate": {"type": "number"}},
            "required": ["country", "rate"],
        },
    }
    raw = await client(gateway).messages.with_raw_response.create(
        model="claude-haiku",
        max_tokens=200,
        messages=[{"role": "user", "content": "record_vat France"}],
        tools=[record],
        tool_choice={"type": "tool", "name": "record_vat"},
    )
    types.Message.model_validate(raw.http_response.json())
    [call] = (await raw.parse()).content
    assert (call.name, call.input) == ("record_vat", {"country": "France", "rate": 1})


async def test_a_json_answer_comes_back_as_the_json_tool_s_input(gateway: GatewayServer) -> None:
    """The JSON tool (`json_answer_...`, forced) asks for a JSON answer, on any provider; it
    comes back as that tool's call, whole and streamed."""
    schema = {"type": "object", "properties": {"country": {"type": "string"}}}
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "France please"}],
        "tools": [{"name": "json_answer_vat", "description": "the answer", "input_schema": schema}],
        "tool_choice": {"type": "tool", "name": "json_answer_vat"},
    }
    message = await client(gateway).messages.create(**body)
    [answer] = message.content
    assert (answer.type, answer.name, answer.input) == (
        "tool_use",
        "json_answer_vat",
        {"country": "France"},
    )
    assert message.stop_reason == "tool_use"
    async with client(gateway).messages.stream(**body) as stream:
        final = await stream.get_final_message()
    assert [(b.name, b.input) for b in final.content] == [
        ("json_answer_vat", {"country": "France"})
    ]
    assert final.stop_reason == "tool_use"
    await raw_stream(gateway, body)  # every event valid


async def test_errors_are_the_sdk_s_typed_exceptions(gateway: GatewayServer) -> None:
    sdk = client(gateway)
    with pytest.raises(anthropic.NotFoundError, match="claude-9") as missing:
        await sdk.messages.create(model="claude-9", max_tokens=10, messages=ASK)
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        await sdk.messages.create(
            model="claude-sonnet", max_tokens=10, messages=[{"role": "robot", "content": "x"}]
        )
    assert "robot" in str(bad.value) and bad.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError, match="x-uptax-budget-usd"):
        await sdk.messages.create(
            model="claude-sonnet",
            max_tokens=10,
            messages=ASK,
            extra_headers={"x-uptax-budget-usd": "lots"},
        )
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        await sdk.messages.create(model="claude-sonnet", max_tokens=0, messages=ASK)
    with pytest.raises(anthropic.BadRequestError, match="stream"):
        await sdk.messages.create(
            model="claude-sonnet", max_tokens=10, messages=ASK, extra_body={"stream": "yes"}
        )


async def test_a_missing_max_tokens_or_a_bad_body_is_a_400_naming_it(
    gateway: GatewayServer,
) -> None:
    missing = await post(gateway, {"model": "claude-sonnet", "messages": ASK})
    assert missing.status_code == 400
    assert missing.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: a limit is required"},
    }
    no_role = await post(gateway, {"model": "claude-sonnet", "max_tokens": 5, "messages": [{}]})
    assert no_role.status_code == 400 and "role" in no_role.json()["error"]["message"]
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        too_big = await http.post("/v1/messages", content=b"x" * (4 * 1024 * 1024 + 1))
        broken = await http.post("/v1/messages", content=b"{not json")
    assert too_big.status_code == 413
    assert too_big.json()["error"]["type"] == "request_too_large"
    assert broken.status_code == 400 and broken.json()["type"] == "error"
    assert "x-request-id" in broken.headers


#: The SDK's HTTP library: httpx, or httpx2 in its newer releases.
_SDK_HTTP: Any = getattr(anthropic._base_client, "httpx2", None) or anthropic._base_client.httpx


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, "BadRequestError"),
        (401, "AuthenticationError"),
        (403, "PermissionDeniedError"),
        (404, "NotFoundError"),
        (413, "APIStatusError"),  # ContentTooLargeError in newer SDKs
        (429, "RateLimitError"),
        (502, "InternalServerError"),
        (503, "InternalServerError"),  # ServiceUnavailableError in newer SDKs
        (504, "InternalServerError"),  # GatewayTimeoutError in newer SDKs
    ],
)
def test_every_error_status_is_the_sdk_s_exception(status: int, exception: str) -> None:
    """Each status the gateway answers with, in its Anthropic body, through the SDK's whole
    request path (a mock transport standing in for the gateway)."""
    body = error_body(GatewayError(status, "refused", retry_after_s=3.0), "anthropic")

    def answer(request: Any) -> Any:
        return _SDK_HTTP.Response(status, json=body, headers={"retry-after": "3"})

    sdk = anthropic.Anthropic(
        api_key="unused",
        base_url="http://127.0.0.1:9",
        max_retries=0,
        http_client=_SDK_HTTP.Client(transport=_SDK_HTTP.MockTransport(answer)),
    )
    with pytest.raises(getattr(anthropic, exception)) as raised:
        sdk.messages.create(model="claude-sonnet", max_tokens=10, messages=ASK)
    assert raised.value.status_code == status and raised.value.body == body
    assert isinstance(raised.value, anthropic.InternalServerError) == (status >= 500)


async def test_a_stream_cut_after_its_first_event_ends_with_an_error_event(
    gateway: GatewayServer,
) -> None:
    gateway.rt.inject_fault("openai", Fault(FaultKind.DROP_STREAM, after_chunks=2))
    body = {"model": "gpt-4o", "max_tokens": 200, "messages": ASK}
    with pytest.raises(anthropic.APIStatusError) as cut:
        async with client(gateway).messages.stream(**body) as stream:
            async for _ in stream:
                pass
    assert cut.value.body["type"] == "error"
    events = await raw_stream(gateway, body)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] == "api_error"  # a 502: the stream was interrupted
    assert "message_stop" not in sequence(events)


# -- fallback across real wire protocols ---------------------------------------------------------

KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-0123456789abcdef",
    "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
    "GEMINI_API_KEY": "AIzaTest0123456789abcdefghijkl",
}


def http_config(server: FakeProviderServer) -> runtime.Config:
    """One model served by an OpenAI-, an Anthropic- and a Gemini-kind provider, a level each
    (so who answers does not hang on their ranking)."""
    providers = [("openai", "openai"), ("anthropic", "anthropic"), ("gemini", "gemini")]
    return runtime.parse_config(
        {
            "runtime": {"deadline_s": 40},
            "providers": [
                {
                    "name": name,
                    "kind": kind,
                    "models": ["house-model"],
                    "base_url": server.url_for(name),
                    "read_timeout_s": 10.0,
                    "breaker": {"consecutive_failures": 50, "minimum_calls": 100},
                }
                for name, kind in providers
            ]
            + [{"name": "cache", "kind": "cache"}],
            "levels": [
                {"name": "primary", "providers": ["openai"], "timeout_s": 10},
                {"name": "secondary", "providers": ["anthropic"], "timeout_s": 10},
                {"name": "emergency", "providers": ["gemini"], "timeout_s": 10},
                {"name": "last_resort", "providers": ["cache"], "timeout_s": 5},
            ],
            "models": {"house-model": {"input_usd_per_mtok": 1, "output_usd_per_mtok": 2}},
        }
    )


@pytest.fixture
async def http_gateway(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GatewayServer]:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    async with open_gateway(http_config(fake_providers)) as server:
        yield server


async def test_a_provider_down_is_answered_by_the_next_visibly(
    http_gateway: GatewayServer, fake_providers: FakeProviderServer
) -> None:
    sdk = client(http_gateway)
    body = {"model": "house-model", "max_tokens": 50, "messages": ASK}
    healthy = await sdk.messages.with_raw_response.create(**body)
    assert healthy.headers["x-uptax-provider"] == "openai"
    assert healthy.headers["x-uptax-fallback"] == "false"

    fake_providers.target("openai").inject(Fault(FaultKind.OUTAGE))
    raw = await sdk.messages.with_raw_response.create(**body)
    types.Message.model_validate(raw.http_response.json())
    assert (await raw.parse()).content[0].text
    assert raw.headers["x-uptax-provider"] == "anthropic"
    assert raw.headers["x-uptax-level"] == "secondary"
    assert raw.headers["x-uptax-fallback"] == "true" and raw.headers["x-uptax-attempts"] == "2"

    fake_providers.target("anthropic").inject(Fault(FaultKind.OUTAGE))
    async with sdk.messages.with_streaming_response.create(**body, stream=True) as streamed:
        assert streamed.headers["x-uptax-provider"] == "gemini"
        assert streamed.headers["x-uptax-level"] == "emergency"
        assert streamed.headers["x-uptax-fallback"] == "true"
        text = await streamed.text()
    events = validated(sse_events(text))
    assert events[-1]["type"] == "message_stop"


async def test_every_provider_down_is_an_internal_server_error(
    http_gateway: GatewayServer, fake_providers: FakeProviderServer
) -> None:
    for name in ("openai", "anthropic", "gemini"):
        fake_providers.target(name).inject(Fault(FaultKind.OUTAGE))
    with pytest.raises(anthropic.InternalServerError) as failed:
        await client(http_gateway).messages.create(model="house-model", max_tokens=50, messages=ASK)
    assert failed.value.status_code == 502
    assert failed.value.body["error"]["type"] == "api_error"
    assert "sk-" not in str(failed.value.body)  # attempts summarised, no key
