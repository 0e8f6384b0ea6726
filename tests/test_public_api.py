"""The public API exactly as the README and the issue write it: names are a contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cattrs
import pytest

import runtime

CONFIG = """
[runtime]
deadline_s = 60

[[providers]]
name = "openai"
kind = "simulated"
models = ["gpt-4o"]
latency_ms = 200

[[providers]]
name = "gemini"
kind = "simulated"
models = ["gemini-pro"]
latency_ms = 100

[[levels]]
name = "primary"
providers = ["openai"]
timeout_s = 30

[[levels]]
name = "secondary"
providers = ["gemini"]
timeout_s = 45

[models.gpt-4o]
input_usd_per_mtok = 2.5
output_usd_per_mtok = 10.0
"""


async def test_the_documented_embedding_works_as_written(
    tmp_path: Path, autojump_clock: Any
) -> None:
    path = tmp_path / "uptax.toml"
    path.write_text(CONFIG)
    config = runtime.load_config(str(path))
    async with runtime.open_runtime(config) as rt:
        assert isinstance(rt, runtime.Runtime)
        reply = await rt.complete(
            runtime.Request(
                prompt="...",
                complexity="moderate",
                quality="production",
                budget_usd=0.05,
                max_tokens=500,
                temperature=0.7,
            )
        )
        assert isinstance(reply.text, str) and reply.text
        assert (reply.provider, reply.model, reply.level) == ("openai", "gpt-4o", "primary")
        assert reply.fallback_used is False
        assert [a.outcome for a in reply.attempts] == ["ok"]
        assert reply.latency_ms > 0
        assert reply.cost_usd > 0
        snapshot = rt.status()
        assert isinstance(snapshot, runtime.RuntimeStatus)
        json.dumps(cattrs.unstructure(snapshot))

        # Enums are accepted as well as strings.
        reply = await rt.complete(
            runtime.Request(
                prompt="x", complexity=runtime.Complexity.EPIC, quality=runtime.Quality.CRITICAL
            )
        )
        assert reply.text


async def test_all_levels_failed_lists_every_attempt(tmp_path: Path, autojump_clock: Any) -> None:
    from actors.faults import Fault, FaultKind

    config = runtime.parse_config(
        {
            "providers": [
                {"name": "a", "kind": "simulated", "models": ["m"]},
                {"name": "b", "kind": "simulated", "models": ["m"]},
            ],
            "levels": [
                {"name": "primary", "providers": ["a"], "timeout_s": 1},
                {"name": "secondary", "providers": ["b"], "timeout_s": 1},
            ],
        }
    )
    async with runtime.open_runtime(config) as rt:
        rt.inject_fault("a", Fault(FaultKind.OUTAGE))
        rt.inject_fault("b", Fault(FaultKind.HANG))
        with pytest.raises(runtime.AllLevelsFailed) as failed:
            await rt.complete(runtime.Request(prompt="x"))
    assert isinstance(failed.value, runtime.FallbackError)
    assert [(a.provider, a.level, a.outcome) for a in failed.value.attempts] == [
        ("a", "primary", "server_error"),
        ("b", "secondary", "timeout"),
    ]


def test_a_bad_config_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "uptax.toml"
    path.write_text(CONFIG.replace("latency_ms = 200", 'latency_ms = "slow"'))
    with pytest.raises(runtime.ConfigError) as error:
        runtime.load_config(path)
    assert str(error.value) == f"{path}: providers[0].latency_ms: 'slow' is not a number"


def test_the_chat_api_names_are_as_the_issue_pins_them() -> None:
    import attrs

    request_fields = {field.name for field in attrs.fields(runtime.Request)}
    assert {
        "prompt", "system", "messages", "tools", "tool_choice", "parallel_tool_calls",
        "response_format", "stop", "top_p", "seed", "presence_penalty", "frequency_penalty",
        "user", "metadata", "model", "models",
    } <= request_fields
    reply_fields = {field.name for field in attrs.fields(runtime.Reply)}
    assert {"text", "finish_reason", "raw_finish_reason", "usage", "tool_calls"} <= reply_fields
    assert isinstance(runtime.Reply.message, property)
    usage_fields = {field.name for field in attrs.fields(runtime.Usage)}
    assert {"input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"} <= usage_fields
    for name in (
        "Message", "TextPart", "ImagePart", "Tool", "ToolCall", "ToolChoice", "ResponseFormat",
        "TextDelta", "ToolCallDelta", "ReplyDone", "ModelNotOffered",
    ):
        assert name in runtime.__all__ and hasattr(runtime, name), name
