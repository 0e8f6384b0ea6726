"""Shared fixtures: small configs of simulated providers."""

from __future__ import annotations

import copy
import tomllib
from typing import Any, TypeVar

import trio

import runtime
from actors.config import Config, parse_config
from actors.messages import BreakerSnapshot, BreakerState, HealthStatus, ProviderSnapshot
from runtime.demo import default_config_path

BASE: dict[str, Any] = {
    "runtime": {"deadline_s": 120, "heartbeat_interval_s": 1.0},
    "providers": [
        {
            "name": "openai",
            "kind": "simulated",
            "models": ["gpt-4o", "gpt-4o-mini"],
            "latency_ms": 100,
            "seed": 1,
        },
        {
            "name": "anthropic",
            "kind": "simulated",
            "models": ["claude-sonnet", "claude-haiku"],
            "latency_ms": 120,
            "seed": 2,
        },
        {
            "name": "gemini",
            "kind": "simulated",
            "models": ["gemini-pro", "gemini-flash"],
            "latency_ms": 80,
            "seed": 3,
        },
        {"name": "local", "kind": "simulated", "models": ["llama3"], "latency_ms": 300, "seed": 4},
        {"name": "cache", "kind": "cache"},
        {"name": "templates", "kind": "template"},
    ],
    "levels": [
        {"name": "primary", "providers": ["openai", "anthropic"], "timeout_s": 30},
        {"name": "secondary", "providers": ["gemini"], "timeout_s": 45},
        {"name": "emergency", "providers": ["local"], "timeout_s": 60},
        {"name": "last_resort", "providers": ["cache", "templates"], "timeout_s": 5},
    ],
    "models": {
        "gpt-4o": {"input_usd_per_mtok": 2.5, "output_usd_per_mtok": 10.0},
        "gpt-4o-mini": {"input_usd_per_mtok": 0.15, "output_usd_per_mtok": 0.6},
        "claude-sonnet": {"input_usd_per_mtok": 3.0, "output_usd_per_mtok": 15.0},
        "claude-haiku": {"input_usd_per_mtok": 0.8, "output_usd_per_mtok": 4.0},
        "gemini-pro": {"input_usd_per_mtok": 1.25, "output_usd_per_mtok": 5.0},
        "gemini-flash": {"input_usd_per_mtok": 0.075, "output_usd_per_mtok": 0.3},
        "llama3": {},
    },
    "templates": [{"name": "busy", "text": "busy, try later", "contains": "hello"}],
}


def make_config(**changes: Any) -> Config:
    """The base config with top-level tables replaced and providers patched by name:
    ``make_config(providers={"openai": {"error_rate": 1.0}})``."""
    data = copy.deepcopy(BASE)
    patches = changes.pop("providers", {})
    for provider in data["providers"]:
        provider.update(patches.get(provider["name"], {}))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return runtime.parse_config(data)


def quick_demo_config() -> Config:
    """The shipped demo config with its simulated providers answering in about 20 ms instead of
    a second or more: what tests of the gateway's shapes need, without the demo's waits."""
    data = tomllib.loads(default_config_path().read_text(encoding="utf-8"))
    for provider in data["providers"]:
        if provider.get("kind") == "simulated":
            provider["latency_ms"] = 20
    return parse_config(data, source="demo.toml (quick)")


def snap(
    provider: str,
    *,
    latency_ms: float = 100.0,
    error_rate: float = 0.0,
    quota: float = 1.0,
    state: BreakerState = BreakerState.CLOSED,
    open_until: float | None = None,
    available: bool = True,
    reason: str = "",
    retry_after_until: float | None = None,
) -> ProviderSnapshot:
    """A provider's heartbeat as the router sees it: healthy and closed unless told."""
    breaker = BreakerSnapshot(
        state=state,
        failure_rate=error_rate,
        slow_call_rate=0.0,
        calls_in_window=10,
        consecutive_failures=0,
        trips=1 if state is BreakerState.OPEN else 0,
        open_until=open_until,
        half_open_probes_left=2 if state is BreakerState.HALF_OPEN else 0,
    )
    return ProviderSnapshot(
        provider=provider,
        kind="simulated",
        models=(),
        at=0.0,
        status=HealthStatus.HEALTHY,
        breaker=breaker,
        latency_ms=latency_ms,
        latency_p50_ms=latency_ms,
        latency_p95_ms=latency_ms,
        error_rate=error_rate,
        quota_remaining=quota,
        consecutive_failures=0,
        last_check=0.0,
        available=available,
        reason=reason,
        retry_after_until=retry_after_until,
    )


#: A model of each HTTP kind the fake provider server speaks, as its adapter tests ask for it.
FAKE_SERVER_MODELS = {
    "openai": "gpt-4o-mini",
    "mistral": "mistral-small-latest",
    "huggingface": "meta-llama/Llama-3.1-8B-Instruct",
    "anthropic": "claude-3-5-haiku-latest",
    "gemini": "gemini-2.0-flash",
    "ollama": "llama3.2",
}


T = TypeVar("T")


def drain(channel: trio.MemoryReceiveChannel[T]) -> list[T]:
    """What `channel` holds now (an event bus subscription, say), without waiting."""
    received = []
    while True:
        try:
            received.append(channel.receive_nowait())
        except trio.WouldBlock:
            return received
