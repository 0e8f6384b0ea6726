"""The console's wire format: UTF-8 lines, one command in, a block of output lines back.

Client to server, one line each:
  - a command (or, in eval mode, a line of Python);
  - `auth TOKEN` as the very first line on a TCP connection;
  - the interrupt line `INTERRUPT` (the ETX character, what Ctrl-C types): it stops the command
    still running or waiting to run (`watch`, a long `await` in eval). It never gets an answer of
    its own; sent while nothing runs, it discards a half-typed multi-line eval statement.

Server to client, after the greeting and after every line the client sent:
  - output lines, dot-stuffed: a line that starts with "." is sent with one more "." in front;
  - an end line: ". " followed by the prompt to show next (`uptax> `, `>>> `, `... `), or ".! "
    followed by the prompt when the line failed (an unknown command, bad arguments, a refused
    steering call, an exception in eval), so a scripted client can exit non-zero;
  - or the bye line `.bye` when the server ends the session (after `quit`).

Dot-stuffing (as in SMTP) lets any text through, a traceback or a printed ".", without ever being
mistaken for an end line. Both sides split lines with `LineBuffer`, so neither needs trio.
"""

from __future__ import annotations

import attrs

ENCODING = "utf-8"
#: Longer lines end the connection: neither side needs them, and a bound keeps memory bounded.
MAX_LINE_BYTES = 64 * 1024

INTERRUPT = "\x03"
AUTH_PREFIX = "auth "
END_PREFIX = ". "
FAILED_END_PREFIX = ".! "
BYE = ".bye"

COMMAND_PROMPT = "uptax> "
EVAL_PROMPT = ">>> "
CONTINUATION_PROMPT = "... "


class LineTooLong(ValueError):
    """The peer sent more than `MAX_LINE_BYTES` without a newline."""


class LineBuffer:
    """Splits a byte stream into text lines, whatever the chunk boundaries (sans-IO)."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._pending = bytearray()
        self._max = max_line_bytes

    def feed(self, data: bytes | bytearray) -> list[str]:
        """Add received bytes; return the lines they completed, without line endings."""
        self._pending += data
        lines: list[str] = []
        while True:
            end = self._pending.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._pending[:end])
            del self._pending[: end + 1]
            if len(raw) > self._max:
                raise LineTooLong(f"line longer than {self._max} bytes")
            lines.append(raw.decode(ENCODING, errors="replace").removesuffix("\r"))
        if len(self._pending) > self._max:
            raise LineTooLong(f"line longer than {self._max} bytes")
        return lines

    @property
    def pending(self) -> bytes:
        """Bytes received after the last complete line (a line cut off by end of input)."""
        return bytes(self._pending)


def encode_line(text: str) -> bytes:
    """One line as the client sends it (newlines inside `text` would split it, so they go)."""
    return (text.replace("\r", " ").replace("\n", " ") + "\n").encode(ENCODING)


def encode_output(lines: list[str]) -> bytes:
    """Output lines, dot-stuffed; embedded newlines become separate lines."""
    parts: list[str] = []
    for text in lines:
        for line in text.split("\n"):
            line = line.removesuffix("\r")
            parts.append("." + line if line.startswith(".") else line)
    return "".join(part + "\n" for part in parts).encode(ENCODING)


def encode_end(prompt: str, *, failed: bool = False) -> bytes:
    return ((FAILED_END_PREFIX if failed else END_PREFIX) + prompt + "\n").encode(ENCODING)


def encode_bye() -> bytes:
    return (BYE + "\n").encode(ENCODING)


@attrs.frozen
class Output:
    text: str


@attrs.frozen
class End:
    prompt: str
    #: Whether the line this ends failed.
    failed: bool = False


@attrs.frozen
class Bye:
    pass


ServerLine = Output | End | Bye


def parse_server_line(line: str) -> ServerLine:
    """What one line from the server means to a client."""
    if line.startswith(".."):
        return Output(line[1:])
    if line == BYE:
        return Bye()
    if line.startswith(FAILED_END_PREFIX):
        return End(line[len(FAILED_END_PREFIX) :], failed=True)
    if line == "." or line.startswith(END_PREFIX):
        return End(line[len(END_PREFIX) :])
    return Output(line)
