"""Each HTTP adapter over a mock transport: the request it builds, field by field, and how it parses
replies and streams (split at every byte), plus credentials and the client's lifecycle."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from adapter_support import (
    KEYS,
    KINDS,
    PROTOCOL_KINDS,
    body_of,
    build,
    ok_reply,
    set_keys,
    stream_body,
)

from actors.adapters.base import ADAPTER_KINDS
from actors.errors import FailureKind, ProviderError
from actors.messages import Completion, Request, StreamDone, StreamEvent, TextDelta, Usage

REQ = Request("Tell me a joke", system="Be brief.", max_tokens=64, temperature=0.25)
PIECES = ["Why did ", "the h\u00e9ron ", "cross \u4e16\u754c? \U0001f389"]
TEXT = "".join(PIECES)
#: Each protocol's own word for a normal stop, kept in `Completion.raw_finish_reason`.
RAW_STOP = {"openai": "stop", "anthropic": "end_turn", "gemini": "STOP", "ollama": "stop"}


class Recorder:
    """A mock provider: records each request, answers with a fixed status, headers and body."""

    def __init__(self, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.body = json.dumps(body).encode() if isinstance(body, dict) else body
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []
        self.chunks: list[bytes] | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.chunks is not None:
            return httpx.Response(200, headers=self.headers, stream=ChunkStream(self.chunks))
        return httpx.Response(200, headers=self.headers, content=self.body)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


class ChunkStream(httpx.AsyncByteStream):
    """A response body delivered in exactly these network chunks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    set_keys(monkeypatch)


def test_every_http_kind_is_registered() -> None:
    assert set(KINDS) <= set(ADAPTER_KINDS)


# -- requests, field by field ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("openai", "https://api.openai.com/v1/chat/completions"),
        ("mistral", "https://api.mistral.ai/v1/chat/completions"),
        ("huggingface", "https://router.huggingface.co/v1/chat/completions"),
    ],
)
async def test_openai_format_request(kind: str, url: str) -> None:
    recorder = Recorder(ok_reply("openai", "hi"))
    adapter = build(kind, recorder)
    await adapter.complete(REQ, "gpt-test")
    request = recorder.last
    assert request.method == "POST"
    assert str(request.url) == url
    assert request.headers["authorization"] == f"Bearer {KEYS[kind][1]}"
    assert request.headers["content-type"] == "application/json"
    assert body_of(request) == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me a joke"},
        ],
        "max_tokens": 64,
        "temperature": 0.25,
        "stream": False,
    }
    await adapter.aclose()


async def test_openai_stream_request_asks_for_usage() -> None:
    recorder = Recorder(stream_body("openai", PIECES))
    adapter = build("openai", recorder)
    await collect(adapter.stream(Request("hi"), "gpt-test"))
    body = body_of(recorder.last)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "user", "content": "hi"}]  # no system message when none
    await adapter.aclose()


async def test_openai_base_url_and_key_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk_groqTESTKEY0123456789abc")
    recorder = Recorder(ok_reply("openai", "hi"))
    adapter = build(
        "openai", recorder, base_url="http://127.0.0.1:8000/openai/v1/", api_key_env="GROQ_API_KEY"
    )
    await adapter.complete(REQ, "llama-3")
    assert str(recorder.last.url) == "http://127.0.0.1:8000/openai/v1/chat/completions"
    assert recorder.last.headers["authorization"] == "Bearer gsk_groqTESTKEY0123456789abc"
    await adapter.aclose()


async def test_anthropic_request() -> None:
    recorder = Recorder(ok_reply("anthropic", "hi"))
    adapter = build("anthropic", recorder, anthropic_version="2023-06-01")
    await adapter.complete(REQ, "claude-test")
    request = recorder.last
    assert str(request.url) == "https://api.anthropic.com/v1/messages"
    assert request.headers["x-api-key"] == KEYS["anthropic"][1]
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert body_of(request) == {
        "model": "claude-test",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Tell me a joke"}],
        "system": "Be brief.",
        "temperature": 0.25,
        "stream": False,
    }
    await adapter.aclose()


