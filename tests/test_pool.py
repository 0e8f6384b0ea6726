"""The HTTP adapters' transport (`actors.adapters.pool`): a request's writes go out in one send,
and requests arriving together each get their own connection at the first try."""

from __future__ import annotations

import typing
from functools import partial

import httpcore
import httpx
import pytest
import trio
from adapter_support import KEYS, build, set_keys

from actors.adapters import pool
from actors.adapters.http import HTTPAdapter
from actors.adapters.pool import FLUSH_BYTES, PooledTransport, _CoalescingStream, _Pool
from actors.messages import Request
from runtime.testing import FakeProviderServer


class _Recorder(httpcore.AsyncNetworkStream):
    """A network stream that records what is written to it and answers reads with `reply`."""

    def __init__(self, reply: bytes = b"HTTP/1.1 200 OK\r\n\r\n", fail: bool = False) -> None:
        self.writes: list[bytes] = []
        self.reply = reply
        self.fail = fail

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if self.fail:
            raise httpcore.WriteError("the peer has gone")
        self.writes.append(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        reply, self.reply = self.reply, b""
        return reply

    async def aclose(self) -> None:
        pass

    def get_extra_info(self, info: str) -> typing.Any:
        return None


async def test_writes_are_held_until_the_response_is_read_then_sent_as_one() -> None:
    inner = _Recorder()
    stream = _CoalescingStream(inner)
    await stream.write(b"POST / HTTP/1.1\r\n\r\n")
    await stream.write(b"")
    await stream.write(b'{"a": 1}')
    assert inner.writes == []
    assert await stream.read(1024) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert inner.writes == [b'POST / HTTP/1.1\r\n\r\n{"a": 1}']
    await stream.read(1024)
    assert len(inner.writes) == 1  # nothing held, nothing sent again


async def test_a_large_body_is_sent_as_it_is_written() -> None:
    inner = _Recorder()
    stream = _CoalescingStream(inner)
    await stream.write(b"head")
    await stream.write(b"x" * FLUSH_BYTES)
    assert inner.writes == [b"head" + b"x" * FLUSH_BYTES]
    await stream.write(b"tail")
    await stream.read(1024)
    assert inner.writes[1:] == [b"tail"]


async def test_a_failed_write_is_left_for_the_read_to_find() -> None:
    """As httpcore does: a server that closed early may still have answered."""
    inner = _Recorder(reply=b"HTTP/1.1 413 Too Large\r\n\r\n", fail=True)
    stream = _CoalescingStream(inner)
    await stream.write(b"a big request")
    assert await stream.read(1024) == b"HTTP/1.1 413 Too Large\r\n\r\n"


@pytest.fixture
def assignments(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pool's passes over its connections (one per request added or released, and
    one more per retry of a request that lost its connection to another)."""
    passes: list[int] = []
    original = _Pool._assign_requests_to_connections

    def counting(self: _Pool) -> list[httpcore.AsyncConnectionInterface]:
        passes.append(1)
        return original(self)

    monkeypatch.setattr(pool._Pool, "_assign_requests_to_connections", counting)
    return passes


@pytest.mark.parametrize("in_flight", [3, 64])
async def test_requests_arriving_together_each_get_a_connection_at_the_first_try(
    in_flight: int,
    fake_providers: FakeProviderServer,
    monkeypatch: pytest.MonkeyPatch,
    assignments: list[int],
) -> None:
    """httpcore's own pool gave an idle connection to every request arriving while it was
    idle; all but one then went round again (about ten times each at concurrency 8)."""
    set_keys(monkeypatch)
    fake_providers.expect_key("openai", KEYS["openai"][1])
    adapter = build(
        "openai",
        base_url=fake_providers.url_for("openai"),
        model="gpt-4o-mini",
        max_in_flight=in_flight,
    )
    rounds, clients = 4, 8
    await _complete_in_rounds(adapter, rounds, clients)
    calls = rounds * clients
    # One pass when a request arrives, one when its response is closed: no retries.
    assert len(assignments) == 2 * calls
    assert fake_providers.connections_accepted <= min(in_flight, clients)


async def test_a_connection_the_server_closed_while_idle_is_not_handed_out() -> None:
    """Checked when handed out, not only in the periodic sweep: the request after a server
    closed its idle connection goes out on a new one instead of failing."""
    reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    accepted: list[int] = []
    closed = trio.Event()

    async def serve_one_request(stream: trio.SocketStream) -> None:
        accepted.append(1)
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive_some(65536)
        await stream.send_all(reply)
        await stream.aclose()  # keep-alive promised, and broken
        closed.set()

    async with trio.open_nursery() as nursery:
        serve = partial(trio.serve_tcp, serve_one_request, 0, host="127.0.0.1")
        (listener,) = await nursery.start(serve)
        port = listener.socket.getsockname()[1]
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        async with httpx.AsyncClient(transport=PooledTransport(limits)) as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            await closed.wait()
            await trio.sleep(0.05)  # the FIN crosses loopback
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
        nursery.cancel_scope.cancel()
    assert len(accepted) == 2


async def test_a_request_finds_an_idle_connection_without_walking_past_the_busy_ones(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's search starts at the connection handed out longest ago: with 32 requests in
    flight on 32 connections, each new one looks at about one connection, not at all 32 (which
    made a request's cost grow with the concurrency)."""
    set_keys(monkeypatch)
    fake_providers.expect_key("openai", KEYS["openai"][1])
    adapter = build(
        "openai", base_url=fake_providers.url_for("openai"), model="gpt-4o-mini", max_in_flight=32
    )
    looked_at: list[str] = []
    for name in ("is_idle", "is_closed", "is_available"):
        monkeypatch.setattr(httpcore.AsyncHTTPConnection, name, _counting(name, looked_at))
    rounds, clients = 8, 32
    await _complete_in_rounds(adapter, rounds, clients)
    assert fake_providers.connections_accepted <= clients
    # httpcore's pool (and this one before) looked at every connection twice a request.
    assert len(looked_at) < 4 * rounds * clients


def _counting(name: str, calls: list[str]) -> typing.Callable[[typing.Any], bool]:
    original = getattr(httpcore.AsyncHTTPConnection, name)

    def counting(self: httpcore.AsyncHTTPConnection) -> bool:
        calls.append(name)
        return bool(original(self))

    return counting


async def _complete_in_rounds(adapter: HTTPAdapter, rounds: int, clients: int) -> None:
    """`clients` tasks each sending `rounds` requests one after another; then close the adapter."""
    request = Request("hello", max_tokens=8)

    async def client() -> None:
        for _ in range(rounds):
            await adapter.complete(request, "gpt-4o-mini")

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
    await adapter.aclose()
