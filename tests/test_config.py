"""Config loading: the shipped demo config loads, and every bad value names its field."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from support import BASE, make_config

import runtime
from runtime.demo import default_config_path


def test_demo_config_loads_with_the_seed_levels() -> None:
    config = runtime.load_config(default_config_path())
    assert [level.name for level in config.levels] == [
        "primary",
        "secondary",
        "emergency",
        "last_resort",
    ]
    assert [level.timeout_s for level in config.levels] == [30, 45, 60, 5]
    assert {p.name for p in config.providers} >= {
        "openai",
        "anthropic",
        "gemini",
        "mistral",
        "huggingface",
        "local",
    }
    assert config.routing.weights.reliability == 0.5


def _bad(**changes: Any) -> str:
    with pytest.raises(runtime.ConfigError) as error:
        make_config(**changes)
    return str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"providers": {"openai": {"latency_ms": "fast"}}},
            "providers[0].latency_ms: 'fast' is not a number",
        ),
        ({"providers": {"openai": {"latncy_ms": 5}}}, "providers[0]: unknown key(s) latncy_ms"),
        ({"providers": {"openai": {"kind": "bogus"}}}, "kind='bogus' is not one of"),
        ({"providers": {"openai": {"error_rate": 1.5}}}, "error_rate=1.5 must be between 0 and 1"),
        (
            {"providers": {"openai": {"breaker": {"open_s": -1}}}},
            "providers[0].breaker: open_s=-1.0 must be > 0",
        ),
        ({"runtime": {"deadline_s": 0}}, "runtime: deadline_s=0.0 must be > 0"),
        ({"supervision": {"max_restarts": "5"}}, "supervision.max_restarts: '5' is not an integer"),
    ],
)
def test_bad_values_name_the_field_and_value(changes: dict[str, Any], message: str) -> None:
    assert message in _bad(**changes)


def test_level_naming_an_unknown_provider() -> None:
    levels = [{"name": "primary", "providers": ["openia"], "timeout_s": 30}]
    assert "levels[0].providers: 'openia' is not a configured provider" in _bad(levels=levels)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(runtime.ConfigError, match="cannot read config"):
        runtime.load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[providers]\nname=")
    with pytest.raises(runtime.ConfigError, match="not valid TOML"):
        runtime.load_config(bad)


def test_duplicate_provider_names() -> None:
    data = copy.deepcopy(BASE)
    data["providers"].append({"name": "openai", "kind": "cache"})
    with pytest.raises(
        runtime.ConfigError, match=re.escape("providers[6].name: 'openai' is defined twice")
    ):
        runtime.parse_config(data)


def test_request_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="complexity='hard' is not one of: trivial"):
        runtime.Request(prompt="x", complexity="hard")
    with pytest.raises(ValueError, match="max_tokens=0 must be a positive integer"):
        runtime.Request(prompt="x", max_tokens=0)
    request = runtime.Request(prompt="x", complexity="EXPERT", quality=runtime.Quality.CRITICAL)
    assert request.complexity is runtime.Complexity.EXPERT