async def test_anthropic_stream_request_and_no_system_when_none() -> None:
    recorder = Recorder(stream_body("anthropic", PIECES))
    adapter = build("anthropic", recorder)
    await collect(adapter.stream(Request("hi"), "claude-test"))
    body = body_of(recorder.last)
    assert body["stream"] is True
    assert "system" not in body
    await adapter.aclose()


async def test_gemini_request() -> None:
    recorder = Recorder(ok_reply("gemini", "hi"))
    adapter = build("gemini", recorder)
    await adapter.complete(REQ, "gemini-2.0-flash")
    request = recorder.last
    assert (
        str(request.url)
        == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
    )
    assert request.headers["x-goog-api-key"] == KEYS["gemini"][1]
    assert "key" not in request.url.params  # the key never goes into the URL
    assert body_of(request) == {
        "contents": [{"role": "user", "parts": [{"text": "Tell me a joke"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 64, "temperature": 0.25},
    }
    await adapter.aclose()


async def test_gemini_stream_request() -> None:
    recorder = Recorder(stream_body("gemini", PIECES))
    adapter = build("gemini", recorder)
    await collect(adapter.stream(Request("hi"), "models/gemini-2.0-flash"))
    request = recorder.last
    assert request.url.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert request.url.params["alt"] == "sse"
    assert "systemInstruction" not in body_of(request)
    await adapter.aclose()


async def test_ollama_request() -> None:
    recorder = Recorder(ok_reply("ollama", "hi"))
    adapter = build("ollama", recorder)
    await adapter.complete(REQ, "llama3.2")
    request = recorder.last
    assert str(request.url) == "http://localhost:11434/api/chat"
    assert "authorization" not in request.headers
    assert body_of(request) == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me a joke"},
        ],
        "stream": False,  # explicit: Ollama streams by default
        "options": {"num_predict": 64, "temperature": 0.25},
    }
    await adapter.aclose()


async def test_ollama_stream_request() -> None:
    recorder = Recorder(stream_body("ollama", PIECES))
    adapter = build("ollama", recorder)
    await collect(adapter.stream(REQ, "llama3.2"))
    assert body_of(recorder.last)["stream"] is True
    await adapter.aclose()


# -- replies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PROTOCOL_KINDS)
async def test_complete_parses_text_finish_reason_and_usage(kind: str) -> None:
    adapter = build(kind, Recorder(ok_reply(kind, TEXT)))
    completion = await adapter.complete(REQ, "test-model")
    assert completion == Completion(
        text=TEXT,
        model="test-model",
        finish_reason="stop",
        usage=Usage(5, 2),
        raw_finish_reason=RAW_STOP[kind],
    )
    await adapter.aclose()


@pytest.mark.parametrize(
    ("kind", "reply", "finish_reason"),
    [
        (
            "openai",
            {"choices": [{"message": {"content": "a"}, "finish_reason": "length"}]},
            "length",
        ),
        (
            "anthropic",
            {"content": [{"type": "text", "text": "a"}], "stop_reason": "max_tokens", "usage": {}},
            "length",
        ),
        (
            "gemini",
            {"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "MAX_TOKENS"}]},
            "length",
        ),
        (
            "gemini",
            {"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "SAFETY"}]},
            "content_filter",
        ),
        ("ollama", {"message": {"content": "a"}, "done": True, "done_reason": "length"}, "length"),
    ],
)
async def test_finish_reasons_are_normalised(
    kind: str, reply: dict[str, Any], finish_reason: str
) -> None:
    adapter = build(kind, Recorder(reply))
    completion = await adapter.complete(REQ, "test-model")
    assert completion.finish_reason == finish_reason
    assert completion.text == "a"
    assert completion.usage == Usage()
    await adapter.aclose()


@pytest.mark.parametrize(
    ("kind", "reply"),
    [
        ("openai", {"choices": [{"message": {"content": None}, "finish_reason": "length"}]}),
        ("anthropic", {"content": [], "stop_reason": "max_tokens", "usage": {}}),
        (
            "gemini",
            {"candidates": [{"content": {"parts": [{"text": ""}]}, "finishReason": "MAX_TOKENS"}]},
        ),
        ("gemini", {"candidates": [{"finishReason": "SAFETY"}]}),
        ("ollama", {"message": {"content": ""}, "done": True, "done_reason": "length"}),
    ],
)
async def test_a_reply_without_text_is_an_empty_reply(kind: str, reply: dict[str, Any]) -> None:
    adapter = build(kind, Recorder(reply))
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(REQ, "test-model")
    assert caught.value.kind is FailureKind.EMPTY_REPLY
    await adapter.aclose()


async def test_gemini_blocked_prompt_is_a_client_error() -> None:
    reply = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    adapter = build("gemini", Recorder(reply))
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(REQ, "gemini-x")
    assert caught.value.kind is FailureKind.CLIENT_ERROR
    assert "SAFETY" in caught.value.message
    await adapter.aclose()


@pytest.mark.parametrize(
    ("kind", "headers", "quota"),
    [
        (
            "openai",
            {"x-ratelimit-remaining-requests": "30", "x-ratelimit-limit-requests": "120"},
            0.25,
        ),
        (
            "anthropic",
            {
                "anthropic-ratelimit-requests-remaining": "9",
                "anthropic-ratelimit-requests-limit": "10",
            },
            0.9,
        ),
        ("gemini", {}, None),
    ],
)
async def test_rate_limit_headers_become_quota_remaining(
    kind: str, headers: dict[str, str], quota: float | None
) -> None:
    recorder = Recorder(ok_reply(kind, "hi"), headers)
    adapter = build(kind, recorder)
    assert (await adapter.complete(REQ, "test-model")).quota_remaining == quota
    recorder.body = stream_body(kind, PIECES)
    events = await collect(adapter.stream(REQ, "test-model"))
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert done.completion.quota_remaining == quota
    await adapter.aclose()


# -- streams ------------------------------------------------------------------------------------------


def expected_stream(kind: str) -> list[StreamEvent]:
    return [
        *(TextDelta(piece) for piece in PIECES),
        StreamDone(
            Completion(
                text=TEXT,
                model="test-model",
                finish_reason="stop",
                usage=Usage(5, 2),
                raw_finish_reason=RAW_STOP[kind],
            )
        ),
    ]


@pytest.mark.parametrize("kind", PROTOCOL_KINDS)
async def test_stream_yields_deltas_then_one_done(kind: str) -> None:
    adapter = build(kind, Recorder(stream_body(kind, PIECES)))
    assert await collect(adapter.stream(REQ, "test-model")) == expected_stream(kind)
    await adapter.aclose()


@pytest.mark.parametrize("kind", PROTOCOL_KINDS)
async def test_stream_split_at_every_byte(kind: str) -> None:
    body = stream_body(kind, PIECES)
    recorder = Recorder(body)
    adapter = build(kind, recorder)
    expected = expected_stream(kind)
    for cut in range(len(body) + 1):
        recorder.chunks = [body[:cut], body[cut:]]
        assert await collect(adapter.stream(REQ, "test-model")) == expected, f"cut at byte {cut}"
    recorder.chunks = [body[i : i + 1] for i in range(len(body))]
    assert await collect(adapter.stream(REQ, "test-model")) == expected
    await adapter.aclose()


@pytest.mark.parametrize("kind", PROTOCOL_KINDS)
async def test_stream_stops_reading_at_the_end_marker(kind: str) -> None:
    """Bytes after the provider's end marker (a server that keeps talking) are never parsed."""
    if kind == "gemini":
        pytest.skip("Gemini has no end marker: the stream ends when the server closes it")
    recorder = Recorder(b"")
    recorder.chunks = [stream_body(kind, PIECES), b"garbage that would be malformed\n\n"]
    adapter = build(kind, recorder)
    assert await collect(adapter.stream(REQ, "test-model")) == expected_stream(kind)
    await adapter.aclose()


async def test_stream_closed_early_closes_the_response() -> None:
    closed: list[bool] = []

    class TrackedStream(ChunkStream):
        async def aclose(self) -> None:
            closed.append(True)

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=TrackedStream([stream_body("openai", PIECES)]))

    adapter = build("openai", handler)
    stream = adapter.stream(REQ, "test-model")
    first = await stream.__anext__()
    assert first == TextDelta(PIECES[0])
    await stream.aclose()  # type: ignore[attr-defined]
    assert closed == [True]
    await adapter.aclose()


# -- credentials and lifecycle ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "ollama"])
async def test_missing_key_makes_the_adapter_unavailable_without_network(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = KEYS[kind][0]
    monkeypatch.delenv(env)
    recorder = Recorder(ok_reply(kind, "hi"))
    adapter = build(kind, recorder)
    assert adapter.unavailable_reason == f"{env} is not set"
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(REQ, "test-model")
    assert caught.value.kind is FailureKind.UNAVAILABLE
    assert env in caught.value.message
    with pytest.raises(ProviderError) as caught:
        await collect(adapter.stream(REQ, "test-model"))
    assert caught.value.kind is FailureKind.UNAVAILABLE
    assert recorder.requests == []
    await adapter.aclose()


async def test_blank_key_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "   ")
    assert build("openai", Recorder(b"")).unavailable_reason == "OPENAI_API_KEY is not set"


async def test_ollama_needs_no_key_but_uses_one_when_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert build("ollama", Recorder(b"")).unavailable_reason is None
    monkeypatch.setenv("OLLAMA_PROXY_KEY", "proxyTESTKEY0123456789")
    recorder = Recorder(ok_reply("ollama", "hi"))
    adapter = build("ollama", recorder, api_key_env="OLLAMA_PROXY_KEY")
    await adapter.complete(REQ, "llama3.2")
    assert recorder.last.headers["authorization"] == "Bearer proxyTESTKEY0123456789"
    await adapter.aclose()


@pytest.mark.parametrize("base_url", ["not a url", "ftp://example.com", "/relative/path"])
async def test_bad_base_url_makes_the_adapter_unavailable(base_url: str) -> None:
    recorder = Recorder(ok_reply("openai", "hi"))
    adapter = build("openai", recorder, base_url=base_url)
    assert adapter.unavailable_reason is not None
    assert "base_url" in adapter.unavailable_reason
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(REQ, "m")
    assert caught.value.kind is FailureKind.UNAVAILABLE
    assert recorder.requests == []


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "ollama"])
def test_key_is_not_in_repr_or_client_state(kind: str) -> None:
    key = KEYS[kind][1]
    adapter = build(kind, Recorder(b""))
    assert key not in repr(adapter)
    assert key not in repr(adapter.client.headers)
    assert key not in repr(adapter.client.auth)
    assert key not in repr(vars(adapter))


async def test_client_is_sized_and_timed_from_config() -> None:
    adapter = build(
        "openai",
        max_in_flight=7,
        connect_timeout_s=1.5,
        read_timeout_s=9.0,
        base_url="http://127.0.0.1:9",
    )
    client = adapter.client
    assert client.timeout.connect == 1.5
    assert client.timeout.read == 9.0
    assert client.timeout.write is not None and client.timeout.pool is not None
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert pool._max_connections == 7
    await adapter.aclose()


async def test_aclose_closes_the_client_and_is_idempotent() -> None:
    adapter = build("anthropic", Recorder(b""))
    assert not adapter.is_closed
    await adapter.aclose()
    assert adapter.is_closed
    await adapter.aclose()
