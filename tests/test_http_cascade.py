"""Real wire protocols through the whole cascade, against the fake provider server on loopback.

Real time (sockets): every wait is on a reply, not a sleep. The level timeouts are wide for a
slow, busy machine (a 20 ms call can take seconds there): only a `hang` is meant to reach one,
and it waits out the primary's 5 s.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
import trio

import runtime
from actors.faults import Fault, FaultKind
from runtime.embed import Runtime, open_runtime
from runtime.logs import configure_logging
from runtime.testing import FakeProviderServer

KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-0123456789abcdef",
    "ANTHROPIC_API_KEY": "sk-ant-test-0123456789abcdef",
    "GEMINI_API_KEY": "AIzaTest0123456789abcdefghijkl",
}


def http_config(server: FakeProviderServer, **level_changes: Any) -> runtime.Config:
    providers = [
        ("openai", "openai", ["gpt-4o-mini", "gpt-4o"]),
        ("anthropic", "anthropic", ["claude-sonnet"]),
        ("gemini", "gemini", ["gemini-pro"]),
        ("ollama", "ollama", ["llama3"]),
    ]
    return runtime.parse_config(
        {
            "runtime": {"deadline_s": 40},
            "providers": [
                {
                    "name": name,
                    "kind": kind,
                    "models": models,
                    "base_url": server.url_for(name),
                    "read_timeout_s": 5.0,
                    "breaker": {"consecutive_failures": 50, "minimum_calls": 100},
                }
                for name, kind, models in providers
            ]
            + [{"name": "cache", "kind": "cache"}],
            "levels": [
                {
                    "name": "primary",
                    "providers": ["openai", "anthropic"],
                    "timeout_s": 5,
                    **level_changes,
                },
                {"name": "secondary", "providers": ["gemini"], "timeout_s": 10},
                {"name": "emergency", "providers": ["ollama"], "timeout_s": 10},
                {"name": "last_resort", "providers": ["cache"], "timeout_s": 5},
            ],
            "models": {
                "gpt-4o-mini": {
                    "context_window": 8000,
                    "input_usd_per_mtok": 0.15,
                    "output_usd_per_mtok": 0.6,
                },
                "gpt-4o": {
                    "context_window": 128000,
                    "input_usd_per_mtok": 2.5,
                    "output_usd_per_mtok": 10,
                },
                "claude-sonnet": {
                    "context_window": 200000,
                    "input_usd_per_mtok": 3,
                    "output_usd_per_mtok": 15,
                },
                "gemini-pro": {"input_usd_per_mtok": 1.25, "output_usd_per_mtok": 5},
                "llama3": {},
            },
        }
    )


@pytest.fixture
async def rt(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    async with open_runtime(http_config(fake_providers)) as runtime_:
        yield runtime_


REQUEST = runtime.Request(
    prompt="what is the capital of France", complexity="simple", max_tokens=50
)


async def test_each_protocol_answers_through_the_cascade(
    rt: Runtime, fake_providers: FakeProviderServer
) -> None:
    reply = await rt.complete(REQUEST)
    assert (reply.provider, reply.level, reply.model) == ("openai", "primary", "gpt-4o-mini")
    assert reply.usage.output_tokens > 0
    assert reply.cost_usd > 0
    sent = fake_providers.requests("openai")[-1]
    assert sent.headers["authorization"] == f"Bearer {KEYS['OPENAI_API_KEY']}"
    for down, expected in [("openai", "anthropic"), ("anthropic", "gemini"), ("gemini", "ollama")]:
        fake_providers.target(down).inject(Fault(FaultKind.OUTAGE))
        reply = await rt.complete(REQUEST)
        assert reply.provider == expected
        assert reply.text
        assert reply.fallback_used


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Fault(FaultKind.OUTAGE, status=500), "server_error"),
        (Fault(FaultKind.OUTAGE, status=502), "server_error"),
        (Fault(FaultKind.OUTAGE, status=503), "server_error"),
        (Fault(FaultKind.OUTAGE, status=504), "server_error"),
        (Fault(FaultKind.OUTAGE, status=529), "server_error"),
        (Fault(FaultKind.RATE_LIMIT, retry_after_s=30), "rate_limited"),
        # OpenAI's quota body is `insufficient_quota`: a spent account (issue 8 item 3).
        (Fault(FaultKind.QUOTA, retry_after_s=30), "billing"),
        (Fault(FaultKind.MALFORMED), "malformed"),
        (Fault(FaultKind.HANG), "timeout"),
    ],
)
async def test_every_provider_failure_falls_back(
    rt: Runtime, fake_providers: FakeProviderServer, fault: Fault, outcome: str
) -> None:
    fake_providers.target("openai").inject(fault)
    reply = await rt.complete(REQUEST)
    # A hung call holds its level until the level's deadline; then the next level answers.
    answered_by = "gemini" if outcome == "timeout" else "anthropic"
    assert [(a.provider, a.outcome) for a in reply.attempts] == [
        ("openai", outcome),
        (answered_by, "ok"),
    ]


async def test_retry_after_keeps_the_provider_out_until_then(
    rt: Runtime, fake_providers: FakeProviderServer
) -> None:
    fake_providers.target("openai").inject(Fault(FaultKind.RATE_LIMIT, retry_after_s=30))
    await rt.complete(REQUEST)
    fake_providers.heal("openai")
    before = len(fake_providers.requests("openai"))
    reply = await rt.complete(REQUEST)
    assert reply.provider == "anthropic"
    assert [a.provider for a in reply.attempts] == ["anthropic"]  # skipped, not retried
    assert len(fake_providers.requests("openai")) == before
    snapshot = rt.snapshot("openai")
    assert snapshot.breaker.trips == 0  # a 429 is not a breaker trip
    assert snapshot.retry_after_until is not None


async def test_connection_refused_is_a_provider_failure(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    config = http_config(fake_providers)
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # nothing listens there now
    openai = config.providers[0]
    import attrs

    config = attrs.evolve(
        config,
        providers=(
            attrs.evolve(openai, base_url=f"http://127.0.0.1:{port}/v1"),
            *config.providers[1:],
        ),
    )
    async with open_runtime(config) as rt:
        reply = await rt.complete(REQUEST)
    assert [(a.provider, a.outcome) for a in reply.attempts] == [
        ("openai", "connection"),
        ("anthropic", "ok"),
    ]


async def test_context_too_long_moves_to_a_larger_model(
    rt: Runtime, fake_providers: FakeProviderServer
) -> None:
    fake_providers.set_context_limit("openai", 3, model="gpt-4o-mini")
    reply = await rt.complete(REQUEST)
    assert (reply.provider, reply.model) == ("openai", "gpt-4o")
    assert [(a.model, a.outcome) for a in reply.attempts] == [
        ("gpt-4o-mini", "context_too_long"),
        ("gpt-4o", "ok"),
    ]
    assert rt.snapshot("openai").breaker.calls_in_window == 1  # only the success counts


async def test_client_error_returns_at_once(
    rt: Runtime, fake_providers: FakeProviderServer
) -> None:
    fake_providers.respond_with(
        "openai",
        400,
        {"error": {"message": "Invalid value for 'temperature'", "type": "invalid_request_error"}},
    )
    with pytest.raises(runtime.RequestRejected) as rejected:
        await rt.complete(REQUEST)
    assert rejected.value.status == 400
    assert "temperature" in str(rejected.value)
    assert fake_providers.requests("anthropic") == ()


async def test_auth_failure_reports_unavailable_and_never_logs_the_key(
    rt: Runtime, fake_providers: FakeProviderServer
) -> None:
    fake_providers.expect_key("openai", "sk-a-different-key-0123456789")
    saved = structlog.get_config()
    out = io.StringIO()
    configure_logging("debug", stream=out)
    try:
        reply = await rt.complete(REQUEST)
        status = {p.name: p for p in rt.status().providers}
    finally:
        structlog.configure(**saved)
    assert reply.provider == "anthropic"
    assert reply.attempts[0].outcome == "auth"
    assert not status["openai"].available
    assert "OPENAI_API_KEY" in status["openai"].reason
    logs = out.getvalue()
    assert "event='provider_auth_failed'" in logs
    everything = logs + repr(status) + repr(reply)
    assert KEYS["OPENAI_API_KEY"] not in everything


async def test_missing_key_is_reported_unavailable(
    fake_providers: FakeProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEYS["ANTHROPIC_API_KEY"])
    monkeypatch.setenv("GEMINI_API_KEY", KEYS["GEMINI_API_KEY"])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with open_runtime(http_config(fake_providers)) as rt:
        reply = await rt.complete(REQUEST)
        openai = {p.name: p for p in rt.status().providers}["openai"]
        plan = "\n".join(rt.plan(REQUEST).explain())
    assert reply.provider == "anthropic"
    assert not openai.available
    assert openai.status == "offline"
    assert "OPENAI_API_KEY" in openai.reason
    assert "excluded openai" in plan
    assert fake_providers.requests("openai") == ()


async def test_stream_falls_back_before_the_first_chunk(
    rt: Runtime, fake_providers: FakeProviderServer
) -> None:
    fake_providers.target("openai").inject(Fault(FaultKind.OUTAGE, status=503))
    fake_providers.target("anthropic").inject(Fault(FaultKind.DROP_STREAM, after_chunks=0))
    pieces = []
    async with rt.stream(REQUEST) as chunks:
        async for text in chunks:
            pieces.append(text)
    assert chunks.reply is not None
    assert chunks.reply.provider == "gemini"
    assert "".join(pieces) == chunks.reply.text
    assert [a.outcome for a in chunks.reply.attempts] == ["server_error", "connection", "ok"]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini", "ollama"])
async def test_mid_stream_drop_raises_stream_interrupted(
    rt: Runtime, fake_providers: FakeProviderServer, provider: str
) -> None:
    for other in ("openai", "anthropic", "gemini"):
        if other == provider:
            break
        fake_providers.target(other).inject(Fault(FaultKind.OUTAGE))
    fake_providers.target(provider).inject(Fault(FaultKind.DROP_STREAM, after_chunks=2))
    pieces: list[str] = []
    with pytest.raises(runtime.StreamInterrupted) as interrupted:
        async with rt.stream(REQUEST) as chunks:
            async for text in chunks:
                pieces.append(text)
    assert interrupted.value.provider == provider
    assert interrupted.value.partial_text == "".join(pieces)
    assert pieces  # something was delivered, and not repeated
    assert len(pieces) == 2


async def test_restarted_provider_actor_closes_its_client(rt: Runtime) -> None:
    actor = rt.registry.cell("openai").actor
    client = actor.adapter.client  # type: ignore[union-attr]
    await rt.complete(REQUEST)
    await rt.restart("openai")
    assert client.is_closed
    new_client = rt.registry.cell("openai").actor.adapter.client  # type: ignore[union-attr]
    assert new_client is not client
    assert not new_client.is_closed
    reply = await rt.complete(REQUEST)
    assert reply.provider == "openai"
