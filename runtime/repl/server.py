"""Serving the debug console from inside the runtime's trio run.

The console is a set of ordinary tasks next to the actors: a listener, and per client a reader, a
command runner and a writer. They only read snapshots and call steering methods, and the event
stream `watch` reads drops events rather than wait for a slow client, so a console never slows a
request. Whatever a client does (garbage, Ctrl-C, vanishing mid-`watch`) ends at most its session.

Access control is the file system's for the Unix socket (mode 0600, in a directory only the user
can open) and a token for TCP, which is served on loopback only.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import itertools
import os
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial

import structlog
import trio

from actors.errors import ConfigError
from actors.secrets import redact_text
from runtime.repl.commands import Console, ConsoleRuntime
from runtime.repl.protocol import (
    AUTH_PREFIX,
    INTERRUPT,
    MAX_LINE_BYTES,
    LineBuffer,
    LineTooLong,
    encode_bye,
    encode_end,
    encode_output,
)

_log = structlog.get_logger("uptax.repl")

#: A client that reads nothing for this long is dropped (its `watch` must not pin a task forever).
SEND_TIMEOUT_S = 30.0
#: A TCP client must authenticate this quickly.
AUTH_TIMEOUT_S = 10.0
#: Lines a client may send ahead of the answers (a pasted script); more waits.
INPUT_QUEUE = 64
#: Output blocks waiting for a slow client before the command producing them waits too.
OUTPUT_QUEUE = 64
LISTEN_BACKLOG = 16
MIN_TOKEN_LENGTH = 16

_client_numbers = itertools.count(1)


class ReplServer:
    """Where a console is being served, and how many clients are attached now."""

    def __init__(self, path: str | None, tcp_address: tuple[str, int] | None) -> None:
        self.path = path
        self.tcp_address = tcp_address
        self._clients = 0
        self._changed = trio.Event()

    @property
    def clients(self) -> int:
        return self._clients

    def _count_client(self, delta: int) -> None:
        self._clients += delta
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_clients(self, count: int) -> None:
        """Return once exactly `count` sessions are open (a client's goodbye is asynchronous)."""
        while self._clients != count:
            await self._changed.wait()

    def __repr__(self) -> str:
        return f"ReplServer(path={self.path!r}, tcp_address={self.tcp_address!r})"


@asynccontextmanager
async def open_repl_server(
    rt: ConsoleRuntime,
    path: str | None = None,
    *,
    tcp_port: int | None = None,
    token: str | None = None,
    tcp_host: str = "127.0.0.1",
) -> AsyncIterator[ReplServer]:
    """Serve the console while the block runs; with neither `path` nor `tcp_port`, serve nothing.

    Bad settings (a directory others can open, a non-loopback host, TCP without a token, a socket
    path another console is serving) raise `ConfigError` before anything is served. An exception
    from the block comes out as itself, not wrapped in an exception group.
    """
    if path is None and tcp_port is None:
        yield ReplServer(None, None)
        return
    listening = await _Listening.open(path, tcp_port=tcp_port, token=token, tcp_host=tcp_host)
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(listening.serve, rt)
            try:
                yield listening.server
            except BaseException as exc:
                # Re-raised below, once the console's tasks are gone: the block's own error (or
                # its cancellation) must not come out wrapped in this nursery's group.
                body_error = exc
            nursery.cancel_scope.cancel()
    finally:
        await listening.aclose()
    if body_error is not None:
        raise body_error


async def serve_repl(
    rt: ConsoleRuntime,
    path: str | None = None,
    *,
    tcp_port: int | None = None,
    token: str | None = None,
    tcp_host: str = "127.0.0.1",
    task_status: trio.TaskStatus[ReplServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the console until cancelled, for `nursery.start` (which returns the `ReplServer`).

    Settings are checked as in `open_repl_server`; the socket file is removed when serving stops.
    """
    if path is None and tcp_port is None:
        task_status.started(ReplServer(None, None))
        return
    listening = await _Listening.open(path, tcp_port=tcp_port, token=token, tcp_host=tcp_host)
    try:
        await listening.serve(rt, task_status=task_status)
    finally:
        await listening.aclose()


class _Listening:
    """The open listeners of one console, before and while they serve."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.path: str | None = None
        self.socket_identity: tuple[int, int] | None = None
        self.unix_listener: trio.SocketListener | None = None
        self.tcp_listeners: list[trio.SocketListener] = []
        self.server = ReplServer(None, None)

    @classmethod
    async def open(
        cls, path: str | None, *, tcp_port: int | None, token: str | None, tcp_host: str
    ) -> _Listening:
        if tcp_port is not None:
            tcp_host = _check_tcp(tcp_host, tcp_port, token)
        listening = cls(token)
        try:
            if path is not None:
                listening.path = _socket_path(path)
                listening.unix_listener, listening.socket_identity = await _open_unix_listener(
                    listening.path
                )
            if tcp_port is not None:
                listening.tcp_listeners = await trio.open_tcp_listeners(tcp_port, host=tcp_host)
        except BaseException:
            await listening.aclose()
            raise
        tcp_address = None
        if listening.tcp_listeners:
            sockname = listening.tcp_listeners[0].socket.getsockname()
            tcp_address = (str(sockname[0]), int(sockname[1]))
        listening.server = ReplServer(listening.path, tcp_address)
        _log.info("repl_listening", path=listening.path, tcp=_show_address(tcp_address))
        return listening

    async def serve(
        self, rt: ConsoleRuntime, *, task_status: trio.TaskStatus[ReplServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            if self.unix_listener is not None:
                handler = partial(_serve_client, rt, self.server, None)
                await nursery.start(trio.serve_listeners, handler, [self.unix_listener])
            if self.tcp_listeners:
                handler = partial(_serve_client, rt, self.server, self.token)
                await nursery.start(trio.serve_listeners, handler, self.tcp_listeners)
            task_status.started(self.server)

    async def aclose(self) -> None:
        """Close the listeners and remove the socket file (only ours); safe to call twice."""
        listeners = [*self.tcp_listeners, *([self.unix_listener] if self.unix_listener else [])]
        self.tcp_listeners, self.unix_listener = [], None
        with trio.CancelScope(shield=True):
            for listener in listeners:
                await listener.aclose()
        if self.path is not None and self.socket_identity is not None:
            _remove_socket(self.path, self.socket_identity)
            self.socket_identity = None
            _log.info("repl_closed", path=self.path)


def _show_address(address: tuple[str, int] | None) -> str | None:
    if address is None:
        return None
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_tcp(host: str, port: int, token: str | None) -> str:
    """TCP is for loopback only, and only with a token worth the name; returns the host to bind."""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ConfigError(
            f"repl tcp host {host!r} refused: the console serves TCP on loopback only "
            "(127.0.0.1 or ::1); to reach it remotely, tunnel the port over ssh"
        )
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError(f"repl tcp_port={port!r} must be an integer from 0 to 65535")
    if not token:
        raise ConfigError(
            "repl tcp refused without a token: pass token=... (e.g. secrets.token_urlsafe(32))"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"repl token too short: it needs at least {MIN_TOKEN_LENGTH} characters "
            "(e.g. secrets.token_urlsafe(32))"
        )
    return str(address)


def _check_private_directory(directory: str) -> None:
    """The socket's directory must be the user's alone: creating it so, or refusing."""
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        os.makedirs(directory, mode=0o700)
        os.chmod(directory, 0o700)
        _log.info("repl_directory_created", directory=directory)
        return
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"repl_socket: {directory} is not a directory")
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"repl_socket: directory {directory} belongs to uid {info.st_uid}, not to you "
            f"(uid {os.getuid()}); use a directory of your own with mode 0700"
        )
    if info.st_mode & 0o077:
        raise ConfigError(
            f"repl_socket: directory {directory} has mode {stat.S_IMODE(info.st_mode):04o}, so "
            f"others can open it; use a directory with mode 0700 (chmod 700 {directory})"
        )


def _socket_path(path: str) -> str:
    """The absolute socket path, once its directory has been checked (or made) private."""
    path = os.path.abspath(path)
    _check_private_directory(os.path.dirname(path))
    return path


async def _open_unix_listener(path: str) -> tuple[trio.SocketListener, tuple[int, int]]:
    await _clear_stale_socket(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        try:
            await sock.bind(path)
        except OSError as exc:
            raise ConfigError(f"repl_socket: cannot create {path} ({exc.strerror or exc})") from None
        # Not listening yet, so nobody can connect before the mode is right.
        os.chmod(path, 0o600)
        sock.listen(LISTEN_BACKLOG)
        info = os.stat(path)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock), (info.st_dev, info.st_ino)


async def _clear_stale_socket(path: str) -> None:
    """A socket left by a console that died goes; a live one, or any other file, is refused."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(f"repl_socket: {path} exists and is not a socket; not replacing it")
    try:
        stream = await trio.open_unix_socket(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ConfigError(f"repl_socket: {path} is unusable ({exc.strerror or exc})") from None
        os.unlink(path)
        _log.info("repl_stale_socket_removed", path=path)
        return
    await stream.aclose()
    raise ConfigError(f"repl_socket: {path} is in use by another running console")


def _remove_socket(path: str, identity: tuple[int, int]) -> None:
    """Remove our socket file, and only ours (a later console may have replaced it)."""
    try:
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) == identity:
            os.unlink(path)
    except OSError:
        pass


async def _serve_client(
    rt: ConsoleRuntime, server: ReplServer, token: str | None, stream: trio.SocketStream
) -> None:
    """One client's session; nothing it raises leaves this function (the runtime goes on)."""
    client = f"repl-{next(_client_numbers)}"
    server._count_client(+1)
    _log.info("repl_client_connected", client=client, clients=server.clients)
    try:
        async with stream:
            await _Session(rt, stream, client, token).run()
    except* Exception as group:
        _log.info(
            "repl_client_dropped",
            client=client,
            error=" ".join(f"{type(exc).__name__}:{exc}" for exc in group.exceptions),
        )
    finally:
        server._count_client(-1)
        _log.info("repl_client_disconnected", client=client, clients=server.clients)


class _ClientGone(Exception):
    """The client closed its connection, or stopped reading for too long."""


class _Session:
    """Reader, command runner and writer of one connection.

    The runner is the only task that runs commands; the reader forwards lines to it and turns an
    interrupt line into cancelling the runner's current command (at once, even while it waits on
    events). The writer is the only task that touches the socket's sending side, so a cancelled
    command can never leave half a line on the wire.
    """

    def __init__(
        self, rt: ConsoleRuntime, stream: trio.SocketStream, client: str, token: str | None
    ) -> None:
        self._stream = stream
        self._client = client
        self._token = token
        self._buffer = LineBuffer(MAX_LINE_BYTES)
        self._lines: list[str] = []
        self._out_send, self._out_receive = trio.open_memory_channel[bytes](OUTPUT_QUEUE)
        self._console = Console(rt, self._send_output, client=client)
        #: Lines received / finished so far, and the newest line an interrupt applies to.
        self._received = 0
        self._finished = 0
        self._interrupted_through = 0
        self._current: tuple[int, trio.CancelScope] | None = None
        self._reader_scope = trio.CancelScope()

    async def run(self) -> None:
        if self._token is not None and not await self._authenticate():
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_loop, nursery.cancel_scope)
            in_send, in_receive = trio.open_memory_channel[str | None](INPUT_QUEUE)
            nursery.start_soon(self._read_loop, in_send)
            async with self._out_send:
                await self._send_output(self._banner())
                await self._out_send.send(encode_end(self._console.prompt))
                await self._run_loop(in_receive)
            # The writer finishes what is queued and returns; the reader has nothing left to do.
            self._reader_scope.cancel()

    def _banner(self) -> list[str]:
        count = len(self._console.rt.actors())
        return [
            f"uptax debug console: {count} actors; 'help' lists the commands",
            "times are seconds since the runtime started",
        ]

    async def _authenticate(self) -> bool:
        assert self._token is not None
        line: str | None = None
        with trio.move_on_after(AUTH_TIMEOUT_S):
            line = await self._receive_line()
        expected = (AUTH_PREFIX + self._token).encode()
        given = (line or "").encode()
        if line is not None and hmac.compare_digest(given, expected):
            return True
        _log.warning("repl_auth_failed", client=self._client)
        with trio.move_on_after(AUTH_TIMEOUT_S):
            await self._stream.send_all(
                encode_output(["error: authentication failed"]) + encode_bye()
            )
        return False

    async def _receive_line(self) -> str | None:
        """The next line from the client; None when it closed its side (or vanished)."""
        while not self._lines:
            try:
                data = await self._stream.receive_some(4096)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            if not data:
                return None
            self._lines.extend(self._buffer.feed(data))
        return self._lines.pop(0)

    async def _read_loop(self, in_send: trio.MemorySendChannel[str | None]) -> None:
        with self._reader_scope:
            async with in_send:
                await self._forward_lines(in_send)

    async def _forward_lines(self, in_send: trio.MemorySendChannel[str | None]) -> None:
        while True:
            try:
                line = await self._receive_line()
            except LineTooLong:
                await in_send.send(None)
                return
            if line is None:
                self._input_closed()
                return
            if line == INTERRUPT:
                self._interrupt()
                continue
            self._received += 1
            await in_send.send(line)

    def _interrupt(self) -> None:
        if self._finished == self._received:
            self._console.discard_input()
            return
        self._interrupted_through = self._received
        if self._current is not None and self._current[0] <= self._interrupted_through:
            self._current[1].cancel()

    def _input_closed(self) -> None:
        self._console.input_closed = True
        if self._current is not None and self._console.streaming:
            self._current[1].cancel()

    async def _run_loop(self, in_receive: trio.MemoryReceiveChannel[str | None]) -> None:
        async with in_receive:
            seq = 0
            async for line in in_receive:
                if line is None:
                    await self._send_output([f"error: line longer than {MAX_LINE_BYTES} bytes"])
                    await self._out_send.send(encode_bye())
                    return
                seq += 1
                if seq <= self._interrupted_through:
                    # Ctrl-C came before the line even started: it never runs.
                    await self._send_output(self._console.interrupted(line))
                else:
                    with trio.CancelScope() as scope:
                        self._current = (seq, scope)
                        await self._console.run_line(line)
                    self._current = None
                    if scope.cancelled_caught:
                        await self._send_output(self._console.interrupted(line))
                self._finished = seq
                if self._console.closed:
                    await self._out_send.send(encode_bye())
                    return
                failed = self._console.take_failure()
                await self._out_send.send(encode_end(self._console.prompt, failed=failed))

    async def _send_output(self, lines: Sequence[str]) -> None:
        if lines:
            await self._out_send.send(encode_output([redact_text(line) for line in lines]))

    async def _write_loop(self, session_scope: trio.CancelScope) -> None:
        try:
            async with self._out_receive:
                async for data in self._out_receive:
                    with trio.move_on_after(SEND_TIMEOUT_S) as timeout:
                        await self._stream.send_all(data)
                    if timeout.cancelled_caught:
                        raise _ClientGone(f"no reads for {SEND_TIMEOUT_S:g}s")
        except (trio.BrokenResourceError, trio.ClosedResourceError, _ClientGone):
            # Nobody is listening any more: end the session, runner and reader included.
            session_scope.cancel()
