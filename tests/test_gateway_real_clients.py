"""The gateway with the official openai SDK as its client, in front of HTTP providers on the fake
provider server: the sync client (in a worker thread), fallback in the headers, a stream that
fails mid-way, and the statuses of a request nobody could answer. Real sockets on loopback, real
time: wide timeouts, and no wait in a test is for something that should not happen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import runtime
from actors.faults import Fault, FaultKind
from runtime.gateway import GatewayServer, open_gateway
from runtime.testing import FakeProviderServer

openai = pytest.importorskip("openai")

KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-0123456789abcdef",
    "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
}
ASK = [{"role": "user", "content": "What is the VAT rate on books?"}]
#: Level `primary` is the OpenAI-kind provider, `secondary` the Anthropic-kind one.
LEVELS = [
    ("primary", "openai", "openai", "gpt-4o"),
    ("secondary", "anthropic", "anthropic", "claude-sonnet-4"),
]


def http_providers(
    server: FakeProviderServer, levels: list[tuple[str, str, str, str]]
) -> runtime.Config:
    """One level per provider, each an HTTP provider on the fake server; breakers that stay
    closed, so every test sees its faults answered rather than short-circuited."""
    return runtime.parse_config(
        {
            "runtime": {"deadline_s": 60},
            "providers": [
                {
                    "name": name,
                    "kind": kind,
                    "models": [model],
                    "base_url": server.url_for(name),
                    "read_timeout_s": 30.0,
                    "breaker": {"consecutive_failures": 50, "minimum_calls": 100},
                }
                for _, name, kind, model in levels
            ],
            "levels": [
                {"name": level, "providers": [name], "timeout_s": 30}
                for level, name, _, _ in levels
            ],
        }
    )


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def gateway(keys: None, fake_providers: FakeProviderServer) -> AsyncIterator[GatewayServer]:
    async with open_gateway(http_providers(fake_providers, LEVELS)) as server:
        yield server


@pytest.fixture
async def lone_gateway(
    keys: None, fake_providers: FakeProviderServer
) -> AsyncIterator[GatewayServer]:
    """The OpenAI-kind provider alone: nothing to fall back to."""
    async with open_gateway(http_providers(fake_providers, LEVELS[:1])) as server:
        yield server


def async_client(server: GatewayServer) -> Any:
    return openai.AsyncOpenAI(
        base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60
    )


async def test_the_sync_client_gets_replies_and_streams(gateway: GatewayServer) -> None:
    def use_sync_client() -> tuple[Any, Any, str]:
        with openai.OpenAI(
            base_url=gateway.base_url + "/v1", api_key="unused", max_retries=0, timeout=60
        ) as sdk:
            raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=ASK)
            stream = sdk.chat.completions.create(model="gpt-4o", messages=ASK, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            return raw.headers, raw.parse(), text

    headers, completion, streamed = await trio.to_thread.run_sync(use_sync_client)
    assert completion.choices[0].message.content == "echo: What is the VAT rate on books?"
    assert headers["x-uptax-provider"] == "openai" and headers["x-uptax-fallback"] == "false"
    assert headers["x-request-id"] == completion.id
    assert streamed == completion.choices[0].message.content


async def test_a_fallback_shows_in_the_headers(
    gateway: GatewayServer, fake_providers: FakeProviderServer
) -> None:
    fake_providers.target("openai").inject(Fault(FaultKind.OUTAGE, status=503))
    raw = await async_client(gateway).chat.completions.with_raw_response.create(
        model="uptax/auto", messages=ASK
    )
    assert raw.parse().choices[0].message.content == "echo: What is the VAT rate on books?"
    assert raw.headers["x-uptax-fallback"] == "true"
    assert raw.headers["x-uptax-provider"] == "anthropic"
    assert raw.headers["x-uptax-level"] == "secondary"
    assert raw.headers["x-uptax-model"] == "claude-sonnet-4"
    assert int(raw.headers["x-uptax-attempts"]) == 2
    assert len(fake_providers.requests("openai")) == 1


@pytest.mark.parametrize("fault", [FaultKind.STREAM_ERROR, FaultKind.DROP_STREAM])
async def test_a_stream_that_fails_after_its_first_event_ends_in_an_error_the_sdk_raises(
    lone_gateway: GatewayServer, fake_providers: FakeProviderServer, fault: FaultKind
) -> None:
    fake_providers.target("openai").inject(Fault(fault, after_chunks=2))
    stream = await async_client(lone_gateway).chat.completions.create(
        model="gpt-4o", messages=ASK, stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "echo: What "  # the two chunks that came before the failure
    assert not isinstance(raised.value, openai.APIStatusError)  # in-band, after the 200
    assert raised.value.body is not None


async def test_when_every_level_failed_the_sdk_raises_a_502(
    gateway: GatewayServer, fake_providers: FakeProviderServer
) -> None:
    for name in ("openai", "anthropic"):
        fake_providers.target(name).inject(Fault(FaultKind.OUTAGE, status=500))
    with pytest.raises(openai.InternalServerError) as raised:
        await async_client(gateway).chat.completions.create(model="uptax/auto", messages=ASK)
    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-request-id"].startswith("chatcmpl-")
    assert "no provider could answer" in raised.value.message
    assert KEYS["OPENAI_API_KEY"] not in raised.value.message


async def test_when_the_deadline_passed_the_sdk_raises_a_504(
    gateway: GatewayServer, fake_providers: FakeProviderServer
) -> None:
    for name in ("openai", "anthropic"):
        fake_providers.set_latency(name, 30.0)
    sdk = async_client(gateway)
    with trio.fail_after(20), pytest.raises(openai.APIStatusError) as raised:
        await sdk.chat.completions.create(
            model="uptax/auto", messages=ASK, extra_headers={"x-uptax-deadline-s": "0.5"}
        )
    assert isinstance(raised.value, openai.InternalServerError)
    assert raised.value.status_code == 504
    assert "deadline" in raised.value.message
