"""A small gateway config for the operations tests: two simulated providers that never fail on
their own (faults are injected), answer fast, and have prices, one per level."""

from __future__ import annotations

from typing import Any

from actors.config import Config, parse_config


def ops_config(*, latency_ms: float = 30, **gateway: Any) -> Config:
    """`alpha` (gpt-4o) on the primary level, `beta` (claude-sonnet) on the secondary one."""
    provider = {"kind": "simulated", "latency_ms": latency_ms, "error_rate": 0.0}
    data: dict[str, Any] = {
        "providers": [
            {"name": "alpha", "models": ["gpt-4o"], "seed": 1, **provider},
            {"name": "beta", "models": ["claude-sonnet"], "seed": 2, **provider},
        ],
        "levels": [
            {"name": "primary", "providers": ["alpha"], "timeout_s": 30},
            {"name": "secondary", "providers": ["beta"], "timeout_s": 30},
        ],
        "supervision": {"shutdown_grace_s": 2.0},
    }
    if gateway:
        data["gateway"] = gateway
    return parse_config(data, source="ops-test")
