"""The official SDKs as referees: what the fake server answers must make the openai and anthropic
packages raise the error class they raise for the real API, so the fake tests what matters.

Real sockets on loopback; the SDKs run on trio through httpx / anyio, with retries off.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.faults import Fault, FaultKind
from runtime.testing import FakeProviderServer

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

USER = [{"role": "user", "content": "tell me a story"}]


def openai_client(server: FakeProviderServer) -> Any:
    return openai.AsyncOpenAI(
        base_url=server.url_for("openai"), api_key="sk-test-openai", max_retries=0
    )


def anthropic_client(server: FakeProviderServer, **auth: str) -> Any:
    auth = auth or {"api_key": "sk-ant-test"}
    return anthropic.AsyncAnthropic(base_url=server.url_for("anthropic"), max_retries=0, **auth)


async def test_openai_sdk_max_tokens_on_a_reasoning_model(
    fake_providers: FakeProviderServer,
) -> None:
    client = openai_client(fake_providers)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="o3-mini", messages=USER, max_tokens=5)
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", "max_tokens")
    reply = await client.chat.completions.create(
        model="o3-mini", messages=USER, max_completion_tokens=3
    )
    assert reply.choices[0].finish_reason == "length"
    await client.close()


async def test_openai_sdk_system_message_on_o1_mini(fake_providers: FakeProviderServer) -> None:
    client = openai_client(fake_providers)
    messages = [{"role": "system", "content": "be brief"}, *USER]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="o1-mini", messages=messages)
    assert (caught.value.code, caught.value.param) == ("unsupported_value", "messages[0].role")
    await client.close()


async def test_openai_sdk_in_band_stream_error(fake_providers: FakeProviderServer) -> None:
    fake_providers.target("openai").inject(Fault(FaultKind.STREAM_ERROR, after_chunks=2))
    client = openai_client(fake_providers)
    texts: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        stream = await client.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
        async for chunk in stream:
            texts.extend(choice.delta.content or "" for choice in chunk.choices)
    assert "".join(texts) == "echo: tell "
    assert "The server had an error" in caught.value.message
    await client.close()


async def test_anthropic_sdk_temperature_above_one(fake_providers: FakeProviderServer) -> None:
    client = anthropic_client(fake_providers)
    with pytest.raises(anthropic.BadRequestError) as caught:
        # Sent as a raw body field: the SDK's own parameter set changes between versions.
        await client.messages.create(
            model="claude-sonnet", max_tokens=50, messages=USER, extra_body={"temperature": 1.5}
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "temperature" in caught.value.message
    await client.close()


async def test_anthropic_sdk_bearer_token(fake_providers: FakeProviderServer) -> None:
    fake_providers.expect_key("anthropic", "sk-ant-oauth-token")
    client = anthropic_client(fake_providers, auth_token="sk-ant-oauth-token")
    reply = await client.messages.create(model="claude-sonnet", max_tokens=50, messages=USER)
    assert reply.content[0].text == "echo: tell me a story"
    (sent,) = fake_providers.requests("anthropic")
    assert sent.headers["authorization"] == "Bearer sk-ant-oauth-token"
    await client.close()
    wrong = anthropic_client(fake_providers, auth_token="sk-ant-wrong")
    with pytest.raises(anthropic.AuthenticationError):
        await wrong.messages.create(model="claude-sonnet", max_tokens=50, messages=USER)
    await wrong.close()


async def test_anthropic_sdk_in_band_overloaded_error(fake_providers: FakeProviderServer) -> None:
    fake_providers.target("anthropic").inject(Fault(FaultKind.STREAM_ERROR, after_chunks=2))
    client = anthropic_client(fake_providers)
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(
            model="claude-sonnet", max_tokens=50, messages=USER
        ) as stream:
            async for text in stream.text_stream:
                texts.append(text)
    assert "".join(texts) == "echo: tell "
    assert caught.value.body["error"]["type"] == "overloaded_error"
    await client.close()
