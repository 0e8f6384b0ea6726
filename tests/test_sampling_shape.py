"""Sampling parameters a model does not take are left out of what is sent, and the plan says so:
OpenAI's reasoning models refuse top_p and the penalties as they refuse a temperature."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from adapter_support import body_of, build, ok_reply, set_keys

import runtime
from actors.config import ModelInfo, parse_config
from actors.ranking import Ranker

SAMPLED: dict[str, Any] = {"top_p": 0.5, "presence_penalty": 0.25, "frequency_penalty": -0.5}


async def sent_body(model: str, models: dict[str, ModelInfo] | None = None) -> Any:
    seen: list[Any] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        seen.append(body_of(request))
        return httpx.Response(200, json=ok_reply("openai", "hi"))

    adapter = build("openai", answer, model=model, models=models)
    try:
        await adapter.complete(runtime.Request(prompt="hi", seed=7, **SAMPLED), model)
    finally:
        await adapter.aclose()
    return seen[0]


async def test_a_reasoning_model_gets_no_top_p_or_penalties(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_keys(monkeypatch)
    body = await sent_body("o3-mini")
    assert not {"temperature", *SAMPLED} & set(body)
    assert body["seed"] == 7  # a hint the model may ignore, not a sampling parameter
    body = await sent_body("gpt-4o")
    assert {key: body[key] for key in SAMPLED} == SAMPLED and body["temperature"] == 0.7


async def test_the_model_table_says_which_sampling_parameters_a_model_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_keys(monkeypatch)
    body = await sent_body("house-model", {"house-model": ModelInfo(sampling=("top_p",))})
    assert body["top_p"] == 0.5
    assert not {"temperature", "presence_penalty", "frequency_penalty"} & set(body)


def test_the_plan_notes_what_the_model_leaves_out() -> None:
    config = parse_config(
        {
            "providers": [{"name": "openai", "kind": "openai", "models": ["o3-mini"]}],
            "levels": [{"name": "primary", "providers": ["openai"]}],
            "models": {"o3-mini": {"sampling": ["temperature", "top_p"]}},
        }
    )
    ranker = Ranker(config)
    request = runtime.Request(prompt="hi", **SAMPLED)
    plan = ranker.plan(request, config.levels, {}, 0.0)
    assert "o3-mini takes no presence_penalty, frequency_penalty" in "\n".join(plan.explain())
    plain = ranker.plan(runtime.Request(prompt="hi"), config.levels, {}, 0.0)
    assert "takes no" not in "\n".join(plain.explain())


def test_an_unknown_sampling_parameter_is_refused_naming_the_field() -> None:
    refused = r"models\[o3\]\.sampling\[0\]: 'seed' is not one of"
    with pytest.raises(runtime.ConfigError, match=refused):
        parse_config(
            {
                "providers": [{"name": "openai", "kind": "openai", "models": ["o3"]}],
                "levels": [{"name": "primary", "providers": ["openai"]}],
                "models": {"o3": {"sampling": ["seed"]}},
            }
        )
