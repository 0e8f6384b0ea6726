"""The HTTP adapters' transport: httpx's own, with a connection pool that holds up under
concurrency and one socket write per request.

httpcore's pool (1.0) hands an idle connection to every request that arrives while it is still
idle, before the first of them has started on it: all but one then fail with
`ConnectionNotAvailable` and go round again, so at concurrency 8 a request went round about ten
times, each time scanning the whole pool (and asking the kernel whether each idle socket has
been closed by the server, one poll per socket). `_Pool` hands a connection to one request at a
time, checks the one it hands out, and sweeps the rest at most once a second; it looks for an
idle connection from the one handed out longest ago, so it seldom walks past busy ones. And httpcore
writes a request's head and body in two socket sends; on loopback each send costs as much as
the kernel's whole receive path, so `_CoalescingStream` holds a request's writes until the
response is read, and sends them as one.

HTTP/1.1 only, which is what the adapters speak; httpx's `Client` keeps doing everything else
(URLs, headers, auth, timeouts, redirects, proxies from the environment).
"""

from __future__ import annotations

import contextlib
import ssl
import time
import typing

import httpcore
import httpx

if typing.TYPE_CHECKING:
    from httpcore._async.connection_pool import AsyncPoolRequest

__all__ = ["FLUSH_BYTES", "SWEEP_INTERVAL_S", "PooledTransport"]

#: A request body bigger than this is sent as it is written, not held in memory.
FLUSH_BYTES = 64 * 1024
#: How often every idle connection is checked for its keep-alive expiry or a close by the server
#: (the connection handed to a request is always checked first).
SWEEP_INTERVAL_S = 1.0


class PooledTransport(httpx.AsyncHTTPTransport):
    """httpx's HTTP transport (its request and response handling as is) over `_Pool`."""

    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        # Not `super().__init__()`: its only state is the pool, made here instead.
        self._pool = _Pool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CoalescingBackend(httpcore.TrioBackend()),
        )


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's pool, but a connection is handed to one request at a time (see the module
    doc), and counting the pool is not quadratic in its size."""

    _next_sweep = 0.0

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL_S
            self._sweep(closing)
        elif len(self._connections) > self._max_keepalive_connections:
            self._close_surplus_idle(closing)
        taken: set[int] = set()
        queued: list[AsyncPoolRequest] = []
        for pool_request in self._requests:  # `is_queued()`, inlined: this runs per request
            if pool_request.connection is None:
                queued.append(pool_request)
            else:
                taken.add(id(pool_request.connection))
        for pool_request in queued:
            given = self._connection_for(pool_request.request.url.origin, taken, closing)
            if given is None:
                break  # no room: the rest wait until a connection is released
            taken.add(id(given))
            pool_request.assign_to_connection(given)
        return closing

    def _sweep(self, closing: list[httpcore.AsyncConnectionInterface]) -> None:
        """Drop the closed connections; close the expired (idle too long, or closed by the
        server) and the idle ones over the keep-alive limit."""
        for connection in list(self._connections):
            if connection.is_closed():
                self._connections.remove(connection)
            elif connection.has_expired():
                self._connections.remove(connection)
                closing.append(connection)
        self._close_surplus_idle(closing)

    def _close_surplus_idle(self, closing: list[httpcore.AsyncConnectionInterface]) -> None:
        for connection in list(self._connections):
            if len(self._connections) <= self._max_keepalive_connections:
                return
            if connection.is_idle():
                self._connections.remove(connection)
                closing.append(connection)

    def _connection_for(
        self,
        origin: httpcore.Origin,
        taken: set[int],
        closing: list[httpcore.AsyncConnectionInterface],
    ) -> httpcore.AsyncConnectionInterface | None:
        """An idle connection to `origin` no other request holds (closing the expired ones met on
        the way), else a new one when the pool has room (closing a closed or idle connection
        to make it), else None.

        A connection handed out moves to the end of the pool: the one at its head is then the
        one handed out longest ago, the likeliest to be idle again, so the search usually ends
        at the first connection, not after every busy one.
        """
        connections = self._connections
        for connection in connections:
            if (
                id(connection) not in taken
                and connection.can_handle_request(origin)
                and connection.is_available()
            ):
                connections.remove(connection)
                if not connection.has_expired():
                    connections.append(connection)
                    return connection
                closing.append(connection)
                return self._connection_for(origin, taken, closing)
        if len(connections) >= self._max_connections:
            spare = next(
                (c for c in connections if id(c) not in taken and (c.is_closed() or c.is_idle())),
                None,
            )
            if spare is None:
                return None
            connections.remove(spare)
            if not spare.is_closed():
                closing.append(spare)
        connection = self.create_connection(origin)
        connections.append(connection)
        return connection


class _CoalescingBackend(httpcore.AsyncNetworkBackend):
    """`backend`, its streams wrapped in `_CoalescingStream`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _CoalescingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _CoalescingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _CoalescingStream(httpcore.AsyncNetworkStream):
    """Writes are held until the next read (or `FLUSH_BYTES`), then sent together: a request's
    head and body go out in one send.

    A failed write of held bytes is left for the read to find, as httpcore does with a failed
    write (a server may close early and still have answered).
    """

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._write_timeout: float | None = None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        self._held.append(buffer)
        self._held_bytes += len(buffer)
        self._write_timeout = timeout
        if self._held_bytes >= FLUSH_BYTES:
            await self._flush()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        if self._held:
            with contextlib.suppress(httpcore.WriteError):
                await self._flush()
        return await self._stream.read(max_bytes, timeout)

    async def _flush(self) -> None:
        data = b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        await self._stream.write(data, self._write_timeout)

    async def aclose(self) -> None:
        self._held.clear()
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        if self._held:
            await self._flush()
        stream = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _CoalescingStream(stream)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)
