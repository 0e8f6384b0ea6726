"""The adapters against real providers' bytes: error bodies, refusals, empty and blocked replies,
reasoning-token usage and per-model request shaping. Every body below is byte for byte what the
provider sends (taken from the providers' API references, their SDKs and bug reports)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from adapter_support import body_of, build, gemini_bad_key, set_keys, sse

from actors.adapters.shaping import model_shape
from actors.config import ModelInfo
from actors.errors import FailureKind, ProviderError
from actors.messages import Completion, Request, StreamDone, StreamEvent, TextDelta, Usage

K = FailureKind
REQ = Request("Say hi", system="Be brief.", max_tokens=64, temperature=0.7)


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    set_keys(monkeypatch)


class Provider:
    """A mock provider answering every request with one status, content type and body."""

    def __init__(self, status: int, body: bytes | str | dict[str, Any], *, sse: bool = False):
        if isinstance(body, dict):
            body = json.dumps(body)
        self.body = body.encode() if isinstance(body, str) else body
        self.status = status
        self.content_type = "text/event-stream" if sse else "application/json"
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        headers = {"content-type": self.content_type}
        return httpx.Response(self.status, headers=headers, content=self.body)


async def complete(kind: str, provider: Provider, model: str = "test-model", **kw: Any) -> Any:
    adapter = build(kind, provider, model=model, **kw)
    try:
        return await adapter.complete(REQ, model)
    finally:
        await adapter.aclose()


async def stream(kind: str, provider: Provider, model: str = "test-model") -> list[StreamEvent]:
    adapter = build(kind, provider, model=model)
    try:
        events: AsyncIterator[StreamEvent] = adapter.stream(REQ, model)
        return [event async for event in events]
    finally:
        await adapter.aclose()


async def failure(kind: str, provider: Provider, *, streamed: bool = False) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        if streamed:
            await stream(kind, provider)
        else:
            await complete(kind, provider)
    return caught.value


# -- issue 8 item 2: a 400 only this model cannot take falls back --------------------------------

OPENAI_MAX_TOKENS_400 = b"""{
  "error": {
    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
    "type": "invalid_request_error",
    "param": "max_tokens",
    "code": "unsupported_parameter"
  }
}"""
OPENAI_TEMPERATURE_400 = b"""{
  "error": {
    "message": "Unsupported value: 'temperature' does not support 0.7 with this model. Only the default (1) value is supported.",
    "type": "invalid_request_error",
    "param": "temperature",
    "code": "unsupported_value"
  }
}"""
ANTHROPIC_TEMPERATURE_TOP_P_400 = (
    b'{"type":"error","error":{"type":"invalid_request_error","message":"`temperature` and '
    b'`top_p` cannot both be specified for this model. Please use only one."},'
    b'"request_id":"req_011CZfa9cXgSHiybjQn1nTq9"}'
)
ANTHROPIC_TEMPERATURE_RANGE_400 = (
    b'{"type":"error","error":{"type":"invalid_request_error",'
    b'"message":"temperature: range: 0..1"}}'
)
GEMINI_SYSTEM_INSTRUCTION_400 = b"""{
  "error": {
    "code": 400,
    "message": "Developer instruction is not enabled for models/gemma-3-27b-it",
    "status": "INVALID_ARGUMENT"
  }
}
"""


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("openai", OPENAI_MAX_TOKENS_400),
        ("openai", OPENAI_TEMPERATURE_400),
        ("anthropic", ANTHROPIC_TEMPERATURE_TOP_P_400),
        ("anthropic", ANTHROPIC_TEMPERATURE_RANGE_400),
        ("gemini", GEMINI_SYSTEM_INSTRUCTION_400),
    ],
    ids=["openai-param", "openai-value", "anthropic-top-p", "anthropic-range", "gemini"],
)
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_a_400_the_model_cannot_take_is_unsupported(
    kind: str, body: bytes, streamed: bool
) -> None:
    error = await failure(kind, Provider(400, body), streamed=streamed)
    assert error.kind is K.UNSUPPORTED, error.message
    assert not error.counts_against_breaker
    assert error.status == 400


async def test_an_ordinary_400_is_still_the_callers_error() -> None:
    body = (
        b'{"type":"error","error":{"type":"invalid_request_error",'
        b'"message":"messages: at least one message is required"}}'
    )
    assert (await failure("anthropic", Provider(400, body))).kind is K.CLIENT_ERROR


def ok_openai(content: str = "Hi!") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


@pytest.mark.parametrize("model", ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "openai/o3"])
async def test_reasoning_models_get_max_completion_tokens_developer_role_no_temperature(
    model: str,
) -> None:
    provider = Provider(200, ok_openai())
    await complete("openai", provider, model)
    body = body_of(provider.requests[0])
    assert body["max_completion_tokens"] == 64
    assert "max_tokens" not in body
    assert "temperature" not in body
    assert body["messages"] == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Say hi"},
    ]


@pytest.mark.parametrize("model", ["o1-preview", "o1-mini"])
async def test_o1_preview_and_mini_take_the_system_prompt_in_the_user_message(model: str) -> None:
    provider = Provider(200, ok_openai())
    await complete("openai", provider, model)
    body = body_of(provider.requests[0])
    assert body["messages"] == [{"role": "user", "content": "Be brief.\n\nSay hi"}]
    assert body["max_completion_tokens"] == 64
    assert "temperature" not in body


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "o1x-custom", "mistral-small-latest"])
async def test_other_models_keep_max_tokens_system_role_and_temperature(model: str) -> None:
    provider = Provider(200, ok_openai())
    await complete("openai", provider, model)
    body = body_of(provider.requests[0])
    assert body["max_tokens"] == 64
    assert "max_completion_tokens" not in body
    assert body["temperature"] == 0.7
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_the_model_table_overrides_the_family_default() -> None:
    assert model_shape("gpt-5-chat-latest", ModelInfo(sampling=("temperature",))).sampling == (
        "temperature",
    )
    custom = model_shape(
        "my-reasoner", ModelInfo(token_field="max_completion_tokens", system_role="developer")
    )
    assert (custom.token_field, custom.system_role, custom.sampling) == (
        "max_completion_tokens",
        "developer",
        ("temperature", "top_p", "presence_penalty", "frequency_penalty"),
    )
    assert model_shape("o3", ModelInfo(sampling=())).token_field == "max_completion_tokens"


async def test_the_model_table_reaches_the_request() -> None:
    provider = Provider(200, ok_openai())
    adapter = build(
        "openai",
        provider,
        model="my-reasoner",
        models={"my-reasoner": ModelInfo(token_field="max_completion_tokens", sampling=())},
    )
    await adapter.complete(REQ, "my-reasoner")
    await adapter.aclose()
    body = body_of(provider.requests[0])
    assert body["max_completion_tokens"] == 64
    assert "temperature" not in body


@pytest.mark.parametrize(
    ("kind", "temperature", "sent"),
    [
        ("anthropic", 1.5, 1.0),
        ("anthropic", 2.0, 1.0),
        ("anthropic", 0.7, 0.7),
        ("openai", 1.5, 1.5),
        ("gemini", 1.5, 1.5),
    ],
)
async def test_temperature_is_clamped_into_the_providers_range(
    kind: str, temperature: float, sent: float
) -> None:
    reply = {
        "anthropic": {
            "content": [{"type": "text", "text": "Hi"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        },
        "openai": ok_openai(),
        "gemini": {
            "candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}]
        },
    }[kind]
    provider = Provider(200, reply)
    adapter = build(kind, provider)
    await adapter.complete(Request("Say hi", temperature=temperature), "test-model")
    await adapter.aclose()
    body = body_of(provider.requests[0])
    found = body["generationConfig"]["temperature"] if kind == "gemini" else body["temperature"]
    assert found == sent


# -- issue 8 item 3: auth and billing in every form ---------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "API key not valid. Please pass a valid API key.",
        "API key expired. Please renew the API key.",
        "API Key not found. Please pass a valid API key.",
    ],
)
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_gemini_bad_key_is_auth_whatever_the_message(message: str, streamed: bool) -> None:
    error = await failure("gemini", Provider(400, gemini_bad_key(message)), streamed=streamed)
    assert error.kind is K.AUTH, error.message
    assert "GEMINI_API_KEY" in error.message


OPENAI_INSUFFICIENT_QUOTA_429 = b"""{
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "type": "insufficient_quota",
        "param": null,
        "code": "insufficient_quota"
    }
}
"""
ANTHROPIC_CREDIT_BALANCE_400 = (
    b'{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is '
    b"too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase "
    b'credits."},"request_id":"req_011CbrFTcXhtiMzr3s6EocF7"}'
)


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("openai", 429, OPENAI_INSUFFICIENT_QUOTA_429),
        ("anthropic", 400, ANTHROPIC_CREDIT_BALANCE_400),
    ],
    ids=["openai-insufficient-quota", "anthropic-credit-balance"],
)
async def test_a_spent_account_is_billing_with_its_reason(
    kind: str, status: int, body: bytes
) -> None:
    error = await failure(kind, Provider(status, body))
    assert error.kind is K.BILLING, error.message
    assert not error.counts_against_breaker
    assert error.retry_after_s is None
    assert "quota" in error.message or "credit balance" in error.message


async def test_geminis_per_minute_quota_is_still_a_rate_limit() -> None:
    """Gemini words its free-tier per-minute limit like OpenAI's spent account; it is a 429 with
    a retry delay, not billing."""
    body = json.dumps(
        {
            "error": {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and billing "
                "details. For more information on this error, head to: "
                "https://ai.google.dev/gemini-api/docs/rate-limits.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}
                ],
            }
        }
    )
    error = await failure("gemini", Provider(429, body))
    assert error.kind is K.RATE_LIMITED
    assert error.retry_after_s == 37.0


# -- issue 8 item 4: empty and blocked replies, refusals, finish reasons ----------------------

GEMINI_SAFETY_NO_CONTENT = {
    "candidates": [
        {
            "finishReason": "SAFETY",
            "index": 0,
            "safetyRatings": [
                {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
                {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "MEDIUM"},
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"},
            ],
        }
    ],
    "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    "modelVersion": "gemini-1.5-flash-001",
}
GEMINI_25_MAX_TOKENS_NO_PARTS = {
    "candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}],
    "usageMetadata": {
        "promptTokenCount": 9,
        "totalTokenCount": 108,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
        "thoughtsTokenCount": 99,
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "2Q9NaPjPLdKEz7IP3rmz2Qs",
}


@pytest.mark.parametrize(
    "reply", [GEMINI_SAFETY_NO_CONTENT, GEMINI_25_MAX_TOKENS_NO_PARTS], ids=["safety", "thinking"]
)
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_gemini_reply_with_no_text_is_empty_reply(
    reply: dict[str, Any], streamed: bool
) -> None:
    body: bytes | dict[str, Any] = sse((None, reply)) if streamed else reply
    error = await failure("gemini", Provider(200, body, sse=streamed), streamed=streamed)
    assert error.kind is K.EMPTY_REPLY, error.message
    assert reply["candidates"][0]["finishReason"] in error.message


@pytest.mark.parametrize("kind", ["openai", "anthropic", "ollama"])
async def test_a_reply_with_no_text_and_no_refusal_is_empty_reply(kind: str) -> None:
    reply = {
        "openai": ok_openai(""),
        "anthropic": {"content": [], "stop_reason": "end_turn", "usage": {}},
        "ollama": {"message": {"content": ""}, "done": True, "done_reason": "stop"},
    }[kind]
    assert (await failure(kind, Provider(200, reply))).kind is K.EMPTY_REPLY


OPENAI_REFUSAL: dict[str, Any] = {
    "id": "chatcmpl-A9dXW2kvsW1NbzPKlqxXlhbpuMvRq",
    "object": "chat.completion",
    "created": 1726800000,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": "I'm sorry, I cannot assist with that request.",
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 81, "completion_tokens": 11, "total_tokens": 92},
}


async def test_openai_refusal_comes_back_with_its_text() -> None:
    completion = await complete("openai", Provider(200, OPENAI_REFUSAL))
    assert completion.text == ""
    assert completion.refusal == "I'm sorry, I cannot assist with that request."
    assert completion.finish_reason == "stop"


async def test_openai_streamed_refusal_comes_back_with_its_text() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    body = sse(
        (None, chunk({"role": "assistant", "content": None, "refusal": ""})),
        (None, chunk({"refusal": "I'm sorry, "})),
        (None, chunk({"refusal": "I cannot assist with that request."})),
        (None, chunk({}, "stop")),
        (None, "[DONE]"),
    )
    events = await stream("openai", Provider(200, body, sse=True))
    assert not [event for event in events if isinstance(event, TextDelta)]
    (done,) = events
    assert isinstance(done, StreamDone)
    assert done.completion.refusal == "I'm sorry, I cannot assist with that request."


ANTHROPIC_REFUSAL: dict[str, Any] = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [],
    "stop_reason": "refusal",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 0},
}


async def test_anthropic_refusal_is_a_refusal_with_content_filter_finish() -> None:
    completion = await complete("anthropic", Provider(200, ANTHROPIC_REFUSAL))
    assert completion.refusal
    assert completion.finish_reason == "content_filter"
    assert completion.raw_finish_reason == "refusal"


async def test_anthropic_streamed_refusal_keeps_what_was_said() -> None:
    body = sse(
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-20250514",
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "I can't help"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "refusal", "stop_sequence": None},
                "usage": {"output_tokens": 4},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    )
    events = await stream("anthropic", Provider(200, body, sse=True))
    done = events[-1]
    assert isinstance(done, StreamDone)
    assert done.completion.refusal == "I can't help"
    assert done.completion.finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("kind", "reply", "finish_reason", "raw"),
    [
        (
            "anthropic",
            {"content": [{"type": "text", "text": "a"}], "stop_reason": "max_tokens", "usage": {}},
            "length",
            "max_tokens",
        ),
        (
            "anthropic",
            {"content": [{"type": "text", "text": "a"}], "stop_reason": "tool_use", "usage": {}},
            "tool_calls",
            "tool_use",
        ),
        (
            "gemini",
            {"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "RECITATION"}]},
            "content_filter",
            "RECITATION",
        ),
        (
            "gemini",
            {"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "OTHER"}]},
            "stop",
            "OTHER",
        ),
        (
            "openai",
            ok_openai()
            | {"choices": [{"message": {"content": "a"}, "finish_reason": "content_filter"}]},
            "content_filter",
            "content_filter",
        ),
        (
            "ollama",
            {"message": {"content": "a"}, "done": True, "done_reason": "unload"},
            "stop",
            "unload",
        ),
    ],
)
async def test_finish_reason_is_normalised_and_the_raw_one_kept(
    kind: str, reply: dict[str, Any], finish_reason: str, raw: str
) -> None:
    completion = await complete(kind, Provider(200, reply))
    assert (completion.finish_reason, completion.raw_finish_reason) == (finish_reason, raw)


# -- issue 8 item 5: usage billed right ------------------------------------------------------

GEMINI_25_THINKING_REPLY = {
    "candidates": [
        {
            "content": {"parts": [{"text": "Hi"}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 8,
        "candidatesTokenCount": 2,
        "totalTokenCount": 610,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}],
        "thoughtsTokenCount": 600,
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "lQpNaMHRLYqSz7IPkfC_wQ4",
}


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_gemini_thinking_tokens_are_billed_as_output(streamed: bool) -> None:
    if streamed:
        events = await stream(
            "gemini", Provider(200, sse((None, GEMINI_25_THINKING_REPLY)), sse=True)
        )
        done = events[-1]
        assert isinstance(done, StreamDone)
        completion: Completion = done.completion
    else:
        completion = await complete("gemini", Provider(200, GEMINI_25_THINKING_REPLY))
    assert completion.text == "Hi"
    assert completion.usage == Usage(input_tokens=8, output_tokens=602, reasoning_tokens=600)


async def test_openai_reasoning_tokens_are_reported() -> None:
    reply = ok_openai() | {
        "model": "o3-mini-2025-01-31",
        "usage": {
            "prompt_tokens": 13,
            "completion_tokens": 1045,
            "total_tokens": 1058,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 1024,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    }
    completion = await complete("openai", Provider(200, reply), "o3-mini")
    assert completion.usage == Usage(input_tokens=13, output_tokens=1045, reasoning_tokens=1024)


# -- in-band stream errors: classified and redacted -----------------------------------------

SECRET = "sk-proj-TESTKEYopenai0123456789abcdef"


async def test_openai_compatible_in_band_error_is_classified_and_redacted() -> None:
    body = sse(
        (
            None,
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
            },
        ),
        (
            None,
            {
                "error": {
                    "object": "error",
                    "message": f"bad key {SECRET} rate limited",
                    "type": "RateLimitError",
                    "param": None,
                    "code": 429,
                }
            },
        ),
    )
    with pytest.raises(ProviderError) as caught:
        await stream("openai", Provider(200, body, sse=True))
    assert caught.value.kind is K.RATE_LIMITED
    assert SECRET not in caught.value.message


async def test_openai_compatible_in_band_error_without_a_code_is_a_server_error() -> None:
    body = sse((None, {"error": {"message": "The server had an error", "type": "server_error"}}))
    with pytest.raises(ProviderError) as caught:
        await stream("openai", Provider(200, body, sse=True))
    assert caught.value.kind is K.SERVER_ERROR


async def test_anthropic_error_event_is_classified_and_redacted() -> None:
    body = sse(
        (
            "error",
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": f"Overloaded {SECRET}"},
            },
        ),
    )
    with pytest.raises(ProviderError) as caught:
        await stream("anthropic", Provider(200, body, sse=True))
    assert caught.value.kind is K.SERVER_ERROR
    assert SECRET not in caught.value.message


async def test_ollama_error_line_is_classified_and_redacted() -> None:
    body = (
        b'{"model":"llama3.2","created_at":"2024-07-22T20:33:28.123Z",'
        b'"message":{"role":"assistant","content":"The"},"done":false}\n'
        b'{"error":"an error was encountered while running the model: unexpected EOF '
        + SECRET.encode()
        + b'"}\n'
    )
    with pytest.raises(ProviderError) as caught:
        await stream("ollama", Provider(200, body))
    assert caught.value.kind is K.SERVER_ERROR
    assert SECRET not in caught.value.message
