"""SSE and NDJSON decoding: spec behaviour, and the same result whatever the chunk boundaries."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.adapters.sse import NDJSONDecoder, SSEDecoder, SSEEvent, StreamDecodeError

# A body exercising every rule: CRLF, CR and LF endings, a BOM, comments, multi-line data,
# named events, ids, retry, a field without a colon, and multibyte UTF-8 (2, 3 and 4 bytes).
SSE_BODY = (
    "\ufeff: keep-alive comment\r\n"
    "event: message_start\r\n"
    'data: {"text": "h\u00e9llo \u4e16\u754c \U0001f389"}\r\n'
    "id: 1\r\n"
    "\r\n"
    "data: first line\n"
    "data:second line\n"
    "data:  two spaces keep one\n"
    "retry: 1500\n"
    "\n"
    "event: ping\r"
    "data\r"
    "\r"
    "event: ignored without data\n"
    "\n"
    "unknown: field\n"
    "data: [DONE]\n"
    "\n"
).encode()

SSE_EXPECTED = [
    SSEEvent(data='{"text": "h\u00e9llo \u4e16\u754c \U0001f389"}', event="message_start", id="1"),
    SSEEvent(data="first line\nsecond line\n two spaces keep one", id="1", retry=1500),
    SSEEvent(data="", event="ping", id="1", retry=1500),
    SSEEvent(data="[DONE]", id="1", retry=1500),
]


def decode_sse(chunks: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


def split_at(body: bytes, *cuts: int) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(bounds)]


def test_sse_whole_body() -> None:
    assert decode_sse([SSE_BODY]) == SSE_EXPECTED


@pytest.mark.parametrize("cut", range(len(SSE_BODY) + 1))
def test_sse_split_at_every_byte(cut: int) -> None:
    assert decode_sse(split_at(SSE_BODY, cut)) == SSE_EXPECTED


def test_sse_one_byte_at_a_time() -> None:
    assert decode_sse([SSE_BODY[i : i + 1] for i in range(len(SSE_BODY))]) == SSE_EXPECTED


@settings(max_examples=300, derandomize=True)
@given(st.lists(st.integers(min_value=0, max_value=len(SSE_BODY)), max_size=12))
def test_sse_any_chunking(cuts: list[int]) -> None:
    assert decode_sse(split_at(SSE_BODY, *cuts)) == SSE_EXPECTED


def test_sse_crlf_split_between_cr_and_lf_is_one_line_ending() -> None:
    # Were "\r" and "\n" taken as two endings, the blank line would dispatch early.
    assert decode_sse([b"data: a\r", b"\ndata: b\r\n\r\n"]) == [SSEEvent(data="a\nb")]


def test_sse_accepts_text_chunks() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("data: x\n") == []
    assert decoder.feed("\n") == [SSEEvent(data="x")]


def test_sse_incomplete_trailing_event_is_discarded() -> None:
    # The spec: an event not terminated by a blank line before end of stream is not dispatched.
    assert decode_sse([b"data: complete\n\ndata: cut off"]) == [SSEEvent(data="complete")]


def test_sse_event_type_resets_after_dispatch_but_id_persists() -> None:
    events = decode_sse([b"event: a\nid: 7\ndata: 1\n\ndata: 2\n\n"])
    assert events == [SSEEvent(data="1", event="a", id="7"), SSEEvent(data="2", id="7")]


def test_sse_invalid_utf8_is_replaced_not_raised() -> None:
    assert decode_sse([b"data: \xff\n\n"]) == [SSEEvent(data="\ufffd")]


NDJSON_VALUES = [
    {"message": {"content": "h\u00e9llo"}, "done": False},
    {"message": {"content": " \u4e16\u754c \U0001f389"}, "done": False},
    {"done": True, "eval_count": 3},
]
NDJSON_BODY = (
    json.dumps(NDJSON_VALUES[0], ensure_ascii=False)
    + "\r\n\n"
    + json.dumps(NDJSON_VALUES[1], ensure_ascii=False)
    + "\n"
    + json.dumps(NDJSON_VALUES[2])
    + "\n"
).encode()


def decode_ndjson(chunks: list[bytes]) -> list[object]:
    decoder = NDJSONDecoder()
    values: list[object] = []
    for chunk in chunks:
        values.extend(decoder.feed(chunk))
    values.extend(decoder.close())
    return values


@pytest.mark.parametrize("cut", range(len(NDJSON_BODY) + 1))
def test_ndjson_split_at_every_byte(cut: int) -> None:
    assert decode_ndjson(split_at(NDJSON_BODY, cut)) == NDJSON_VALUES


def test_ndjson_one_byte_at_a_time() -> None:
    assert decode_ndjson([NDJSON_BODY[i : i + 1] for i in range(len(NDJSON_BODY))]) == NDJSON_VALUES


@settings(max_examples=300, derandomize=True)
@given(st.lists(st.integers(min_value=0, max_value=len(NDJSON_BODY)), max_size=12))
def test_ndjson_any_chunking(cuts: list[int]) -> None:
    assert decode_ndjson(split_at(NDJSON_BODY, *cuts)) == NDJSON_VALUES


def test_ndjson_values_are_returned_as_soon_as_their_line_ends() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": 1}\n{"b"') == [{"a": 1}]
    assert decoder.feed(b": 2}\n") == [{"b": 2}]


def test_ndjson_final_line_without_newline_is_parsed_at_close() -> None:
    assert decode_ndjson([b'{"a": 1}\n{"b": 2}']) == [{"a": 1}, {"b": 2}]


def test_ndjson_malformed_line_raises() -> None:
    decoder = NDJSONDecoder()
    with pytest.raises(StreamDecodeError, match="not JSON"):
        decoder.feed(b"{oops}\n")


def test_ndjson_values_before_a_malformed_line_come_first_then_the_error() -> None:
    # Same outcome as if the bad line had arrived in its own chunk.
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": 1}\n{oops}\n{"b": 2}\n') == [{"a": 1}]
    with pytest.raises(StreamDecodeError, match="not JSON"):
        decoder.feed(b"")
    with pytest.raises(StreamDecodeError):
        decoder.close()


def test_ndjson_truncated_final_line_raises_at_close() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": 1}\n{"b": ') == [{"a": 1}]
    with pytest.raises(StreamDecodeError):
        decoder.close()
