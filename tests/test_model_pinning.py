"""`model=` pins a model and `models=[...]` is a preference list: which providers are asked,
with which model, in what order, level by level; and a pin nobody offers fails before any call."""

from __future__ import annotations

from typing import Any

import pytest
from test_ranking import order, snap

from actors.config import Config, parse_config
from actors.errors import ModelNotOffered
from actors.faults import Fault, FaultKind
from actors.messages import Request
from actors.ranking import ExclusionCause, Ranker, RoutePlan
from runtime.embed import open_runtime


def config(**extra: Any) -> Config:
    """openai offers gpt-4o-mini and gpt-4o, anthropic claude-sonnet, gemini gemini-pro and
    gpt-4o (a router that resells it); a second level with mistral; the cache last."""
    data: dict[str, Any] = {
        "providers": [
            {"name": "openai", "kind": "simulated", "models": ["gpt-4o-mini", "gpt-4o"]},
            {"name": "anthropic", "kind": "simulated", "models": ["claude-sonnet"]},
            {"name": "gemini", "kind": "simulated", "models": ["gemini-pro", "gpt-4o"]},
            {"name": "mistral", "kind": "simulated", "models": ["mistral-large"]},
            {"name": "spare", "kind": "simulated", "models": ["unrouted-1"]},
            {"name": "cache", "kind": "cache"},
        ],
        "levels": [
            {"name": "primary", "providers": ["openai", "anthropic", "gemini"]},
            {"name": "secondary", "providers": ["mistral"]},
            {"name": "last", "providers": ["cache"]},
        ],
        **extra,
    }
    return parse_config(data)


CONFIG = config()
RANKER = Ranker(CONFIG)


def plan(request: Request, snapshots: dict[str, Any] | None = None) -> RoutePlan:
    return RANKER.plan(request, CONFIG.levels, snapshots or {}, 0.0)


def chosen(route: RoutePlan, level: str) -> list[tuple[str, str]]:
    return [(c.provider, c.model) for c in route.level(level).candidates]


def test_a_pinned_model_goes_only_to_the_providers_offering_it() -> None:
    route = plan(Request(prompt="hi", model="gpt-4o"))
    # openai would pick gpt-4o-mini for a simple request; the pin overrides it.
    assert sorted(chosen(route, "primary")) == [("gemini", "gpt-4o"), ("openai", "gpt-4o")]
    primary = route.level("primary")
    assert [(e.provider, e.cause, e.reason) for e in primary.exclusions] == [
        ("anthropic", ExclusionCause.NOT_OFFERED, "does not offer gpt-4o")
    ]
    assert all(c.fallback_models == () for c in primary.candidates)
    # Level by level: the second level offers no gpt-4o; the last resort still answers.
    assert chosen(route, "secondary") == []
    assert route.level("secondary").exclusions[0].reason == "does not offer gpt-4o"
    assert chosen(route, "last") == [("cache", "")]
    assert "primary excluded anthropic: does not offer gpt-4o" in route.explain()
    assert route.summary.endswith("model=gpt-4o")


def test_a_pin_changes_nothing_else_about_the_order() -> None:
    snapshots = {
        "openai": snap("openai", latency_ms=900, error_rate=0.2),
        "gemini": snap("gemini", latency_ms=100),
    }
    route = plan(Request(prompt="hi", model="gpt-4o"), snapshots)
    assert order(route.level("primary").candidates) == ["gemini", "openai"]


def test_a_model_pinned_only_in_a_later_level_is_found_there() -> None:
    route = plan(Request(prompt="hi", model="mistral-large"))
    assert chosen(route, "primary") == []
    assert {e.cause for e in route.level("primary").exclusions} == {ExclusionCause.NOT_OFFERED}
    assert chosen(route, "secondary") == [("mistral", "mistral-large")]


def test_models_orders_by_list_position_first() -> None:
    # anthropic is far healthier, but claude-sonnet comes second in the list.
    snapshots = {
        "openai": snap("openai", latency_ms=900, error_rate=0.3),
        "anthropic": snap("anthropic", latency_ms=50),
        "gemini": snap("gemini", latency_ms=950, error_rate=0.4),
    }
    route = plan(Request(prompt="hi", models=["gpt-4o", "claude-sonnet"]), snapshots)
    # gpt-4o's two providers first (by score among themselves), then claude-sonnet's.
    assert chosen(route, "primary") == [
        ("openai", "gpt-4o"),
        ("gemini", "gpt-4o"),
        ("anthropic", "claude-sonnet"),
    ]
    assert route.summary.endswith("models=gpt-4o,claude-sonnet")


def test_each_provider_takes_the_first_listed_model_it_offers() -> None:
    route = plan(Request(prompt="hi", models=["gemini-pro", "gpt-4o", "mistral-large"]))
    assert chosen(route, "primary") == [("gemini", "gemini-pro"), ("openai", "gpt-4o")]
    assert route.level("primary").exclusions[0].reason == (
        "offers none of gemini-pro, gpt-4o, mistral-large"
    )
    assert chosen(route, "secondary") == [("mistral", "mistral-large")]


