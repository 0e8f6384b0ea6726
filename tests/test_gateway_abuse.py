"""Bad input and abuse: whatever a client sends, it gets a clear error or is cut off, and other
clients are not affected. The request reader is fuzzed with hypothesis (no server needed); the
rest runs against a gateway on loopback with simulated providers."""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import socket
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

import httpx
import pytest
import trio
from gateway_ops_support import ops_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from actors.config import Config, GatewayConfig, parse_config
from actors.validation import FieldError
from runtime.embed import open_runtime
from runtime.gateway import GatewayServer, open_gateway, openai_api
from runtime.gateway.errors import GatewayError, from_exception
from runtime.gateway.requests import ROUTING_HEADERS, routed
from runtime.gateway.streaming import EventStreamResponse

# --- fuzzing the reader ------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", "user", "assistant", "tool", "function", "text", "image_url", "auto"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)

TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
VALID_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": "What is the VAT rate on books?"},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    },
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    {"role": "assistant", "content": "Sure."},
]
OPTIONS: dict[str, Any] = {
    "stream": True,
    "max_tokens": 64,
    "max_completion_tokens": 64,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": ["\n"],
    "seed": 7,
    "tools": [TOOL],
    "tool_choice": "auto",
    "response_format": {"type": "json_object"},
    "stream_options": {"include_usage": True},
    "n": 1,
    "user": "u-1",
    "frequency_penalty": 0.1,
    "presence_penalty": 0.1,
    "parallel_tool_calls": False,
}


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    messages = draw(st.lists(st.sampled_from(VALID_MESSAGES), min_size=1, max_size=5))
    options = draw(st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.just(None), max_size=5))
    model = draw(st.sampled_from(["gpt-4o", "uptax/auto", "uptax/critical", "claude-sonnet"]))
    body = {"model": model, "messages": copy.deepcopy(messages)}
    body.update({key: copy.deepcopy(OPTIONS[key]) for key in options})
    return body


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


@st.composite
def mutated_bodies(draw: st.DrawFn) -> Any:
    """A valid body with a few places replaced by random JSON, deleted, or given unknown keys."""
    body: Any = draw(valid_bodies())
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(body)
        path = draw(st.sampled_from(paths))
        if not path:
            body = draw(JSON) if draw(st.integers(0, 9)) == 0 else body
            continue
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(JSON)
        else:
            parent.append(draw(JSON))
    return body


def read_and_route(body: Any) -> None:
    """The reading path of `/v1/chat/completions` up to the runtime."""
    if not isinstance(body, dict):
        raise GatewayError(400, "the body must be a JSON object")
    request = openai_api.read(body)
    routed(request, Headers({}), GatewayConfig(), has_limit=openai_api.has_limit(body))
    openai_api.wants_usage(body)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_bodies())
def test_any_body_is_read_or_refused_with_a_field_error(body: Any) -> None:
    """Never anything the gateway would answer with a 500: a bad body is a 400 naming why."""
    try:
        read_and_route(body)
    except (GatewayError, FieldError) as error:
        assert from_exception(error).status in (400, 404, 413)
        assert str(error)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(valid_bodies())
def test_valid_bodies_are_read(body: dict[str, Any]) -> None:
    """The fuzzer's starting points are sound, so the mutations above test the edges."""
    try:
        read_and_route(body)
    except FieldError as error:  # some combinations are refused on purpose
        assert error.field


# --- over HTTP ----------------------------------------------------------------------------------

ASK = [{"role": "user", "content": "What is the VAT rate on books?"}]


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayServer]:
    config = ops_config(max_messages=50, max_body_bytes=64 * 1024, body_timeout_s=2.0)
    async with open_gateway(config) as server:
        yield server


