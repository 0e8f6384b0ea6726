"""A test client for the debug console: speaks its line protocol over a real socket."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import trio

import runtime
from runtime.demo import default_config_path
from runtime.embed import Runtime, open_runtime
from runtime.repl.protocol import (
    INTERRUPT,
    Bye,
    End,
    LineBuffer,
    Output,
    ServerLine,
    encode_line,
    parse_server_line,
)

#: Every wait in these tests is on a real reply; this only turns a bug into a failure, not a hang.
REPLY_TIMEOUT_S = 30.0


@attrs.frozen
class Reply:
    lines: list[str]
    #: The prompt the server asks for next; None when it said bye.
    prompt: str | None
    #: Whether the server said the line failed.
    failed: bool = False


class ConsoleClient:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buffer = LineBuffer()
        self._lines: list[str] = []
        self.closed_by_server = False

    @classmethod
    async def connect(cls, path: str, *, greet: bool = True) -> ConsoleClient:
        client = cls(await trio.open_unix_socket(path))
        if greet:
            await client.read_reply()
        return client

    @classmethod
    async def connect_tcp(cls, host: str, port: int) -> ConsoleClient:
        return cls(await trio.open_tcp_stream(host, port))

    async def send(self, line: str) -> None:
        await self.stream.send_all(encode_line(line))

    async def interrupt(self) -> None:
        await self.stream.send_all(encode_line(INTERRUPT))

    async def read_server_line(self) -> ServerLine | None:
        """The next line from the server, or None once it closed the connection."""
        with trio.fail_after(REPLY_TIMEOUT_S):
            while not self._lines:
                data = await self.stream.receive_some(65536)
                if not data:
                    self.closed_by_server = True
                    return None
                self._lines.extend(self._buffer.feed(data))
        return parse_server_line(self._lines.pop(0))

    async def read_output_line(self) -> str:
        """One output line of a block still running (e.g. one `watch` event)."""
        line = await self.read_server_line()
        assert isinstance(line, Output), f"expected an output line, got {line!r}"
        return line.text

    async def read_reply(self) -> Reply:
        lines: list[str] = []
        while True:
            line = await self.read_server_line()
            if line is None:
                raise AssertionError(f"connection closed mid-reply after {lines!r}")
            if isinstance(line, Output):
                lines.append(line.text)
            elif isinstance(line, End):
                return Reply(lines, line.prompt, line.failed)
            elif isinstance(line, Bye):
                return Reply(lines, None)

    async def command(self, line: str) -> list[str]:
        await self.send(line)
        return (await self.read_reply()).lines

    async def aclose(self) -> None:
        await self.stream.aclose()


@attrs.frozen
class Served:
    """A runtime on the demo config, serving its console on `path` (`repl_socket=`)."""

    rt: Runtime
    path: str


@contextlib.asynccontextmanager
async def open_served(tmp_path: Path) -> AsyncIterator[Served]:
    path = str(tmp_path / "repl" / "console.sock")
    async with open_runtime(runtime.load_config(default_config_path()), repl_socket=path) as rt:
        yield Served(rt, path)


@contextlib.asynccontextmanager
async def open_console(path: str) -> AsyncIterator[ConsoleClient]:
    """A client connected to the console at `path`, closed on the way out."""
    console = await ConsoleClient.connect(path)
    try:
        yield console
    finally:
        await console.aclose()
