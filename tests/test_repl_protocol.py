"""The console's line protocol and plain-text formatting, without sockets."""

from __future__ import annotations

import pytest

from actors.messages import BreakerState
from runtime.kernel.events import Event
from runtime.repl.commands import (
    format_event,
    format_mapping,
    format_records,
    format_table,
    format_value,
    relative_times,
)
from runtime.repl.protocol import (
    BYE,
    Bye,
    End,
    LineBuffer,
    LineTooLong,
    Output,
    encode_bye,
    encode_end,
    encode_line,
    encode_output,
    parse_server_line,
)


def server_lines(data: bytes) -> list[Output | End | Bye]:
    return [parse_server_line(line) for line in LineBuffer().feed(data)]


def test_line_buffer_joins_chunks_whatever_the_boundaries() -> None:
    data = "actors\r\nshow openai\nprint('é…')\n".encode()
    for split in range(len(data) + 1):
        buffer = LineBuffer()
        lines = buffer.feed(data[:split]) + buffer.feed(data[split:])
        assert lines == ["actors", "show openai", "print('é…')"]
        assert buffer.pending == b""


def test_line_buffer_keeps_an_unfinished_line_and_bounds_length() -> None:
    buffer = LineBuffer(max_line_bytes=8)
    assert buffer.feed(b"12345") == []
    assert buffer.pending == b"12345"
    assert buffer.feed(b"678\n") == ["12345678"]
    with pytest.raises(LineTooLong):
        buffer.feed(b"123456789")
    with pytest.raises(LineTooLong):
        LineBuffer(max_line_bytes=8).feed(b"123456789\n")


def test_output_is_dot_stuffed_so_nothing_looks_like_an_end_line() -> None:
    texts = [".", BYE, ". uptax> ", "..", "plain", "", "a . b"]
    assert server_lines(encode_output(texts)) == [Output(text) for text in texts]
    assert server_lines(encode_output(["two\nlines"])) == [Output("two"), Output("lines")]


def test_end_line_carries_the_prompt_and_bye_ends_the_session() -> None:
    data = encode_output(["x"]) + encode_end(">>> ") + encode_end("... ") + encode_bye()
    assert server_lines(data) == [Output("x"), End(">>> "), End("... "), Bye()]


def test_a_client_line_is_one_line() -> None:
    assert encode_line("a\nb\rc") == b"a b c\n"


def test_table_aligns_numbers_right_and_text_left() -> None:
    lines = format_table(
        ["NAME", "RESTARTS", "LAST"],
        [["openai", 0, None], ["huggingface", 12, "0.5s"], ["x", 3.25, "1.0s"]],
    )
    assert lines == [
        "NAME         RESTARTS  LAST",
        "openai              0  -",
        "huggingface        12  0.5s",
        "x                3.25  1.0s",
    ]


def test_records_become_a_table() -> None:
    assert format_records([{"provider": "a", "samples": 2}, {"provider": "bb", "samples": 10}]) == [
        "PROVIDER  SAMPLES",
        "a               2",
        "bb             10",
    ]


def test_mapping_nests_and_aligns_each_block() -> None:
    data = {
        "provider": "openai",
        "status": BreakerState.FORCED_OPEN,
        "breaker": {"state": "open", "open_until": None},
        "models": ("gpt-4o", "gpt-4o-mini"),
        "recent": [{"outcome": "ok", "latency_ms": 12.5}, {"outcome": "timeout", "latency_ms": 30.0}],
        "empty": [],
        "flag": True,
        "reason": "",
    }
    assert format_mapping(data) == [
        "provider: openai",
        "status:   forced_open",
        "breaker:",
        "  state:      open",
        "  open_until: -",
        "models:   gpt-4o, gpt-4o-mini",
        "recent:",
        "  - outcome:    ok",
        "    latency_ms: 12.5",
        "  - outcome:    timeout",
        "    latency_ms: 30",
        "empty:    (none)",
        "flag:     true",
        'reason:   ""',
    ]


def test_values() -> None:
    assert format_value(0.0) == "0"
    assert format_value(0.000252) == "0.000252"
    assert format_value(812.34567) == "812.346"
    assert format_value(float("inf")) == "inf"
    assert format_value({"primary": 3, "secondary": 1}) == "primary=3 secondary=1"


def test_event_line_with_relative_time_and_quoted_values() -> None:
    event = Event(
        at=1000.5,
        event="breaker_opened",
        fields={"provider": "openai", "reason": "failure rate 0.6", "open_until": 1030.5},
    )
    assert format_event(event, origin=990.0) == (
        "t=10.500 breaker_opened provider=openai reason='failure rate 0.6' open_until=40.5"
    )


def test_relative_times_touch_only_timestamps() -> None:
    data = {
        "at": 105.0,
        "latency_ms": 105.0,
        "breaker": {"open_until": 110.0, "trips": 2},
        "attempts": [{"started_at": 101.0, "outcome": "ok"}],
        "last_check": None,
    }
    assert relative_times(data, 100.0) == {
        "at": 5.0,
        "latency_ms": 105.0,
        "breaker": {"open_until": 10.0, "trips": 2},
        "attempts": [{"started_at": 1.0, "outcome": "ok"}],
        "last_check": None,
    }