async def post(server: GatewayServer, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        return await http.post("/v1/chat/completions", **kwargs)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"model": 5, "messages": []}', "model"),
        (b'{"model": "gpt-4o", "messages": "hello"}', "messages"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]}', "messages[0]"),
        (b'{"model": "gpt-4o", "messages": [], "stream": "yes"}', "stream"),
        (
            b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], '
            b'"max_tokens": "lots"}',
            "max_tokens",
        ),
    ],
)
async def test_malformed_bodies_get_a_400_saying_why(
    gateway: GatewayServer, content: bytes, says: str
) -> None:
    response = await post(gateway, content=content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and says in error["message"]


async def test_thousands_of_messages_are_refused(gateway: GatewayServer) -> None:
    messages = [{"role": "user", "content": "hi"}] * 51
    response = await post(gateway, json={"model": "gpt-4o", "messages": messages})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"
    assert "51 messages; at most 50" in response.json()["error"]["message"]
    many = [{"role": "user", "content": "hi"}] * 3000
    async with open_gateway(ops_config()) as default:  # max_messages 2048 by default
        refused = await post(default, json={"model": "gpt-4o", "messages": many})
    assert refused.status_code == 400 and "at most 2048" in refused.text


async def test_oversized_bodies_are_refused_declared_or_not(gateway: GatewayServer) -> None:
    declared = await post(gateway, content=b"x" * (64 * 1024 + 1))
    assert declared.status_code == 413

    async def chunked() -> AsyncIterator[bytes]:  # no content-length: counted as it comes
        for _ in range(100):
            yield b"y" * 1024

    streamed = await post(gateway, content=chunked())
    assert streamed.status_code == 413
    assert "over 65536 bytes" in streamed.json()["error"]["message"]


async def raw_request(server: GatewayServer, head: bytes) -> trio.SocketStream:
    stream = await trio.open_tcp_stream(server.host, server.port)
    await stream.send_all(head)
    return stream


async def read_all(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_a_body_sent_a_byte_a_second_is_cut_off_and_others_are_served(
    gateway: GatewayServer,
) -> None:
    body = json.dumps({"model": "gpt-4o", "messages": ASK}).encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    slow = await raw_request(gateway, head)
    reply = b""
    async with trio.open_nursery() as nursery:

        async def trickle() -> None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                for byte in body:
                    await slow.send_all(bytes([byte]))
                    await trio.sleep(0.25)

        nursery.start_soon(trickle)
        started = trio.current_time()
        # Meanwhile another client is answered as usual.
        other = await post(gateway, json={"model": "gpt-4o", "messages": ASK})
        assert other.status_code == 200
        with trio.fail_after(30):
            reply = await read_all(slow)
        nursery.cancel_scope.cancel()
    assert reply.startswith(b"HTTP/1.1 408")
    assert b"did not arrive within 2.0 s" in reply
    assert trio.current_time() - started < 20
    await slow.aclose()


async def test_headers_sent_a_byte_a_second_are_cut_off(gateway: GatewayServer) -> None:
    """hypercorn closes a connection whose request has not started within its keep-alive
    timeout (5 s), however slowly its headers arrive."""
    stream = await raw_request(gateway, b"P")
    started = trio.current_time()
    with trio.fail_after(30):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            for byte in b"OST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n" * 10:
                await stream.send_all(bytes([byte]))
                await trio.sleep(0.25)
        assert await read_all(stream) == b""
    assert trio.current_time() - started < 20
    await stream.aclose()


def _bulk_config() -> Config:
    """`alpha` as in `ops_config`, and `bulk`, whose JSON-mode replies echo a prompt of any size
    (its context window is huge): an 8 MB prompt streams back as some 25 MB of events."""
    simulated = {"kind": "simulated", "latency_ms": 30, "error_rate": 0.0}
    return parse_config(
        {
            "providers": [
                {"name": "alpha", "models": ["gpt-4o"], **simulated},
                {"name": "bulk", "models": ["bulk-echo"], **simulated},
            ],
            "levels": [{"name": "primary", "providers": ["alpha", "bulk"]}],
            "models": {"bulk-echo": {"context_window": 100_000_000}},
            "supervision": {"shutdown_grace_s": 1.0},
            "gateway": {"max_body_bytes": 32 * 1024 * 1024, "write_timeout_s": 3.0},
        }
    )


async def _never_reading_stream(server: GatewayServer) -> trio.SocketStream:
    """A client that asks for a 25 MB stream and reads none of it (a 4 KB receive buffer)."""
    words = " ".join(f"{'x' * 100}{i}" for i in range(80_000))
    body = json.dumps(
        {
            "model": "bulk-echo",
            "stream": True,
            "response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": words}],
        }
    ).encode()
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect((server.host, server.port))
    reader = trio.SocketStream(sock)
    await reader.send_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    return reader


