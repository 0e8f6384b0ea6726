"""The fake provider server, spoken to over real HTTP with a plain httpx client.

Real sockets and the real clock: the only waits are tiny fault delays, measured from below.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from adapter_support import gemini_bad_key

from actors.faults import Fault, FaultKind
from runtime.testing import (
    DEFAULT_PROVIDERS,
    FakeProviderServer,
    UnknownProvider,
    count_tokens,
    open_fake_provider_server,
    reply_chunks,
)
from runtime.testing.server import main

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
PROMPT = "tell me a story"
EXPECTED = "echo: tell me a story"


@pytest.fixture
async def server() -> AsyncIterator[FakeProviderServer]:
    async with open_fake_provider_server() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


def openai_body(prompt: str = PROMPT, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": prompt},
        ],
        **extra,
    }


def anthropic_body(prompt: str = PROMPT, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet",
        "max_tokens": 100,
        "system": "be brief",
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }


def gemini_body(prompt: str = PROMPT, **extra: Any) -> dict[str, Any]:
    return {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        **extra,
    }


def ollama_body(prompt: str = PROMPT, **extra: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "messages": [{"role": "user", "content": prompt}], **extra}


async def post_openai(
    client: httpx.AsyncClient, server: FakeProviderServer, name: str = "openai", **extra: Any
) -> httpx.Response:
    return await client.post(server.url_for(name) + "/chat/completions", json=openai_body(**extra))


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event, data) pairs of an SSE body; enough of the spec for these replies."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block:
            continue
        event, data = None, []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
        events.append((event, "\n".join(data)))
    return events


# --- the four protocols ---


async def test_openai_reply_field_by_field(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    reply = await client.post(
        server.url_for("openai") + "/chat/completions",
        json=openai_body(max_tokens=50),
        headers={"authorization": "Bearer sk-test"},
    )

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert int(reply.headers["content-length"]) == len(reply.content)
    body = reply.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-4o"
    choice = body["choices"][0]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": EXPECTED, "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}
    assert reply.headers["x-ratelimit-limit-requests"] == "10000"
    assert reply.headers["x-ratelimit-remaining-requests"] == "9999"
    assert reply.headers["x-ratelimit-limit-tokens"] == "1000000"
    assert reply.headers["x-ratelimit-remaining-tokens"] == str(1_000_000 - 11)

    (recorded,) = server.requests("openai")
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == "Bearer sk-test"
    assert recorded.json == openai_body(max_tokens=50)
    assert "sk-test" not in repr(recorded)


async def test_openai_stream(server: FakeProviderServer, client: httpx.AsyncClient) -> None:
    url = server.url_for("openai") + "/chat/completions"
    body = openai_body(stream=True, stream_options={"include_usage": True})
    async with client.stream("POST", url, json=body) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert reply.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in reply.headers
        text = (await reply.aread()).decode()

    events = sse_events(text)
    assert all(event is None for event, _ in events)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "".join(filter(None, content)) == EXPECTED
    finals = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finals[-1] == "stop" and set(finals[:-1]) == {None}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}


async def test_openai_max_tokens_truncates_with_length(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    reply = await post_openai(client, server, max_completion_tokens=2)
    choice = reply.json()["choices"][0]
    assert choice["message"]["content"] == "echo: tell"
    assert choice["finish_reason"] == "length"


@pytest.mark.parametrize("name", ["mistral", "huggingface"])
async def test_openai_format_presets_are_served_under_v1(
    server: FakeProviderServer, client: httpx.AsyncClient, name: str
) -> None:
    assert server.url_for(name) == f"{server.base_url}/p/{name}/v1"
    reply = await post_openai(client, server, name)
    assert reply.json()["choices"][0]["message"]["content"] == EXPECTED


async def test_anthropic_reply_field_by_field(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    assert server.url_for("anthropic") == f"{server.base_url}/p/anthropic"
    reply = await client.post(
        server.url_for("anthropic") + "/v1/messages",
        json=anthropic_body(),
        headers={**ANTHROPIC_HEADERS, "x-api-key": "sk-ant-test"},
    )

    assert reply.status_code == 200
    body = reply.json()
    assert body["type"] == "message"
    assert body["role"] == "assistant"
    assert body["id"].startswith("msg_")
    assert body["model"] == "claude-sonnet"
    assert body["content"] == [{"type": "text", "text": EXPECTED}]
    assert body["stop_reason"] == "end_turn"
    assert body["stop_sequence"] is None
    assert body["usage"] == {"input_tokens": 6, "output_tokens": 5}
    assert reply.headers["anthropic-ratelimit-requests-limit"] == "10000"
    assert reply.headers["anthropic-ratelimit-requests-remaining"] == "9999"
    assert reply.headers["anthropic-ratelimit-tokens-remaining"] == str(1_000_000 - 11)
    (recorded,) = server.requests("anthropic")
    assert recorded.headers["x-api-key"] == "sk-ant-test"
    assert recorded.headers["anthropic-version"] == "2023-06-01"


async def test_anthropic_stream_event_sequence(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    url = server.url_for("anthropic") + "/v1/messages"
    body = anthropic_body(stream=True, max_tokens=3)
    reply = await client.post(url, json=body, headers=ANTHROPIC_HEADERS)

    assert reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.text)
    names = [event for event, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [json.loads(payload) for _, payload in events]
    assert [d["type"] for d in data] == names
    assert data[0]["message"]["usage"]["input_tokens"] == 6
    assert data[1]["content_block"] == {"type": "text", "text": ""}
    deltas = [d["delta"] for d in data if d["type"] == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"text_delta"}
    assert "".join(d["text"] for d in deltas) == "echo: tell me"
    assert data[7]["delta"]["stop_reason"] == "max_tokens"
    assert data[7]["usage"] == {"output_tokens": 3}


async def test_anthropic_requires_version_header_and_max_tokens(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    url = server.url_for("anthropic") + "/v1/messages"
    no_version = await client.post(url, json=anthropic_body())
    body = anthropic_body()
    del body["max_tokens"]
    no_max_tokens = await client.post(url, json=body, headers=ANTHROPIC_HEADERS)

    for reply, field in [(no_version, "anthropic-version"), (no_max_tokens, "max_tokens")]:
        assert reply.status_code == 400
        error = reply.json()
        assert error["type"] == "error"
        assert error["error"]["type"] == "invalid_request_error"
        assert field in error["error"]["message"]


async def test_gemini_reply_field_by_field(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    url = server.url_for("gemini") + "/v1beta/models/gemini-2.0-flash:generateContent"
    body = gemini_body(generationConfig={"maxOutputTokens": 100})
    reply = await client.post(url, json=body, headers={"x-goog-api-key": "AIza-test"})

    assert reply.status_code == 200
    data = reply.json()
    candidate = data["candidates"][0]
    assert candidate["content"] == {"parts": [{"text": EXPECTED}], "role": "model"}
    assert candidate["finishReason"] == "STOP"
    assert candidate["index"] == 0
    assert data["usageMetadata"] == {
        "promptTokenCount": 6,
        "candidatesTokenCount": 5,
        "totalTokenCount": 11,
    }
    assert data["modelVersion"] == "gemini-2.0-flash"
    assert "x-ratelimit-remaining-requests" not in reply.headers
    (recorded,) = server.requests("gemini")
    assert recorded.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert recorded.headers["x-goog-api-key"] == "AIza-test"


async def test_gemini_stream_sse_with_crlf(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    url = server.url_for("gemini") + "/v1beta/models/gemini-pro:streamGenerateContent"
    reply = await client.post(url, params={"alt": "sse"}, json=gemini_body())

    assert reply.headers["content-type"] == "text/event-stream"
    assert "\r\n\r\n" in reply.text
    events = [json.loads(data) for _, data in sse_events(reply.text)]
    texts = [e["candidates"][0]["content"]["parts"][0]["text"] for e in events]
    assert "".join(texts) == EXPECTED
    assert [e["candidates"][0].get("finishReason") for e in events][-1] == "STOP"
    assert all("finishReason" not in e["candidates"][0] for e in events[:-1])
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == 5
    assert server.requests("gemini")[0].query == {"alt": "sse"}


async def test_gemini_stream_without_sse_is_a_json_array(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    url = server.url_for("gemini") + "/v1beta/models/gemini-pro:streamGenerateContent"
    reply = await client.post(url, json=gemini_body())

    events = json.loads(reply.text)
    texts = [e["candidates"][0]["content"]["parts"][0]["text"] for e in events]
    assert "".join(texts) == EXPECTED
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_ollama_streams_ndjson_by_default(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    url = server.url_for("ollama") + "/api/chat"
    assert url == f"{server.base_url}/p/ollama/api/chat"
    reply = await client.post(url, json=ollama_body())

    assert reply.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in reply.text.splitlines()]
    assert reply.text.endswith("\n")
    assert [line["done"] for line in lines] == [False] * 5 + [True]
    assert "".join(line["message"]["content"] for line in lines) == EXPECTED
    assert {line["message"]["role"] for line in lines} == {"assistant"}
    final = lines[-1]
    assert final["done_reason"] == "stop"
    assert final["prompt_eval_count"] == 4
    assert final["eval_count"] == 5
    assert final["model"] == "llama3.2"


async def test_ollama_non_stream_reply(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    url = server.url_for("ollama") + "/api/chat"
    reply = await client.post(url, json=ollama_body(stream=False, options={"num_predict": 2}))

    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["message"] == {"role": "assistant", "content": "echo: tell"}
    assert body["done"] is True
    assert body["done_reason"] == "length"
    assert (body["prompt_eval_count"], body["eval_count"]) == (4, 2)


async def test_reply_chunks_and_tokens_are_the_documented_ones() -> None:
    assert reply_chunks("a  b\nc") == ("echo: ", "a ", "b ", "c")
    assert reply_chunks("a b c", max_tokens=2) == ("echo: ", "a")
    assert count_tokens(" one two  three ") == 3


# --- routing ---


async def test_unknown_provider_is_404_json(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    reply = await client.post(f"{server.base_url}/p/nobody/v1/chat/completions", json={})
    assert reply.status_code == 404
    assert "nobody" in reply.json()["error"]["message"]
    root = await client.get(server.base_url + "/")
    assert root.status_code == 404
    assert root.json()["error"]["type"] == "not_found"


async def test_unknown_path_under_a_provider_is_its_own_404(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    reply = await client.post(
        server.url_for("anthropic") + "/v1/complete", headers=ANTHROPIC_HEADERS
    )
    assert reply.status_code == 404
    assert reply.json()["error"]["type"] == "not_found_error"
    wrong_method = await client.get(server.url_for("openai") + "/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"


async def test_named_providers_share_one_server_with_independent_faults(
    client: httpx.AsyncClient,
) -> None:
    async with open_fake_provider_server({"primary": "openai", "backup": "openai"}) as server:
        assert server.providers == {"primary": "openai", "backup": "openai"}
        server.target("primary").inject(Fault(FaultKind.OUTAGE))

        assert (await post_openai(client, server, "primary")).status_code == 503
        assert (await post_openai(client, server, "backup")).status_code == 200
        assert len(server.requests("primary")) == len(server.requests("backup")) == 1


async def test_url_for_with_kind_mounts_a_new_provider(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    url = server.url_for("groq", "openai")
    assert url == f"{server.base_url}/p/groq/v1"
    assert (await post_openai(client, server, "groq")).status_code == 200
    with pytest.raises(ValueError, match="already mounted as kind='openai'"):
        server.url_for("groq", "anthropic")


async def test_unknown_names_and_kinds_are_clear_errors(server: FakeProviderServer) -> None:
    with pytest.raises(UnknownProvider, match="no fake provider named 'nope'"):
        server.target("nope")
    with pytest.raises(ValueError, match="kind='grok' is not one of"):
        server.add_provider("x", "grok")
    with pytest.raises(ValueError, match="provider name 'a/b'"):
        server.add_provider("a/b", "openai")
    with pytest.raises(ValueError, match="rate=2 must be between 0 and 1"):
        server.target("openai").inject(Fault(FaultKind.ERRORS, rate=2))


# --- keys ---


async def test_auth_checked_when_a_key_is_expected(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.expect_key("openai", "sk-right")
    url = server.url_for("openai") + "/chat/completions"

    missing = await client.post(url, json=openai_body())
    wrong = await client.post(url, json=openai_body(), headers={"authorization": "Bearer sk-x"})
    right = await client.post(url, json=openai_body(), headers={"authorization": "Bearer sk-right"})

    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert wrong.json()["error"]["type"] == "invalid_request_error"
    assert "sk-right" not in wrong.text and "sk-x" not in wrong.text
    assert len(server.requests("openai")) == 3


async def test_auth_error_shapes_per_provider(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    for name in ("anthropic", "gemini", "ollama"):
        server.expect_key(name, "secret")
    anthropic = await client.post(
        server.url_for("anthropic") + "/v1/messages",
        json=anthropic_body(),
        headers={**ANTHROPIC_HEADERS, "x-api-key": "wrong"},
    )
    gemini_url = server.url_for("gemini") + "/v1beta/models/g:generateContent"
    gemini = await client.post(gemini_url, json=gemini_body())
    gemini_query_key = await client.post(gemini_url, params={"key": "secret"}, json=gemini_body())
    ollama = await client.post(server.url_for("ollama") + "/api/chat", json=ollama_body())

    assert anthropic.status_code == 401
    assert anthropic.json()["error"]["type"] == "authentication_error"
    assert gemini.status_code == 403
    assert gemini.json()["error"]["status"] == "PERMISSION_DENIED"
    assert gemini_query_key.status_code == 200
    assert ollama.status_code == 401
    assert ollama.json() == {"error": "No API key was provided."}


# --- what the real APIs do, where it matters for fallback ---


async def test_gemini_wrong_key_is_400_api_key_invalid(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.expect_key("gemini", "secret")
    url = server.url_for("gemini") + "/v1beta/models/g:generateContent"
    wrong = await client.post(url, json=gemini_body(), headers={"x-goog-api-key": "AIza-wrong"})
    message = "API key not valid. Please pass a valid API key."
    assert wrong.status_code == 400
    assert wrong.json() == json.loads(gemini_bad_key(message))
    assert "AIza-wrong" not in wrong.text
    missing = await client.post(url, json=gemini_body())
    assert (missing.status_code, missing.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
    assert "unregistered callers" in missing.json()["error"]["message"]


REASONING_MODELS = ["o1", "o1-2024-12-17", "o1-mini", "o1-preview", "o3", "o3-mini", "o4-mini"]
REASONING_MODELS += ["gpt-5", "gpt-5-mini", "gpt-5.1"]


@pytest.mark.parametrize("model", REASONING_MODELS)
async def test_reasoning_models_refuse_max_tokens_and_take_max_completion_tokens(
    server: FakeProviderServer, client: httpx.AsyncClient, model: str
) -> None:
    user_only = [{"role": "user", "content": PROMPT}]
    refused = await post_openai(client, server, model=model, messages=user_only, max_tokens=3)
    assert refused.status_code == 400
    assert refused.json() == {
        "error": {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "unsupported_parameter",
        }
    }
    taken = await post_openai(
        client, server, model=model, messages=user_only, max_completion_tokens=3
    )
    assert taken.status_code == 200
    assert taken.json()["choices"][0]["message"]["content"] == "".join(reply_chunks(PROMPT, 3))
    hot = await post_openai(client, server, model=model, messages=user_only, temperature=0.7)
    assert hot.status_code == 400
    assert hot.json()["error"] == {
        "message": "Unsupported value: 'temperature' does not support 0.7 with this model. "
        "Only the default (1) value is supported.",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "unsupported_value",
    }
    default = await post_openai(client, server, model=model, messages=user_only, temperature=1)
    assert default.status_code == 200


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o10-lookalike"])
async def test_other_models_take_max_tokens_and_any_temperature(
    server: FakeProviderServer, client: httpx.AsyncClient, model: str
) -> None:
    reply = await post_openai(client, server, model=model, max_tokens=3, temperature=1.7)
    assert reply.status_code == 200


@pytest.mark.parametrize(
    ("model", "role", "refused"),
    [
        ("o1-mini", "system", True),
        ("o1-mini-2024-09-12", "system", True),
        ("o1-preview", "system", True),
        ("o1-mini", "developer", True),
        ("o1", "system", False),  # o1 and later take a system message as a developer one
        ("o1", "developer", False),
        ("o3-mini", "system", False),
        ("gpt-5", "system", False),
    ],
)
async def test_system_role_on_o1_family_models_as_openai_answers_it(
    server: FakeProviderServer, client: httpx.AsyncClient, model: str, role: str, refused: bool
) -> None:
    messages = [{"role": role, "content": "be brief"}, {"role": "user", "content": PROMPT}]
    reply = await post_openai(client, server, model=model, messages=messages)
    if not refused:
        assert reply.status_code == 200
        return
    assert reply.status_code == 400
    assert reply.json()["error"] == {
        "message": f"Unsupported value: 'messages[0].role' does not support '{role}' with "
        "this model.",
        "type": "invalid_request_error",
        "param": "messages[0].role",
        "code": "unsupported_value",
    }


async def test_anthropic_refuses_temperature_above_one(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    url = server.url_for("anthropic") + "/v1/messages"
    for temperature in (1.5, 2, -0.1):
        hot = await client.post(
            url, json=anthropic_body(temperature=temperature), headers=ANTHROPIC_HEADERS
        )
        assert hot.status_code == 400
        assert hot.json() == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "temperature: range: 0..1"},
        }
    for temperature in (0, 0.7, 1):
        ok = await client.post(
            url, json=anthropic_body(temperature=temperature), headers=ANTHROPIC_HEADERS
        )
        assert ok.status_code == 200


async def test_anthropic_takes_the_key_as_x_api_key_or_bearer(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.expect_key("anthropic", "sk-ant-right")
    url = server.url_for("anthropic") + "/v1/messages"

    async def status(**auth: str) -> int:
        headers = {**ANTHROPIC_HEADERS, **auth}
        return (await client.post(url, json=anthropic_body(), headers=headers)).status_code

    assert await status(**{"x-api-key": "sk-ant-right"}) == 200
    assert await status(authorization="Bearer sk-ant-right") == 200
    assert await status(authorization="Bearer sk-ant-wrong") == 401
    assert await status() == 401


STREAMS = {
    "openai": ("/chat/completions", openai_body(stream=True), {}),
    "anthropic": ("/v1/messages", anthropic_body(stream=True), ANTHROPIC_HEADERS),
    "gemini": ("/v1beta/models/g:streamGenerateContent?alt=sse", gemini_body(), {}),
    "gemini-array": ("/v1beta/models/g:streamGenerateContent", gemini_body(), {}),
    "ollama": ("/api/chat", ollama_body(), {}),
}


IN_BAND_ERRORS = {
    "openai": {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    },
    "anthropic": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    "gemini": {
        "error": {
            "code": 503,
            "message": "The model is overloaded. Please try again later.",
            "status": "UNAVAILABLE",
        }
    },
    "ollama": {"error": "an error was encountered while running the model"},
}


def _in_band_error(name: str, body: str) -> Any:
    """The error a stream ended with, parsed."""
    if name == "ollama":
        return json.loads(body.strip().split("\n")[-1])
    if name == "gemini-array":
        return json.loads(body)[-1]
    return json.loads(sse_events(body)[-1][1])


@pytest.mark.parametrize("name", STREAMS)
async def test_stream_error_sends_the_providers_in_band_error_after_text(
    server: FakeProviderServer, client: httpx.AsyncClient, name: str
) -> None:
    provider = name.partition("-")[0]
    server.target(provider).inject(Fault(FaultKind.STREAM_ERROR, after_chunks=2))
    path, body, headers = STREAMS[name]
    reply = await client.post(server.url_for(provider) + path, json=body, headers=headers)
    assert reply.status_code == 200  # the error comes in band, after the status
    text = reply.text
    first, second, third = reply_chunks(PROMPT)[:3]
    assert json.dumps(first)[1:-1] in text and json.dumps(second)[1:-1] in text
    assert json.dumps(third)[1:-1] not in text
    assert _in_band_error(name, text) == IN_BAND_ERRORS[provider]
    if provider == "anthropic":
        assert sse_events(text)[-1][0] == "error"
    for end_marker in ("[DONE]", "message_stop", '"done":true', "finishReason"):
        assert end_marker not in text


# --- faults ---


async def test_outage_answers_provider_shaped_errors(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.target("openai").inject(Fault(FaultKind.OUTAGE))
    server.target("anthropic").inject(Fault(FaultKind.OUTAGE, status=529))
    server.target("gemini").inject(Fault(FaultKind.OUTAGE, status=500))
    server.target("ollama").inject(Fault(FaultKind.OUTAGE))

    openai = await post_openai(client, server)
    anthropic = await client.post(
        server.url_for("anthropic") + "/v1/messages",
        json=anthropic_body(),
        headers=ANTHROPIC_HEADERS,
    )
    gemini = await client.post(
        server.url_for("gemini") + "/v1beta/models/g:generateContent", json=gemini_body()
    )
    ollama = await client.post(server.url_for("ollama") + "/api/chat", json=ollama_body())

    assert openai.status_code == 503
    assert openai.json()["error"]["type"] == "server_error"
    assert anthropic.status_code == 529
    assert anthropic.json() == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert gemini.status_code == 500
    assert gemini.json()["error"]["status"] == "INTERNAL"
    assert gemini.json()["error"]["code"] == 500
    assert ollama.status_code == 503
    assert "server busy" in ollama.json()["error"]


async def test_error_rate_is_seeded_and_deterministic(client: httpx.AsyncClient) -> None:
    async def pattern(seed: int) -> list[int]:
        async with open_fake_provider_server({"p": "openai"}, seed=seed) as server:
            server.target("p").inject(Fault(FaultKind.ERRORS, rate=0.5, status=502))
            return [(await post_openai(client, server, "p")).status_code for _ in range(16)]

    first, again = await pattern(7), await pattern(7)
    assert first == again
    assert set(first) == {200, 502}


async def test_error_rate_bounds(server: FakeProviderServer, client: httpx.AsyncClient) -> None:
    server.target("openai").inject(Fault(FaultKind.ERRORS, rate=1.0, status=500))
    assert (await post_openai(client, server)).status_code == 500
    server.target("openai").inject(Fault(FaultKind.ERRORS, rate=0.0))
    assert (await post_openai(client, server)).status_code == 200


async def test_rate_limit_sends_429_with_retry_after(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.target("openai").inject(Fault(FaultKind.RATE_LIMIT, retry_after_s=2))
    server.target("anthropic").inject(Fault(FaultKind.RATE_LIMIT, retry_after_s=0.5))

    openai = await post_openai(client, server)
    anthropic = await client.post(
        server.url_for("anthropic") + "/v1/messages",
        json=anthropic_body(),
        headers=ANTHROPIC_HEADERS,
    )

    assert openai.status_code == 429
    assert openai.headers["retry-after"] == "2"
    assert openai.headers["retry-after-ms"] == "2000"
    assert openai.json()["error"]["code"] == "rate_limit_exceeded"
    assert anthropic.status_code == 429
    assert anthropic.headers["retry-after"] == "0.5"
    assert anthropic.json()["error"]["type"] == "rate_limit_error"

    server.target("gemini").inject(Fault(FaultKind.RATE_LIMIT, retry_after_s=3))
    gemini = await client.post(
        server.url_for("gemini") + "/v1beta/models/g:generateContent", json=gemini_body()
    )
    assert gemini.status_code == 429
    assert gemini.headers["retry-after"] == "3"
    error = gemini.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}
    ]


async def test_quota_sends_429_with_nothing_remaining(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.target("openai").inject(Fault(FaultKind.QUOTA))
    reply = await post_openai(client, server)

    assert reply.status_code == 429
    assert reply.json()["error"]["code"] == "insufficient_quota"
    assert reply.headers["x-ratelimit-remaining-requests"] == "0"
    assert reply.headers["x-ratelimit-remaining-tokens"] == "0"
    assert reply.headers["x-ratelimit-limit-requests"] == "10000"


async def test_rate_limit_headers_count_down_from_the_set_limits(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.set_rate_limits("anthropic", requests=5, tokens=100)
    remaining = []
    for _ in range(2):
        reply = await client.post(
            server.url_for("anthropic") + "/v1/messages",
            json=anthropic_body(),
            headers=ANTHROPIC_HEADERS,
        )
        remaining.append(
            (
                reply.headers["anthropic-ratelimit-requests-remaining"],
                reply.headers["anthropic-ratelimit-tokens-remaining"],
            )
        )
    assert remaining == [("4", "89"), ("3", "78")]


async def test_latency_delays_the_reply(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.target("openai").inject(Fault(FaultKind.LATENCY, delay_s=0.1))
    start = trio.current_time()
    reply = await post_openai(client, server)
    assert reply.status_code == 200
    assert trio.current_time() - start >= 0.1

    server.set_latency("gemini", 0.02)
    server.target("gemini").inject(Fault(FaultKind.LATENCY, factor=5, delay_s=0))
    assert server.target("gemini").latency_s() == pytest.approx(0.1)


async def test_hang_accepts_and_never_answers(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.target("openai").inject(Fault(FaultKind.HANG))
    answered = False

    async def post() -> None:
        nonlocal answered
        await post_openai(client, server)
        answered = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(post)
        # Real time on a possibly busy machine: wait for the request to arrive, however long
        # that takes, then give the server ample time to (wrongly) answer it.
        with trio.fail_after(30):
            await server.wait_for_requests("openai", 1)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert not answered
    assert len(server.requests("openai")) == 1


async def test_a_client_that_leaves_mid_answer_is_seen_at_once(
    server: FakeProviderServer,
) -> None:
    # A raw socket, so the test decides when the FIN goes out; the provider is sleeping out a
    # 60 s latency, so only the connection watcher can notice the close in time.
    server.set_latency("openai", 60.0)
    body = json.dumps(openai_body()).encode()
    head = (
        f"POST /p/openai/v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    stream = await trio.open_tcp_stream(server.host, server.port)
    await stream.send_all(head.encode() + body)
    with trio.fail_after(30):
        await server.wait_for_requests("openai", 1)
    assert server.departures("openai") == ()
    left_at = trio.current_time()
    await stream.aclose()
    with trio.fail_after(30):
        (departure,) = await server.wait_for_departures("openai", 1)
    assert departure.path == "/v1/chat/completions"
    # Event-driven (the close wakes the server's pending read), so on a busy machine too.
    assert departure.at - left_at < 0.1


async def test_hang_times_out_a_client_read(server: FakeProviderServer) -> None:
    server.target("ollama").inject(Fault(FaultKind.HANG))
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.05)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(server.url_for("ollama") + "/api/chat", json=ollama_body())


async def test_drop_stream_cuts_the_connection_after_n_chunks(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.target("openai").inject(Fault(FaultKind.DROP_STREAM, after_chunks=2))
    url = server.url_for("openai") + "/chat/completions"
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream("POST", url, json=openai_body(stream=True)) as reply:
            assert reply.status_code == 200
            async for data in reply.aiter_bytes():
                received += data

    chunks = [json.loads(data) for _, data in sse_events(received.decode())]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "".join(reply_chunks(PROMPT)[:2]) == "echo: tell "
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


async def test_drop_stream_after_all_chunks_still_never_finishes(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.target("ollama").inject(Fault(FaultKind.DROP_STREAM, after_chunks=99))
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream(
            "POST", server.url_for("ollama") + "/api/chat", json=ollama_body()
        ) as reply:
            async for data in reply.aiter_bytes():
                received += data
    lines = [json.loads(line) for line in received.decode().splitlines()]
    assert "".join(line["message"]["content"] for line in lines) == EXPECTED
    assert not any(line["done"] for line in lines)


async def test_drop_cuts_a_non_streamed_body_too(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.target("openai").inject(Fault(FaultKind.DROP_STREAM))
    with pytest.raises(httpx.RemoteProtocolError):
        await post_openai(client, server)


async def test_malformed_reply_and_stream_event(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.target("openai").inject(Fault(FaultKind.MALFORMED))
    reply = await post_openai(client, server)
    assert reply.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.content)

    stream = await post_openai(client, server, stream=True)
    payloads = [data for _, data in sse_events(stream.text)]
    bad = []
    for payload in payloads[:-1]:
        try:
            json.loads(payload)
        except json.JSONDecodeError:
            bad.append(payload)
    assert len(bad) == 1
    assert payloads[-1] == "[DONE]"


async def test_slow_drip_spaces_chunks(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.target("anthropic").inject(Fault(FaultKind.SLOW_DRIP, delay_s=0.03))
    url = server.url_for("anthropic") + "/v1/messages"
    start = trio.current_time()
    arrivals = []
    async with client.stream(
        "POST", url, json=anthropic_body("a b", stream=True), headers=ANTHROPIC_HEADERS
    ) as reply:
        async for line in reply.aiter_lines():
            if line.startswith("event: content_block_delta"):
                arrivals.append(trio.current_time() - start)
    assert len(arrivals) == 3
    # Each delta waits delay_s after the previous send: the n-th arrives no sooner than n * delay.
    for index, at in enumerate(arrivals, start=1):
        assert at >= 0.03 * index


async def test_context_limit_returns_the_providers_400(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.set_context_limit("openai", 3, model="gpt-4o")
    too_long = await post_openai(client, server)
    larger_model = await client.post(
        server.url_for("openai") + "/chat/completions", json={**openai_body(), "model": "gpt-4.1"}
    )
    server.set_context_limit("anthropic", 3)
    anthropic = await client.post(
        server.url_for("anthropic") + "/v1/messages",
        json=anthropic_body(),
        headers=ANTHROPIC_HEADERS,
    )
    server.set_context_limit("gemini", 3)
    gemini = await client.post(
        server.url_for("gemini") + "/v1beta/models/g:generateContent", json=gemini_body()
    )

    assert too_long.status_code == 400
    error = too_long.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "maximum context length is 3 tokens" in error["message"]
    assert larger_model.status_code == 200
    assert anthropic.status_code == 400
    assert anthropic.json()["error"] == {
        "type": "invalid_request_error",
        "message": "prompt is too long: 6 tokens > 3 maximum",
    }
    assert gemini.status_code == 400
    assert gemini.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "input token count (6)" in gemini.json()["error"]["message"]

    server.set_context_limit("openai", None, model="gpt-4o")
    assert (await post_openai(client, server)).status_code == 200


async def test_respond_with_arbitrary_reply(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    server.respond_with(
        "openai", 418, {"error": {"message": "teapot"}}, {"x-custom": "yes"}, times=1
    )
    scripted = await post_openai(client, server)
    normal = await post_openai(client, server)

    assert scripted.status_code == 418
    assert scripted.json() == {"error": {"message": "teapot"}}
    assert scripted.headers["x-custom"] == "yes"
    assert normal.status_code == 200

    server.respond_with("openai", 502, "<html>Bad Gateway</html>")
    for _ in range(2):
        html = await post_openai(client, server)
        assert (html.status_code, html.text) == (502, "<html>Bad Gateway</html>")
        assert html.headers["content-type"].startswith("text/plain")
    server.heal("openai")
    assert (await post_openai(client, server)).status_code == 200


async def test_faults_change_while_running_on_one_kept_alive_connection(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    target = server.target("openai")
    statuses = [(await post_openai(client, server)).status_code]
    target.inject(Fault(FaultKind.OUTAGE, status=502))
    assert target.faults() == (Fault(FaultKind.OUTAGE, status=502),)
    statuses.append((await post_openai(client, server)).status_code)
    target.inject(Fault(FaultKind.OUTAGE, status=504))  # same kind replaces
    assert len(target.faults()) == 1
    statuses.append((await post_openai(client, server)).status_code)
    target.heal()
    assert target.faults() == ()
    statuses.append((await post_openai(client, server)).status_code)

    assert statuses == [200, 502, 504, 200]
    assert server.connections_accepted == 1


# --- connections and lifecycle ---


async def test_keep_alive_reuses_one_connection(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    for _ in range(3):
        assert (await post_openai(client, server)).status_code == 200
    stream = await post_openai(client, server, stream=True)
    assert stream.text.endswith("data: [DONE]\n\n")
    assert (await post_openai(client, server)).status_code == 200
    assert server.connections_accepted == 1


async def test_two_concurrent_connections(
    server: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    # One connection hangs; a second one is still served while it does.
    server.target("openai").inject(Fault(FaultKind.HANG))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(post_openai, client, server)
        await server.wait_for_requests("openai", 1)
        reply = await client.post(
            server.url_for("ollama") + "/api/chat", json=ollama_body(stream=False)
        )
        assert reply.json()["message"]["content"] == EXPECTED
        nursery.cancel_scope.cancel()
    assert server.connections_accepted == 2


def _all_tasks() -> set[trio.lowlevel.Task]:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    tasks: set[trio.lowlevel.Task] = set()
    stack = [root]
    while stack:
        task = stack.pop()
        tasks.add(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return tasks


async def test_shutdown_leaves_no_task_behind_and_closes_the_port(
    client: httpx.AsyncClient,
) -> None:
    before = _all_tasks()

    async def hung_request(url: str) -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url + "/chat/completions", json=openai_body())

    # The server closes first: that cancels the hung handler and closes its connection, so the
    # client task ends too before the nursery closes.
    async with (
        trio.open_nursery() as nursery,
        open_fake_provider_server({"p": "openai"}) as server,
    ):
        server.target("p").inject(Fault(FaultKind.HANG))
        nursery.start_soon(hung_request, server.url_for("p"))
        await server.wait_for_requests("p", 1)
        assert len(_all_tasks()) > len(before) + 2
    assert _all_tasks() == before
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", server.port)


async def test_errors_inside_the_block_come_out_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with open_fake_provider_server():
            raise KeyError("from the block")


async def test_refuses_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        async with open_fake_provider_server(host="0.0.0.0"):
            pass


async def test_fake_providers_fixture(
    fake_providers: FakeProviderServer, client: httpx.AsyncClient
) -> None:
    assert fake_providers.providers == dict(DEFAULT_PROVIDERS)
    assert set(fake_providers.providers) >= {"openai", "anthropic", "gemini", "ollama"}
    assert (await post_openai(client, fake_providers, "mistral")).status_code == 200


# --- CLI ---


def test_cli_refuses_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--host", "0.0.0.0"]) == 2
    assert "not a loopback address" in capsys.readouterr().err
    assert main(["--host", "example.com"]) == 2


def test_cli_refuses_bad_provider_specs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--providers", "a:grok"]) == 2
    assert "kind='grok' is not one of" in capsys.readouterr().err
    assert main(["--providers", "a:openai,a:gemini"]) == 2
    assert "listed twice" in capsys.readouterr().err


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_cli_serves_until_interrupted(client: httpx.AsyncClient) -> None:
    code = "import sys; from runtime.testing.server import main; sys.exit(main(sys.argv[1:]))"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", code, "--providers", "gpt:openai,local:ollama"],
        stdout=-1,
        # Ctrl-C as a terminal delivers it: a runner that started this suite in the background
        # has SIGINT ignored, and a child would inherit that and never see the interrupt.
        preexec_fn=_default_sigint,
    )
    assert process.stdout is not None
    output = b""
    # A fresh interpreter importing httpx and trio: seconds on a busy machine, so a wide margin.
    with trio.fail_after(60):
        while output.count(b"\nprovider=") < 2:
            data = await process.stdout.receive_some()
            assert data, f"CLI exited early: {output!r}"
            output += data
        # stdout also carries structlog events; the URLs are the key=value lines of their own.
        first, gpt, local = [
            line
            for line in output.decode().splitlines()
            if line.startswith(("base_url=", "provider="))
        ][:3]
        base_url = first.removeprefix("base_url=")
        assert base_url.startswith("http://127.0.0.1:")
        assert gpt == f"provider=gpt kind=openai base_url={base_url}/p/gpt/v1"
        assert local == f"provider=local kind=ollama base_url={base_url}/p/local"
        reply = await client.post(f"{base_url}/p/local/api/chat", json=ollama_body(stream=False))
        assert reply.json()["message"]["content"] == EXPECTED

        process.send_signal(signal.SIGINT)
        assert await process.wait() == 0
