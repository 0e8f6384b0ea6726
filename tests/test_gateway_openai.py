"""The gateway's OpenAI-compatible API, with the official openai SDK as the client, on loopback
against the demo's simulated providers (real sockets, real time: wide timeouts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support import quick_demo_config

from runtime.gateway import GatewayServer, open_gateway

openai = pytest.importorskip("openai")


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayServer]:
    async with open_gateway(quick_demo_config()) as server:
        yield server


def client(server: GatewayServer) -> Any:
    return openai.AsyncOpenAI(
        base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60
    )


ASK = [{"role": "user", "content": "What is the VAT rate on books?"}]


async def test_a_completion_says_who_answered_in_its_headers(gateway: GatewayServer) -> None:
    raw = await client(gateway).chat.completions.with_raw_response.create(
        model="uptax/auto", messages=ASK
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    headers = raw.headers
    assert headers["x-request-id"] == completion.id
    assert headers["x-uptax-provider"] and headers["x-uptax-level"] == "primary"
    assert headers["x-uptax-model"] == completion.model
    assert headers["x-uptax-fallback"] in ("true", "false")
    assert int(headers["x-uptax-attempts"]) >= 1 and float(headers["x-uptax-cost-usd"]) > 0


async def test_a_pinned_model_is_routed_to_it_and_streams_with_usage(
    gateway: GatewayServer,
) -> None:
    stream = await client(gateway).chat.completions.create(
        model="claude-sonnet",
        messages=ASK,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("[anthropic/claude-sonnet]")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length")


async def test_tools_come_back_as_tool_calls(gateway: GatewayServer) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    completion = await client(gateway).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "get_weather Paris"}],
        tools=[tool],
    )
    calls = completion.choices[0].message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("get_weather", '{"city": "Paris"}')
    ]
    assert completion.choices[0].finish_reason == "tool_calls"


async def test_errors_are_the_sdk_s_typed_exceptions(gateway: GatewayServer) -> None:
    sdk = client(gateway)
    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        await sdk.chat.completions.create(model="gpt-9", messages=ASK)
    with pytest.raises(openai.BadRequestError) as bad:
        await sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "robot", "content": "x"}]
        )
    assert "messages[0].role" in str(bad.value)
    with pytest.raises(openai.BadRequestError, match="x-uptax-budget-usd"):
        await sdk.chat.completions.create(
            model="gpt-4o", messages=ASK, extra_headers={"x-uptax-budget-usd": "lots"}
        )


async def test_bodies_over_the_limit_and_bad_json_are_refused(gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http:
        too_big = await http.post(
            "/v1/chat/completions", content=b"x" * (4 * 1024 * 1024 + 1)
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["type"] == "invalid_request_error"
        broken = await http.post("/v1/chat/completions", content=b"{not json")
        assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
        models = await http.get("/v1/models")
        ids = [m["id"] for m in models.json()["data"]]
        assert "gpt-4o" in ids and "uptax/critical" in ids
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).json() == {"status": "ready"}