async def test_a_stream_reader_that_never_reads_is_held_back_then_cut_off() -> None:
    """hypercorn's `send` awaits the socket write itself (no queue in between), so a reader
    that never reads stops its own stream at the kernel's buffers: the gateway buffers nothing
    without bound. Others are served meanwhile, and after `write_timeout_s` with nothing taken
    the connection is dropped and the request ends (TCP_USER_TIMEOUT), so it cannot hold a
    bulkhead slot, or a shutdown, forever."""
    async with open_gateway(_bulk_config()) as server:
        reader = await _never_reading_stream(server)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            with trio.fail_after(30):
                await _until(lambda: server.rt.status().requests_in_flight == 1)
            for _ in range(5):
                with trio.fail_after(10):
                    other = await http.post(
                        "/v1/chat/completions", json={"model": "gpt-4o", "messages": ASK}
                    )
                assert other.status_code == 200
            assert server.rt.status().requests_in_flight == 1  # held back, not buffered
            with trio.fail_after(30):  # cut off without the client doing anything
                await _until(lambda: server.rt.status().requests_in_flight == 0)
        await reader.aclose()


async def test_a_never_reading_client_does_not_hold_up_a_shutdown() -> None:
    with trio.fail_after(60):
        async with open_gateway(_bulk_config()) as server:
            reader = await _never_reading_stream(server)
            with trio.fail_after(30):
                await _until(lambda: server.rt.status().requests_in_flight == 1)
    await reader.aclose()


async def _until(condition: Callable[[], bool]) -> None:
    """Poll `condition` (a runtime figure with no event to wait on)."""
    for _ in itertools.count():
        if condition():
            return
        await trio.sleep(0.1)


class _Blocked:
    """An ASGI `send` whose peer stops reading after `accept` messages."""

    def __init__(self, accept: int) -> None:
        self.accept = accept
        self.sent: list[MutableMapping[str, Any]] = []

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if len(self.sent) >= self.accept:
            await trio.sleep_forever()
        self.sent.append(message)


async def test_a_blocked_send_stops_the_stream_and_a_disconnect_ends_it() -> None:
    """The streamed response pulls the next event only when the last one has been sent."""
    left = trio.Event()

    async def receive() -> MutableMapping[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async with open_runtime(ops_config()) as rt:
        request = openai_api.read(
            {
                "model": "gpt-4o",
                "max_tokens": 500,
                "messages": [{"role": "user", "content": " ".join(["word"] * 400)}],
            }
        )
        send = _Blocked(accept=3)
        response = EventStreamResponse(
            rt, request, openai_api.OpenAIStream("chatcmpl-x", "gpt-4o", False), lambda a: {}
        )
        ended: list[EventStreamResponse] = []
        response.on_end = ended.append
        async with trio.open_nursery() as nursery:
            scope: MutableMapping[str, Any] = {"type": "http"}
            nursery.start_soon(response, scope, receive, send)
            await trio.sleep(2)
            assert len(send.sent) == 3  # headers and two events, then nothing more is made
            assert rt.status().requests_in_flight == 1
            left.set()
        assert response.disconnected and ended == [response]
        assert rt.status().requests_in_flight == 0


HEADER_VALUES = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=20
) | st.sampled_from(["nan", "inf", "-1", "1e400", "0", "low", "high", "critical", " 2 "])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.dictionaries(st.sampled_from(sorted(ROUTING_HEADERS)), HEADER_VALUES, max_size=4),
    valid_bodies(),
)
def test_any_routing_header_is_applied_or_refused_naming_it(
    headers: dict[str, str], body: dict[str, Any]
) -> None:
    try:
        request = openai_api.read(body)
    except FieldError:
        return
    try:
        routed(request, Headers(headers), GatewayConfig(), has_limit=openai_api.has_limit(body))
    except GatewayError as error:
        assert error.status == 400
        assert error.param in (*ROUTING_HEADERS, "messages")
