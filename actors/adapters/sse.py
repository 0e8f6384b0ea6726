"""Incremental decoders for the two streaming framings providers use: SSE and NDJSON.

Network reads split a stream wherever they like: inside a UTF-8 character, between the ``\\r`` and
``\\n`` of a line ending, in the middle of a JSON object. Both decoders keep exactly the state needed
to be correct whatever the chunk boundaries, so a parse never depends on how the bytes arrived.

`SSEDecoder` follows the WHATWG "event stream interpretation" rules (field parsing, multi-line
data, comments, ``\\r``/``\\n``/``\\r\\n`` line endings, a leading BOM, an incomplete trailing event
discarded at end of stream). `NDJSONDecoder` splits on newlines and parses each line as JSON.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import attrs

__all__ = ["NDJSONDecoder", "SSEDecoder", "SSEEvent", "StreamDecodeError"]


class StreamDecodeError(ValueError):
    """A streamed line or event could not be decoded (not JSON, not UTF-8 where it must be)."""


@attrs.frozen
class SSEEvent:
    """One dispatched server-sent event."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Turns chunks of an SSE body, split anywhere, into `SSEEvent`s.

    `feed` accepts bytes (decoded as UTF-8 incrementally, so a character split across chunks is
    reassembled) or already-decoded text. `close` ends the stream: an event not yet terminated by a
    blank line is discarded, as the spec requires.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._at_start = True
        #: The previous chunk ended in "\r": a "\n" opening the next one belongs to that line end.
        self._skip_lf = False
        self._event_type = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    def feed(self, chunk: bytes | str) -> list[SSEEvent]:
        text = self._utf8.decode(chunk) if isinstance(chunk, bytes) else chunk
        return self._feed_text(text)

    def close(self) -> list[SSEEvent]:
        """End of stream. Returns events completed by flushing the decoder (normally none)."""
        events = self._feed_text(self._utf8.decode(b"", final=True))
        self._buffer = ""
        self._event_type = ""
        self._data = []
        return events

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        buffer = self._buffer + text
        events: list[SSEEvent] = []
        start = 0
        length = len(buffer)
        while True:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, next_start = lf, lf + 1
            elif cr + 1 < length:
                end = cr
                next_start = cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            else:
                # "\r" is the last character we have: it ends a line, and a "\n" arriving next
                # is the second half of the same line ending.
                end, next_start = cr, cr + 1
                self._skip_lf = True
            event = self._process_line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = next_start
        self._buffer = buffer[start:]
        return events

    def _process_line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        # Any other field name is ignored, as the spec says.
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event_type = self._data, self._event_type
        self._data = []
        self._event_type = ""
        if not data:
            return None
        return SSEEvent(
            data="\n".join(data),
            event=event_type or "message",
            id=self._last_id,
            retry=self._retry,
        )


class NDJSONDecoder:
    """Turns chunks of a newline-delimited JSON body, split anywhere, into parsed values.

    Splitting happens on bytes: ``\\n`` never occurs inside a UTF-8 multibyte sequence, so a line is
    only decoded once it is whole. Blank lines are skipped; a line that is not JSON raises
    `StreamDecodeError`. `close` parses a final line that lacks its newline.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._error: StreamDecodeError | None = None

    def feed(self, chunk: bytes | str) -> list[Any]:
        """Values whose lines are now complete.

        A bad line raises `StreamDecodeError`; when good lines precede it in the same chunk, their
        values are returned first and the error is raised by the next call, so what a caller
        receives never depends on where the chunk boundaries fell.
        """
        if self._error is not None:
            raise self._error
        self._buffer += chunk.encode("utf-8") if isinstance(chunk, str) else chunk
        values: list[Any] = []
        while (newline := self._buffer.find(b"\n")) != -1:
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            try:
                value = _parse_line(line)
            except StreamDecodeError as exc:
                if not values:
                    raise
                self._error = exc
                break
            if value is not _BLANK:
                values.append(value)
        return values

    def close(self) -> list[Any]:
        if self._error is not None:
            raise self._error
        line = bytes(self._buffer)
        self._buffer.clear()
        value = _parse_line(line)
        return [] if value is _BLANK else [value]


_BLANK = object()


def _parse_line(line: bytes) -> Any:
    line = line.strip()
    if not line:
        return _BLANK
    try:
        return json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        preview = line[:80].decode("utf-8", errors="replace")
        raise StreamDecodeError(
            f"line is not JSON ({exc.__class__.__name__}): {preview!r}"
        ) from None
