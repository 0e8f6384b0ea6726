"""Failure classification: every status class, Retry-After forms, quota headers, transport errors,
and each adapter turning those failures into the right `ProviderError` for complete and stream."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import trio
from adapter_support import KEYS, PROTOCOL_KINDS, build, ok_reply, set_keys, stream_body

from actors.adapters.http import (
    classify_status,
    classify_transport_error,
    error_detail,
    parse_retry_after,
    quota_remaining,
)
from actors.errors import FailureKind, ProviderError
from actors.messages import Request, StreamDone, StreamEvent

K = FailureKind


def openai_error(
    message: str, code: str | None = None, type_: str = "invalid_request_error"
) -> str:
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def anthropic_error(type_: str, message: str) -> str:
    return json.dumps({"type": "error", "error": {"type": type_, "message": message}})


def gemini_error(code: int, status: str, message: str, **extra: Any) -> str:
    return json.dumps({"error": {"code": code, "message": message, "status": status, **extra}})


# (status, body, expected kind) — real providers' wording where the wording decides.
STATUS_MATRIX: list[tuple[int, str, FailureKind]] = [
    (
        429,
        openai_error("Rate limit reached for gpt-4o", "rate_limit_exceeded", "requests"),
        K.RATE_LIMITED,
    ),
    (500, openai_error("The server had an error", None, "server_error"), K.SERVER_ERROR),
    (502, "<html>Bad Gateway</html>", K.SERVER_ERROR),
    (503, gemini_error(503, "UNAVAILABLE", "The model is overloaded."), K.SERVER_ERROR),
    (504, "", K.SERVER_ERROR),
    (529, anthropic_error("overloaded_error", "Overloaded"), K.SERVER_ERROR),
    (501, "", K.SERVER_ERROR),
    (401, anthropic_error("authentication_error", "invalid x-api-key"), K.AUTH),
    (403, openai_error("You are not allowed to sample from this model"), K.AUTH),
    (
        400,
        gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
        K.AUTH,
    ),
    (
        400,
        openai_error(
            "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
            "context_length_exceeded",
        ),
        K.CONTEXT_TOO_LONG,
    ),
    (
        400,
        anthropic_error(
            "invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum"
        ),
        K.CONTEXT_TOO_LONG,
    ),
    (
        400,
        gemini_error(
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576).",
        ),
        K.CONTEXT_TOO_LONG,
    ),
    (
        400,
        json.dumps(
            {
                "object": "error",
                "message": "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length",
                "type": "invalid_request_error",
            }
        ),
        K.CONTEXT_TOO_LONG,
    ),
    (400, json.dumps({"error": "the input length exceeds the context length"}), K.CONTEXT_TOO_LONG),
    (
        422,
        json.dumps(
            {
                "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 5000"
            }
        ),
        K.CONTEXT_TOO_LONG,
    ),
    (
        400,
        openai_error("Invalid value for 'temperature': must be <= 2", "invalid_value"),
        K.CLIENT_ERROR,
    ),
    (404, json.dumps({"error": 'model "llama9" not found, try pulling it first'}), K.CLIENT_ERROR),
    (422, json.dumps({"detail": "field required"}), K.CLIENT_ERROR),
    (
        413,
        anthropic_error(
            "request_too_large", "Request exceeds the maximum allowed number of bytes."
        ),
        K.CLIENT_ERROR,
    ),
    (408, "", K.TIMEOUT),
    (302, "", K.MALFORMED),
]


@pytest.mark.parametrize(("status", "body", "kind"), STATUS_MATRIX)
def test_status_matrix(status: int, body: str, kind: FailureKind) -> None:
    error = classify_status("prov", status, {}, body, key_env="OPENAI_API_KEY")
    assert error.kind is kind
    assert error.status == status
    assert error.message.startswith("prov: ")


def test_client_error_carries_the_providers_message() -> None:
    error = classify_status(
        "prov", 400, {}, openai_error("Invalid value for 'temperature'", "invalid_value")
    )
    assert error.kind is K.CLIENT_ERROR
    assert "Invalid value for 'temperature'" in error.message
    assert "invalid_value" in error.message
    assert not error.counts_against_breaker


def test_server_errors_count_against_the_breaker_and_client_errors_do_not() -> None:
    assert classify_status("p", 503, {}, "").counts_against_breaker
    assert not classify_status("p", 429, {}, "").counts_against_breaker
    assert not classify_status(
        "p", 400, {}, openai_error("x", "context_length_exceeded")
    ).counts_against_breaker


def test_auth_message_names_provider_and_variable_but_never_the_key() -> None:
    key = KEYS["openai"][1]
    body = openai_error(f"Incorrect API key provided: {key}.", "invalid_api_key")
    error = classify_status("my-openai", 401, {}, body, key_env="OPENAI_API_KEY")
    assert error.kind is K.AUTH
    assert "my-openai" in error.message
    assert "OPENAI_API_KEY" in error.message
    assert key not in error.message
    assert key not in repr(error)
    assert key[:12] not in str(error)


def test_error_detail_redacts_keys_in_any_provider_message() -> None:
    key = KEYS["gemini"][1]
    assert key not in error_detail(gemini_error(400, "INVALID_ARGUMENT", f"bad thing near {key}"))


def test_error_detail_is_bounded() -> None:
    assert len(error_detail("x" * 10_000)) <= 300


# -- Retry-After --------------------------------------------------------------------------------

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "0"}, 0.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "Fri, 02 Jan 2026 03:04:35 GMT"}, 30.0),
        ({"retry-after": "Fri, 02 Jan 2026 03:00:00 GMT"}, 0.0),  # already past
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # ms is the more precise
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "inf"}, None),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_retry_after_date_is_measured_against_the_servers_date_header() -> None:
    headers = {
        "retry-after": "Fri, 02 Jan 2026 03:05:05 GMT",
        "date": "Fri, 02 Jan 2026 03:04:05 GMT",
    }
    assert parse_retry_after(headers) == 60.0


def test_rate_limited_error_carries_retry_after() -> None:
    error = classify_status(
        "p", 429, {"retry-after": "12"}, openai_error("slow down", "rate_limit_exceeded")
    )
    assert error.kind is K.RATE_LIMITED
    assert error.retry_after_s == 12.0
    assert "12s" in error.message


def test_gemini_retry_delay_in_body_is_used_without_header() -> None:
    body = gemini_error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota.",
        details=[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}],
    )
    error = classify_status("p", 429, {}, body)
    assert error.kind is K.RATE_LIMITED
    assert error.retry_after_s == 37.0


@pytest.mark.parametrize(
    "body", ['{"error": "rate limit exceeded"}', '{"error": null}', "[]", '["x"]', "not json"]
)
def test_429_without_retry_after_and_a_non_gemini_body_is_still_classified(body: str) -> None:
    # Ollama's errors are plain strings: looking for Gemini's RetryInfo must not trip on them.
    error = classify_status("p", 429, {}, body)
    assert error.kind is K.RATE_LIMITED
    assert error.retry_after_s is None


def test_overloaded_server_error_keeps_its_retry_after() -> None:
    error = classify_status(
        "p", 529, {"retry-after": "3"}, anthropic_error("overloaded_error", "Overloaded")
    )
    assert (error.kind, error.retry_after_s) == (K.SERVER_ERROR, 3.0)


# -- quota headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-ratelimit-remaining-requests": "50", "x-ratelimit-limit-requests": "100"}, 0.5),
        (
            {
                "x-ratelimit-remaining-requests": "90",
                "x-ratelimit-limit-requests": "100",
                "x-ratelimit-remaining-tokens": "1000",
                "x-ratelimit-limit-tokens": "10000",
            },
            0.1,  # the scarcest quota decides
        ),
        (
            {
                "anthropic-ratelimit-requests-remaining": "3",
                "anthropic-ratelimit-requests-limit": "4",
            },
            0.75,
        ),
        (
            {
                "anthropic-ratelimit-tokens-remaining": "0",
                "anthropic-ratelimit-tokens-limit": "80000",
            },
            0.0,
        ),
        ({"x-ratelimit-remaining-requests": "5", "x-ratelimit-limit-requests": "0"}, None),
        ({"x-ratelimit-remaining-requests": "x", "x-ratelimit-limit-requests": "10"}, None),
        ({"x-ratelimit-remaining-requests": "5"}, None),
        ({}, None),
    ],
)
def test_quota_remaining(headers: dict[str, str], expected: float | None) -> None:
    assert quota_remaining(headers) == expected


def test_rate_limited_without_quota_headers_means_quota_spent() -> None:
    assert classify_status("p", 429, {}, "").quota_remaining == 0.0
    with_headers = {"x-ratelimit-remaining-requests": "1", "x-ratelimit-limit-requests": "4"}
    assert classify_status("p", 429, with_headers, "").quota_remaining == 0.25


# -- transport errors ---------------------------------------------------------------------------

REQUEST = httpx.Request("POST", "http://127.0.0.1:1/x")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectError("refused", request=REQUEST), K.CONNECTION),
        (httpx.ReadError("reset", request=REQUEST), K.CONNECTION),
        (httpx.WriteError("broken pipe", request=REQUEST), K.CONNECTION),
        (httpx.RemoteProtocolError("peer closed connection", request=REQUEST), K.CONNECTION),
        (httpx.ConnectTimeout("", request=REQUEST), K.TIMEOUT),
        (httpx.ReadTimeout("", request=REQUEST), K.TIMEOUT),
        (httpx.WriteTimeout("", request=REQUEST), K.TIMEOUT),
        (httpx.PoolTimeout("", request=REQUEST), K.TIMEOUT),
        (httpx.DecodingError("bad gzip", request=REQUEST), K.MALFORMED),
        (httpx.UnsupportedProtocol("ftp", request=REQUEST), K.CONNECTION),
    ],
)
def test_transport_errors(exc: httpx.HTTPError, kind: FailureKind) -> None:
    error = classify_transport_error("prov", exc)
    assert error.kind is kind
    assert error.message.startswith("prov: ")


# -- each adapter, end to end over a mock transport ---------------------------------------------

REQ = Request("hello there", max_tokens=20, temperature=0.5)


def raising(exc_type: type[httpx.TransportError]) -> Any:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return handler


def replying(status: int, content: bytes | str, headers: dict[str, str] | None = None) -> Any:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers=headers)

    return handler


FAILURES = {
    "connect_error": (raising(httpx.ConnectError), K.CONNECTION),
    "read_timeout": (raising(httpx.ReadTimeout), K.TIMEOUT),
    "connect_timeout": (raising(httpx.ConnectTimeout), K.TIMEOUT),
    "dropped": (raising(httpx.RemoteProtocolError), K.CONNECTION),
    "not_json": (replying(200, b"<html>oops</html>"), K.MALFORMED),
    "server_error": (replying(503, b'{"error": {"message": "down"}}'), K.SERVER_ERROR),
    "rate_limited": (replying(429, b"{}", {"retry-after": "4"}), K.RATE_LIMITED),
    "auth": (replying(401, b'{"error": {"message": "bad key"}}'), K.AUTH),
    "client_error": (replying(404, b'{"error": {"message": "no such model"}}'), K.CLIENT_ERROR),
}


async def collect(stream: Any) -> list[StreamEvent]:
    events = []
    async for event in stream:
        events.append(event)
    return events


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("kind", PROTOCOL_KINDS)
async def test_adapter_complete_classifies(
    kind: str, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_keys(monkeypatch)
    handler, expected = FAILURES[failure]
    adapter = build(kind, handler)
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(REQ, "test-model")
    assert caught.value.kind is expected
    if failure == "rate_limited":
        assert caught.value.retry_after_s == 4.0
    await adapter.aclose()


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("kind", PROTOCOL_KINDS)
async def test_adapter_stream_classifies(
    kind: str, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_keys(monkeypatch)
    handler, expected = FAILURES[failure]
    if failure == "not_json":
        # A 200 stream whose event data is not JSON.
        body = b"data: {not json\n\n" if kind != "ollama" else b"{not json\n"
        handler = replying(200, body)
    adapter = build(kind, handler)
    with pytest.raises(ProviderError) as caught:
        await collect(adapter.stream(REQ, "test-model"))
    assert caught.value.kind is expected
    await adapter.aclose()


@pytest.mark.parametrize("kind", PROTOCOL_KINDS)
async def test_adapter_complete_wrong_shape_is_malformed(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_keys(monkeypatch)
    adapter = build(kind, replying(200, json.dumps({"unexpected": [1, 2, 3]})))
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(REQ, "test-model")
    assert caught.value.kind is K.MALFORMED
    await adapter.aclose()


@pytest.mark.parametrize("kind", PROTOCOL_KINDS)
async def test_adapter_stream_cut_before_its_end_marker_is_a_connection_failure(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_keys(monkeypatch)
    adapter = build(kind, replying(200, stream_body(kind, ["Hel", "lo"], complete=False)))
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError) as caught:
        async for event in adapter.stream(REQ, "test-model"):
            events.append(event)
    assert caught.value.kind is K.CONNECTION
    # The text that did arrive was delivered first; no StreamDone pretends the reply was whole.
    assert [getattr(e, "text", None) for e in events] == ["Hel", "lo"]
    assert not any(isinstance(e, StreamDone) for e in events)
    await adapter.aclose()


async def test_anthropic_overloaded_mid_stream_is_a_server_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_keys(monkeypatch)
    cut = stream_body("anthropic", ["Hel"], complete=False)
    overloaded = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    adapter = build("anthropic", replying(200, cut + overloaded))
    texts: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for event in adapter.stream(REQ, "test-model"):
            texts.append(getattr(event, "text", ""))
    assert caught.value.kind is K.SERVER_ERROR
    assert "overloaded_error" in caught.value.message
    assert texts == ["Hel"]
    await adapter.aclose()


@pytest.mark.parametrize("kind", ["openai", "ollama"])
async def test_error_object_mid_stream_is_a_server_error(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_keys(monkeypatch)
    error = (
        {"error": {"message": "backend crashed"}}
        if kind == "openai"
        else {"error": "backend crashed"}
    )
    tail = (
        f"data: {json.dumps(error)}\n\n".encode()
        if kind == "openai"
        else (json.dumps(error) + "\n").encode()
    )
    adapter = build(kind, replying(200, stream_body(kind, ["a"], complete=False) + tail))
    with pytest.raises(ProviderError) as caught:
        await collect(adapter.stream(REQ, "test-model"))
    assert caught.value.kind is K.SERVER_ERROR
    assert "backend crashed" in caught.value.message
    await adapter.aclose()


@pytest.mark.parametrize("kind", PROTOCOL_KINDS)
async def test_cancellation_passes_through_untouched(
    kind: str, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    set_keys(monkeypatch)

    async def hang(request: httpx.Request) -> httpx.Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    adapter = build(kind, hang)
    with trio.move_on_after(5) as scope:
        await adapter.complete(REQ, "test-model")
    assert scope.cancelled_caught
    with trio.move_on_after(5) as scope:
        await collect(adapter.stream(REQ, "test-model"))
    assert scope.cancelled_caught
    await adapter.aclose()


@pytest.mark.parametrize("kind", PROTOCOL_KINDS)
async def test_success_sanity(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure tests above mean something only if the same adapters succeed on good replies."""
    set_keys(monkeypatch)
    adapter = build(kind, replying(200, json.dumps(ok_reply(kind, "fine"))))
    assert (await adapter.complete(REQ, "test-model")).text == "fine"
    await adapter.aclose()
