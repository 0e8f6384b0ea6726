"""Capability-aware routing: the model table's capabilities, a request's needs, what each wire
format and last resort cannot carry, and how the ranker turns them into skips and exclusions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ranking import make_config, order, snap

from actors.capabilities import (
    NO_NEEDS,
    Capabilities,
    Need,
    model_capabilities,
    request_needs,
)
from actors.config import ModelInfo, parse_config
from actors.errors import AllLevelsFailed, ConfigError
from actors.messages import BreakerState, Request
from actors.ranking import ExclusionCause, LevelPlan, Ranker
from runtime.embed import open_runtime

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_rate",
            "description": "The VAT rate of a product category.",
            "parameters": {"type": "object", "properties": {"category": {"type": "string"}}},
        },
    }
]
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "rate",
        "schema": {
            "type": "object",
            "properties": {"rate": {"type": "number"}},
            "required": ["rate"],
        },
    },
}
PIXEL = "iVBORw0KGgo="  # any base64 will do: nothing decodes it


def image_request(*, url: bool) -> Request:
    image = "https://example.com/receipt.png" if url else f"data:image/png;base64,{PIXEL}"
    content = [
        {"type": "text", "text": "What is on it?"},
        {"type": "image_url", "image_url": {"url": image}},
    ]
    return Request(messages=[{"role": "user", "content": content}])


def rank(config: Any, request: Request) -> LevelPlan:
    return Ranker(config).rank(request, config.levels[0], {}, 0.0)


def excluded(plan: LevelPlan) -> dict[str, tuple[ExclusionCause, str]]:
    return {e.provider: (e.cause, e.reason) for e in plan.exclusions}


# --- the model table -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("o1-preview", Capabilities(False, False, False, False, False, 32_768)),
        ("openai/o1-mini", Capabilities(False, False, False, False, False, 65_536)),
        ("o3-mini", Capabilities(parallel_tools=False, vision=False, max_output_tokens=100_000)),
        ("gpt-4o-2024-08-06", Capabilities(max_output_tokens=16_384)),
        ("gpt-4o-mini", Capabilities(max_output_tokens=16_384)),
        ("gpt-3.5-turbo", Capabilities(vision=False, json_schema=False, max_output_tokens=4_096)),
        ("claude-3-5-sonnet-20241022", Capabilities(max_output_tokens=8_192)),
        ("claude-3-haiku-20240307", Capabilities(max_output_tokens=4_096)),
        ("claude-2.1", Capabilities(False, False, False, False, False, 4_096)),
        ("gemini-flash", Capabilities(json_schema=False, max_output_tokens=8_192)),
        ("gemini-1.5-pro-002", Capabilities(max_output_tokens=8_192)),
        ("models/gemini-2.5-flash", Capabilities(max_output_tokens=65_536)),
        ("llama3.1:8b", Capabilities(vision=False)),
        ("llava:13b", Capabilities(tools=False, parallel_tools=False)),
        ("llama3.2-vision", Capabilities(tools=False, parallel_tools=False)),
        ("acme-large-1", Capabilities()),
    ],
)
def test_family_defaults(model: str, expected: Capabilities) -> None:
    assert model_capabilities(model) == expected


def test_unknown_models_are_assumed_capable_with_no_output_limit() -> None:
    caps = model_capabilities("hf-small", ModelInfo())
    assert caps == Capabilities()
    assert caps.max_output_tokens is None
    assert caps.supports & Need.JSON_SCHEMA and caps.supports & Need.IMAGE_URLS


def test_model_table_keys_override_the_family_one_by_one() -> None:
    caps = model_capabilities("gemini-flash", ModelInfo(json_schema=True, vision=False))
    assert caps == Capabilities(vision=False, max_output_tokens=8_192)
    caps = model_capabilities("acme-1", ModelInfo(tools=False, max_output_tokens=1_000))
    assert caps == Capabilities(tools=False, max_output_tokens=1_000)
    # Without tools, neither a forced choice nor parallel calls can be met.
    assert not caps.supports & (Need.TOOLS | Need.FORCED_TOOL | Need.PARALLEL_TOOLS)


def test_config_loads_the_capability_keys() -> None:
    config = make_config(
        [{"name": "a", "kind": "simulated", "models": ["m"]}],
        models={
            "m": {"tools": False, "vision": True, "json_schema": False, "max_output_tokens": 900}
        },
    )
    info = config.model_info("m")
    assert (info.tools, info.vision, info.json_schema, info.max_output_tokens) == (
        False,
        True,
        False,
        900,
    )
    assert info.parallel_tools is None and info.json_object is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"tools": "yes"}, "models[m].tools: 'yes' is not true or false"),
        ({"parallel_tools": 1}, "models[m].parallel_tools: 1 is not true or false"),
        ({"json_schema": "no"}, "models[m].json_schema: 'no' is not true or false"),
        ({"max_output_tokens": 2.5}, "models[m].max_output_tokens: 2.5 is not an integer"),
        ({"max_output_tokens": 0}, "max_output_tokens=0 must be >= 1"),
        ({"vison": True}, "models[m]: unknown key(s) vison"),
    ],
)
def test_bad_capability_keys_name_the_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_config([{"name": "a", "kind": "simulated", "models": ["m"]}], models={"m": entry})
    assert message in str(error.value)


# --- what a request needs ------------------------------------------------------------------


def test_a_plain_prompt_needs_nothing() -> None:
    assert request_needs(Request(prompt="hi", system="be brief", stop=["\n"])) is NO_NEEDS


def test_needs_are_derived_from_the_request() -> None:
    def mask(**fields: Any) -> int:
        return request_needs(Request(prompt="hi", **fields)).mask

    assert mask(tools=TOOLS) == Need.TOOLS
    assert mask(tools=TOOLS, tool_choice="none") == 0
    assert mask(tools=TOOLS, tool_choice="required") == Need.TOOLS | Need.FORCED_TOOL
    assert mask(
        tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_rate"}}
    ) == (Need.TOOLS | Need.FORCED_TOOL)
    assert mask(tools=TOOLS, parallel_tool_calls=True) == Need.TOOLS | Need.PARALLEL_TOOLS
    assert mask(response_format={"type": "json_object"}) == Need.JSON_OBJECT
    assert mask(response_format=SCHEMA) == Need.JSON_SCHEMA
    assert request_needs(image_request(url=False)).mask == Need.VISION
    assert request_needs(image_request(url=True)).mask == Need.VISION | Need.IMAGE_URLS
    one = request_needs(Request(prompt="hi", tools=TOOLS, parallel_tool_calls=False))
    assert one.mask == Need.TOOLS and one.one_call
    hints = request_needs(Request(prompt="hi", seed=7, user="u-1", metadata={"k": "v"}))
    assert hints.mask == 0 and hints.hints == ("seed", "user", "metadata")


# --- ranking --------------------------------------------------------------------------------


def test_a_provider_with_no_capable_model_is_excluded_naming_model_and_capability() -> None:
    config = make_config(
        [
            {"name": "flash", "kind": "simulated", "models": ["gemini-flash"]},
            {"name": "big", "kind": "simulated", "models": ["gpt-4o"]},
        ]
    )
    plan = rank(config, Request(prompt="rate?", response_format=SCHEMA))
    assert order(plan.candidates) == ["big"]
    assert excluded(plan) == {"flash": (ExclusionCause.UNSUPPORTED, "gemini-flash: no JSON schema")}
    # JSON mode without a schema: gemini-flash has it.
    plan = rank(config, Request(prompt="rate?", response_format={"type": "json_object"}))
    assert sorted(order(plan.candidates)) == ["big", "flash"]


def test_an_incapable_model_is_skipped_for_the_providers_next_one() -> None:
    config = make_config(
        [{"name": "oa", "kind": "simulated", "models": ["o1-mini", "gpt-4o-mini", "gpt-4o"]}],
        models={"o1-mini": {"context_window": 1_000_000}, "gpt-4o-mini": {"tools": False}},
        routing={"complexity": {"moderate": ["o1-mini"]}, "quality": {"production": ["o1-mini"]}},
    )
    plain = rank(config, Request(prompt="hi"))
    assert plain.candidates[0].model == "o1-mini"
    assert plain.candidates[0].notes == ()
    plan = rank(config, Request(prompt="rate of books?", tools=TOOLS))
    (candidate,) = plan.candidates
    assert candidate.model == "gpt-4o"
    # o1-mini's larger window is no fallback for a request it cannot answer.
    assert candidate.fallback_models == ()
    assert candidate.notes == ("skipped o1-mini: no tools", "skipped gpt-4o-mini: no tools")
    line = plan.explain()[0]
    assert "[skipped o1-mini: no tools; skipped gpt-4o-mini: no tools]" in line


def test_vision_and_max_output_are_needs_too() -> None:
    config = make_config(
        [
            {"name": "text", "kind": "simulated", "models": ["llama3.1"]},
            {"name": "eyes", "kind": "simulated", "models": ["gpt-4o"]},
        ]
    )
    plan = rank(config, image_request(url=False))
    assert order(plan.candidates) == ["eyes"]
    assert excluded(plan)["text"] == (ExclusionCause.UNSUPPORTED, "llama3.1: no vision")
    plan = rank(config, Request(prompt="a long essay", max_tokens=20_000))
    assert order(plan.candidates) == ["text"]  # llama3.1 has no known output limit
    assert excluded(plan)["eyes"] == (
        ExclusionCause.UNSUPPORTED,
        "gpt-4o: max_tokens 20000 > max output 16384",
    )


def test_wire_formats_exclude_what_they_cannot_carry() -> None:
    config = make_config(
        [
            {"name": "gem", "kind": "gemini", "models": ["gemini-1.5-pro"]},
            {"name": "oll", "kind": "ollama", "models": ["llama4"]},
            {"name": "oa", "kind": "openai", "models": ["gpt-4o"]},
        ]
    )
    plan = rank(config, image_request(url=True))
    assert order(plan.candidates) == ["oa"]
    assert excluded(plan) == {
        "gem": (
            ExclusionCause.UNSUPPORTED,
            "the gemini wire format takes base64 images only, not image URLs",
        ),
        "oll": (
            ExclusionCause.UNSUPPORTED,
            "the ollama wire format takes base64 images only, not image URLs",
        ),
    }
    assert sorted(order(rank(config, image_request(url=False)).candidates)) == ["gem", "oa", "oll"]
    forced = rank(config, Request(prompt="rate?", tools=TOOLS, tool_choice="required"))
    assert excluded(forced) == {
        "oll": (ExclusionCause.UNSUPPORTED, "the ollama wire format cannot force a tool choice")
    }
    auto = rank(config, Request(prompt="rate?", tools=TOOLS))
    assert sorted(order(auto.candidates)) == ["gem", "oa", "oll"]


def test_ignored_hints_and_emulated_switches_are_noted_not_excluded() -> None:
    config = make_config(
        [
            {"name": "an", "kind": "anthropic", "models": ["claude-sonnet"]},
            {"name": "gem", "kind": "gemini", "models": ["gemini-pro"]},
            {"name": "oa", "kind": "openai", "models": ["gpt-4o"]},
            {"name": "sim", "kind": "simulated", "models": ["gpt-4o"]},
        ]
    )
    request = Request(
        prompt="rate?",
        tools=TOOLS,
        parallel_tool_calls=False,
        seed=7,
        presence_penalty=0.5,
        user="u-1",
        metadata={"ticket": "42"},
    )
    plan = rank(config, request)
    notes = {c.provider: c.notes for c in plan.candidates}
    assert notes == {
        "an": ("ignores seed, presence_penalty, metadata",),
        "gem": (
            "ignores user, metadata",
            "parallel_tool_calls=false: keeps the first tool call only",
        ),
        "oa": ("ignores metadata",),
        "sim": (),
    }
    assert plan.exclusions == ()
    assert any("[ignores seed, presence_penalty, metadata]" in line for line in plan.explain())


def test_last_resorts_answer_only_what_they_can() -> None:
    config = parse_config(
        {
            "providers": [
                {"name": "cache", "kind": "cache"},
                {"name": "tpl", "kind": "template"},
            ],
            "levels": [{"name": "last", "providers": ["cache", "tpl"]}],
            "templates": [{"text": "Please try again later."}],
        }
    )
    assert order(rank(config, Request(prompt="rate?", tools=TOOLS)).candidates) == ["cache", "tpl"]
    json_plan = rank(config, Request(prompt="rate?", response_format=SCHEMA))
    assert order(json_plan.candidates) == ["cache"]
    assert excluded(json_plan) == {
        "tpl": (ExclusionCause.UNSUPPORTED, "a template cannot answer JSON")
    }
    forced = rank(config, Request(prompt="rate?", tools=TOOLS, tool_choice="required"))
    assert forced.candidates == ()
    assert excluded(forced) == {
        "cache": (ExclusionCause.UNSUPPORTED, "the cache holds no tool calls"),
        "tpl": (ExclusionCause.UNSUPPORTED, "a template cannot answer a forced tool choice"),
    }


def test_panic_never_brings_back_a_provider_that_cannot_answer() -> None:
    config = make_config(
        [
            {"name": "flash", "kind": "simulated", "models": ["gemini-flash"]},
            {"name": "big", "kind": "simulated", "models": ["gpt-4o"]},
        ]
    )
    snapshots = {
        name: snap(name, state=BreakerState.OPEN, open_until=10.0 + i)
        for i, name in enumerate(["flash", "big"])
    }
    plan = Ranker(config).plan(
        Request(prompt="rate?", response_format=SCHEMA), config.levels, snapshots, 0.0
    )
    (level,) = plan.levels
    assert [(c.provider, c.panic) for c in level.candidates] == [("big", True)]
    assert excluded(level)["flash"][0] is ExclusionCause.UNSUPPORTED


def test_the_context_check_counts_the_whole_conversation() -> None:
    config = make_config(
        [
            {"name": "small", "kind": "simulated", "models": ["tiny"]},
            {"name": "large", "kind": "simulated", "models": ["huge"]},
        ],
        models={"tiny": {"context_window": 2_000}, "huge": {"context_window": 100_000}},
    )
    turns = [
        {"role": "user", "content": "x" * 4_000},
        {"role": "assistant", "content": "y" * 4_000},
        {"role": "user", "content": "and then?"},
    ]
    plan = rank(config, Request(messages=turns, max_tokens=100))
    assert order(plan.candidates) == ["large"]
    cause, reason = excluded(plan)["small"]
    assert cause is ExclusionCause.CONTEXT_TOO_LONG
    assert "~2102 tokens" in reason


def test_the_summary_lists_needs_and_a_plain_one_is_unchanged() -> None:
    config = make_config([{"name": "a", "kind": "simulated", "models": ["gpt-4o"]}])
    ranker = Ranker(config)
    plain = ranker.plan(Request(prompt="hi"), config.levels, {}, 0.0).summary
    assert plain.endswith("max_tokens=500")
    request = Request(prompt="hi", tools=TOOLS, tool_choice="required", seed=1, model="gpt-4o")
    summary = ranker.plan(request, config.levels, {}, 0.0).summary
    assert summary.endswith("needs=tools,forced_tool hints=seed model=gpt-4o")


_FLAGS = ("tools", "parallel_tools", "vision", "json_object", "json_schema")


@settings(max_examples=150, deadline=None)
@given(
    tables=st.lists(
        st.fixed_dictionaries({flag: st.booleans() for flag in _FLAGS}), min_size=1, max_size=3
    ),
    wants=st.fixed_dictionaries(
        {
            "tools": st.sampled_from([None, "auto", "required", "none"]),
            "parallel": st.sampled_from([None, True, False]),
            "image": st.sampled_from([None, "url", "data"]),
            "format": st.sampled_from([None, "json_object", "json_schema"]),
        }
    ),
)
def test_a_candidate_model_always_meets_every_need(
    tables: list[dict[str, bool]], wants: dict[str, Any]
) -> None:
    models = {f"m{i}": table for i, table in enumerate(tables)}
    config = make_config(
        [{"name": "p", "kind": "simulated", "models": list(models)}], models=models
    )
    fields: dict[str, Any] = {}
    if wants["tools"] is not None:
        fields.update(
            tools=TOOLS, tool_choice=wants["tools"], parallel_tool_calls=wants["parallel"]
        )
    if wants["format"] == "json_object":
        fields["response_format"] = {"type": "json_object"}
    elif wants["format"] == "json_schema":
        fields["response_format"] = SCHEMA
    if wants["image"] is None:
        request = Request(prompt="hi", **fields)
    else:
        request = Request(messages=image_request(url=wants["image"] == "url").messages, **fields)
    calls = wants["tools"] in ("auto", "required")

    def meets(table: dict[str, bool]) -> bool:
        return (
            (not calls or table["tools"])
            and (not (calls and wants["parallel"]) or table["parallel_tools"])
            and (wants["image"] is None or table["vision"])
            and (wants["format"] is None or table[wants["format"]])
        )

    plan = rank(config, request)
    able = [name for name, table in models.items() if meets(table)]
    if able:
        (candidate,) = plan.candidates
        assert candidate.model == able[0]
        assert set(candidate.fallback_models) <= set(able)
    else:
        assert plan.candidates == ()
        assert plan.exclusions[0].cause is ExclusionCause.UNSUPPORTED
        for name in models:
            assert name in plan.exclusions[0].reason


# --- end to end ------------------------------------------------------------------------------


async def test_a_schema_request_skips_the_model_without_schemas_end_to_end(
    autojump_clock: Any,
) -> None:
    config = parse_config(
        {
            "providers": [
                {"name": "flash", "kind": "simulated", "models": ["gemini-flash"], "seed": 1},
                {"name": "big", "kind": "simulated", "models": ["gpt-4o"], "seed": 2},
            ],
            "levels": [
                {"name": "primary", "providers": ["flash"]},
                {"name": "secondary", "providers": ["big"]},
            ],
        }
    )
    async with open_runtime(config) as rt:
        plain = await rt.complete(Request(prompt="What is the VAT rate for books?"))
        assert (plain.provider, plain.fallback_used) == ("flash", False)

        request = Request(prompt="What is the VAT rate for books?", response_format=SCHEMA)
        explained = rt.plan(request).explain()
        assert "primary excluded flash: gemini-flash: no JSON schema" in explained
        reply = await rt.complete(request)
        assert (reply.provider, reply.model) == ("big", "gpt-4o")
        # The primary level could never answer it: the secondary is its first choice.
        assert not reply.fallback_used
        # flash was never called: one attempt only.
        assert [a.provider for a in reply.attempts] == ["big"]
        assert isinstance(json.loads(reply.text)["rate"], int | float)


async def test_a_forced_tool_call_never_ends_in_a_template(autojump_clock: Any) -> None:
    config = parse_config(
        {
            "providers": [
                {"name": "down", "kind": "simulated", "models": ["gpt-4o"], "error_rate": 1.0},
                {"name": "tpl", "kind": "template"},
            ],
            "levels": [
                {"name": "primary", "providers": ["down"]},
                {"name": "last", "providers": ["tpl"]},
            ],
            "templates": [{"text": "Please try again later."}],
        }
    )
    async with open_runtime(config) as rt:
        text = await rt.complete(Request(prompt="rate?", tools=TOOLS))
        assert text.provider == "tpl"  # a text answer may come from a template ...
        with pytest.raises(AllLevelsFailed) as error:  # ... a forced tool call may not
            await rt.complete(Request(prompt="rate?", tools=TOOLS, tool_choice="required"))
        assert {a.provider for a in error.value.attempts} == {"down"}