def test_a_listed_model_that_cannot_answer_gives_way_to_the_next_listed() -> None:
    pinned = config(models={"gemini-pro": {"json_schema": False}})
    schema = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}
    request = Request(prompt="hi", models=["gemini-pro", "gpt-4o"], response_format=schema)
    route = Ranker(pinned).plan(request, pinned.levels, {}, 0.0)
    # Equal place and score: provider name decides.
    assert chosen(route, "primary") == [("gemini", "gpt-4o"), ("openai", "gpt-4o")]
    gemini = route.level("primary").candidates[0]
    assert gemini.notes == ("skipped gemini-pro: no JSON schema",)


@pytest.mark.parametrize(
    ("fields", "field", "wanted"),
    [
        ({"model": "gpt-9"}, "model", "'gpt-9'"),
        ({"models": ["gpt-9", "claude-9"]}, "models", "['gpt-9', 'claude-9']"),
        # Offered by a provider, but by one no level routes to.
        ({"model": "unrouted-1"}, "model", "'unrouted-1'"),
    ],
)
def test_a_pin_no_provider_offers_is_a_clear_error(
    fields: dict[str, Any], field: str, wanted: str
) -> None:
    request = Request(prompt="hi", **fields)
    with pytest.raises(ModelNotOffered) as error:
        plan(request)
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: {wanted} is offered by no configured provider")
    assert "gpt-4o-mini, gpt-4o, claude-sonnet" in str(error.value)
    with pytest.raises(ModelNotOffered):
        RANKER.rank(request, CONFIG.levels[0], {}, 0.0)


def test_one_offered_model_in_the_list_is_enough() -> None:
    route = plan(Request(prompt="hi", models=["gpt-9", "claude-sonnet"]))
    assert chosen(route, "primary") == [("anthropic", "claude-sonnet")]


# --- end to end ------------------------------------------------------------------------------


async def test_a_pinned_model_answers_and_an_unknown_one_fails_before_any_call(
    autojump_clock: Any,
) -> None:
    async with open_runtime(CONFIG) as rt:
        reply = await rt.complete(Request(prompt="What is the VAT rate?", model="claude-sonnet"))
        assert (reply.provider, reply.model) == ("anthropic", "claude-sonnet")
        # The list is the order of preference across levels, as OpenRouter's `models`: its
        # first model is tried first, even when only a later level serves it.
        reply = await rt.complete(
            Request(prompt="What is the VAT rate?", models=["mistral-large", "gemini-pro"])
        )
        assert (reply.provider, reply.level, reply.fallback_used) == ("mistral", "secondary", False)
        reply = await rt.complete(
            Request(prompt="What is the VAT rate?", models=["gemini-pro", "mistral-large"])
        )
        assert (reply.provider, reply.level, reply.fallback_used) == ("gemini", "primary", False)
        rt.inject_fault("gemini", Fault(FaultKind.OUTAGE))
        reply = await rt.complete(
            Request(prompt="What is the VAT rate?", models=["gemini-pro", "mistral-large"])
        )
        assert (reply.provider, reply.model, reply.fallback_used) == ("mistral", "mistral-large", True)
        rt.heal("gemini")
        # Offered only by the second level: answering there is no fallback.
        reply = await rt.complete(Request(prompt="What is the VAT rate?", model="mistral-large"))
        assert (reply.provider, reply.level, reply.fallback_used) == ("mistral", "secondary", False)

        before = rt.status().stats
        with pytest.raises(ModelNotOffered, match=r"^model: 'gpt-9'"):
            await rt.complete(Request(prompt="hi", model="gpt-9"))
        with pytest.raises(ModelNotOffered, match=r"^models: "):
            async with rt.stream(Request(prompt="hi", models=["gpt-9"])) as chunks:
                async for _ in chunks:
                    pass
        assert rt.status().stats == before  # nothing was called, nothing recorded


async def test_a_pinned_model_whose_providers_fail_ends_in_the_last_resort(
    autojump_clock: Any,
) -> None:
    failing = parse_config(
        {
            "providers": [
                {"name": "openai", "kind": "simulated", "models": ["gpt-4o"], "error_rate": 1.0},
                {"name": "anthropic", "kind": "simulated", "models": ["claude-sonnet"]},
                {"name": "tpl", "kind": "template"},
            ],
            "levels": [
                {"name": "primary", "providers": ["openai", "anthropic"]},
                {"name": "last", "providers": ["tpl"]},
            ],
            "templates": [{"text": "Please try again later."}],
        }
    )
    async with open_runtime(failing) as rt:
        reply = await rt.complete(Request(prompt="hi", model="gpt-4o"))
        assert (reply.provider, reply.fallback_used) == ("tpl", True)
        assert reply.text == "Please try again later."
        # anthropic was healthy, but does not offer the pinned model: never asked.
        assert {a.provider for a in reply.attempts} == {"openai", "tpl"}
