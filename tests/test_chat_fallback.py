"""A conversation with tools survives a fallback: begun on an OpenAI-kind provider, finished by an
Anthropic-kind or a Gemini-kind one, with the same `Reply` shape and the tool-call ids kept.

Real wire formats against the fake provider server on loopback (real time, wide timeouts).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import runtime
from actors.chat import Message
from actors.faults import Fault, FaultKind
from runtime.embed import Runtime, open_runtime
from runtime.testing import FakeProviderServer

KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-0123456789abcdef",
    "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
    "GEMINI_API_KEY": "AIzaTest0123456789abcdefghijkl",
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Local time in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
]
QUESTION = "get_weather Paris and get_time Paris, please"


def chat_config(server: FakeProviderServer) -> runtime.Config:
    providers = [
        ("openai", "openai", "gpt-4o"),
        ("anthropic", "anthropic", "claude-sonnet-4"),
        ("gemini", "gemini", "gemini-2.5-pro"),
        ("ollama", "ollama", "llama3.1"),
    ]
    return runtime.parse_config(
        {
            "runtime": {"deadline_s": 60},
            "providers": [
                {
                    "name": name,
                    "kind": kind,
                    "models": [model],
                    "base_url": server.url_for(name),
                    "read_timeout_s": 10.0,
                    "breaker": {"consecutive_failures": 50, "minimum_calls": 100},
                }
                for name, kind, model in providers
            ],
            "levels": [
                {"name": "primary", "providers": ["openai", "anthropic"], "timeout_s": 20},
                {"name": "secondary", "providers": ["gemini"], "timeout_s": 20},
                {"name": "emergency", "providers": ["ollama"], "timeout_s": 20},
            ],
        }
    )


@pytest.fixture
async def rt(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    async with open_runtime(chat_config(fake_providers)) as runtime_:
        yield runtime_


def continued(first: runtime.Reply) -> runtime.Request:
    """The conversation after `first`'s tool calls, with their results."""
    results = {"get_weather": "sunny, 21C", "get_time": "14:05"}
    return runtime.Request(
        messages=[
            Message("user", QUESTION),
            first.message,
            *(Message("tool", results[c.name], tool_call_id=c.id) for c in first.tool_calls),
        ],
        tools=TOOLS,
    )


def shape(reply: runtime.Reply) -> tuple[Any, ...]:
    """What must not depend on the provider that answered."""
    return (
        reply.text,
        reply.finish_reason,
        [(c.name, c.args) for c in reply.tool_calls],
        type(reply.message),
    )


async def test_two_tool_calls_begun_on_openai_are_finished_by_anthropic_and_by_gemini(
    rt: Runtime, fake_providers: FakeProviderServer
) -> None:
    first = await rt.complete(runtime.Request(messages=[Message("user", QUESTION)], tools=TOOLS))
    assert first.provider == "openai" and first.finish_reason == "tool_calls"
    assert [(c.name, c.args) for c in first.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"city": "Paris"}),
    ]
    fake_providers.target("openai").inject(Fault(FaultKind.OUTAGE))
    by_anthropic = await rt.complete(continued(first))
    fake_providers.target("anthropic").inject(Fault(FaultKind.OUTAGE))
    by_gemini = await rt.complete(continued(first))

    assert (by_anthropic.provider, by_gemini.provider) == ("anthropic", "gemini")
    assert by_anthropic.fallback_used and by_gemini.fallback_used
    assert shape(by_anthropic) == shape(by_gemini) == (
        "results: sunny, 21C 14:05", "stop", [], Message
    )
    # Anthropic got OpenAI's ids on its tool_use and tool_result blocks; Gemini, which has no
    # ids, got each result under the name of the function that was called.
    sent = json.loads(fake_providers.requests("anthropic")[-1].body)
    blocks = [b for m in sent["messages"] for b in m["content"] if isinstance(b, dict)]
    ids = [c.id for c in first.tool_calls]
    assert [b["id"] for b in blocks if b["type"] == "tool_use"] == ids
    assert [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"] == ids
    sent = json.loads(fake_providers.requests("gemini")[-1].body)
    parts = [p for c in sent["contents"] for p in c["parts"]]
    assert [p["functionResponse"]["name"] for p in parts if "functionResponse" in p] == [
        "get_weather",
        "get_time",
    ]


async def test_a_tool_call_reply_has_one_shape_whichever_provider_answers(
    rt: Runtime, fake_providers: FakeProviderServer
) -> None:
    request = runtime.Request(messages=[Message("user", QUESTION)], tools=TOOLS)
    shapes, providers = [], []
    for down in [None, "openai", "anthropic", "gemini"]:
        if down is not None:
            fake_providers.target(down).inject(Fault(FaultKind.OUTAGE))
        reply = await rt.complete(request)
        providers.append(reply.provider)
        shapes.append(shape(reply))
        assert all(call.id for call in reply.tool_calls)
    assert providers == ["openai", "anthropic", "gemini", "ollama"]
    assert all(s == shapes[0] for s in shapes), shapes


async def test_a_streamed_continuation_falls_back_before_its_first_event(
    rt: Runtime, fake_providers: FakeProviderServer
) -> None:
    first = await rt.complete(runtime.Request(messages=[Message("user", QUESTION)], tools=TOOLS))
    fake_providers.target("openai").inject(Fault(FaultKind.OUTAGE))
    async with rt.stream(continued(first)) as stream:
        events = [event async for event in stream.events()]
    done = events[-1]
    assert isinstance(done, runtime.ReplyDone)
    assert done.reply.provider == "anthropic"
    assert "".join(e.text for e in events if isinstance(e, runtime.TextDelta)) == done.reply.text
    assert done.reply.text == "results: sunny, 21C 14:05"
