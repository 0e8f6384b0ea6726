"""The router's memo of plans: reused only while a fresh ranking would give the same plan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from support import snap
from test_ranking import DEMO

from actors.brownout import Brownout
from actors.config import Config
from actors.detect import Demotion
from actors.errors import ModelNotOffered
from actors.messages import BreakerState, ProviderSnapshot, Request
from actors.ranking import PlanMemo, Ranker, RoutePlan
from actors.router import RouterActor

PROVIDERS = ("openai", "anthropic", "gemini", "mistral", "huggingface", "local")
LEVELS = tuple(level.name for level in DEMO.levels)
MODELS = ("gpt-4o", "gpt-4o-mini", "o1-preview", "claude-sonnet", "claude-haiku", "gemini-pro")
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
TOOL = {"name": "lookup", "description": "look it up"}


class World:
    """The ranking's inputs that are not the request: heartbeats, demotions, brownouts."""

    def __init__(self, config: Config = DEMO) -> None:
        self.table: dict[str, ProviderSnapshot] = {}
        self.demoted: dict[str, Demotion] = {}
        self.browned: dict[str, Brownout] = {}
        self.ranker = Ranker(config, demotions=self.demotions, brownouts=self.brownouts)
        self.memo = PlanMemo(self.ranker, config.levels)
        self.levels = config.levels

    def demotions(self, now: float) -> Mapping[str, Demotion]:
        return dict(self.demoted)  # a new mapping every time, as the detector gives

    def brownouts(self, now: float) -> Mapping[str, Brownout]:
        return dict(self.browned)

    def fresh(self, request: Request, now: float) -> RoutePlan:
        return self.ranker.plan(request, self.levels, self.table, now)

    def check(self, request: Request, now: float) -> RoutePlan:
        """The memo's plan, asserted to be the fresh ranking's."""
        memoized = self.memo.plan(request, self.table, now)
        assert_same(memoized, self.fresh(request, now))
        return memoized


def assert_same(plan: RoutePlan, fresh: RoutePlan) -> None:
    """Equal in everything, the fields attrs leaves out of equality included."""
    assert plan == fresh
    assert plan.explain() == fresh.explain()
    assert [level.tiers for level in plan.levels] == [level.tiers for level in fresh.levels]


def demotion(provider: str, until: float = 100.0) -> Demotion:
    return Demotion(provider, "latency", "latency +4.1 sd over 38 calls", 0.0, until)


def brownout(provider: str, level: str = "primary") -> Brownout:
    return Brownout(provider, level, 9000.0, 3, 800.0, 5.0, 0.0)


# --- reuse ---------------------------------------------------------------------------------


def test_requests_of_one_shape_share_one_plan_between_heartbeats() -> None:
    world = World()
    world.table = {"openai": snap("openai"), "anthropic": snap("anthropic", latency_ms=300)}
    first = world.check(Request(prompt="hello"), 1.0)
    # Another request object, another text of the same estimated size, later: the same plan.
    assert world.check(Request(prompt="howdy"), 5.0) is first
    # A heartbeat equal to the last one changes nothing either.
    world.table = {name: attrs.evolve(s) for name, s in world.table.items()}
    assert world.check(Request(prompt="hello"), 6.0) is first


def test_a_heartbeat_that_changes_the_table_is_ranked_again() -> None:
    world = World()
    world.table = {"openai": snap("openai"), "anthropic": snap("anthropic", latency_ms=300)}
    before = world.check(Request(prompt="hi"), 0.0)
    world.table["openai"] = snap("openai", latency_ms=900)
    after = world.check(Request(prompt="hi"), 0.0)
    assert after is not before
    assert [c.provider for c in after.levels[0].candidates] == ["anthropic", "openai"]
    world.table["mistral"] = snap("mistral", available=False, reason="down")
    assert "excluded mistral" in " ".join(world.check(Request(prompt="hi"), 0.0).explain())


def test_an_open_period_ending_ends_the_plan() -> None:
    world = World()
    world.table = {"openai": snap("openai", state=BreakerState.OPEN, open_until=10.0)}
    before = world.check(Request(prompt="hi"), 9.0)
    assert "openai" not in [c.provider for c in before.levels[0].candidates]
    assert world.check(Request(prompt="hi"), 9.999) is before
    after = world.check(Request(prompt="hi"), 10.0)  # over at open_until itself
    assert "openai" in [c.provider for c in after.levels[0].candidates]
    # A clock read earlier than the plan (none goes back; a caller's stale `now` might).
    assert world.check(Request(prompt="hi"), 9.5) is not after


def test_a_retry_after_ending_ends_the_plan() -> None:
    world = World()
    world.table = {
        "openai": snap("openai", retry_after_until=4.0),
        "anthropic": snap("anthropic", retry_after_until=7.0),
    }
    plan = world.check(Request(prompt="hi"), 0.0)
    assert plan.earliest_available == 4.0
    assert world.check(Request(prompt="hi"), 3.5) is plan
    assert world.check(Request(prompt="hi"), 4.0).earliest_available == 7.0
    assert world.check(Request(prompt="hi"), 7.0).earliest_available is None


def test_demotions_and_brownouts_are_asked_every_request() -> None:
    world = World()
    world.table = {"openai": snap("openai"), "anthropic": snap("anthropic")}
    request = Request(prompt="hi", complexity="trivial", quality="draft")
    assert world.check(request, 0.0).levels[0].candidates[0].provider == "openai"
    world.demoted["openai"] = demotion("openai")
    assert world.check(request, 0.0).levels[0].candidates[-1].demoted
    world.browned = {"openai": brownout("openai"), "anthropic": brownout("anthropic")}
    assert world.check(request, 0.0).levels[0].brownout is not None
    world.demoted.clear()
    world.browned.clear()
    plan = world.check(request, 0.0)
    assert plan.levels[0].brownout is None
    assert not plan.levels[0].candidates[-1].demoted


def test_new_prices_are_ranked_again() -> None:
    world = World()
    request = Request(prompt="hi", budget_usd=0.004)
    before = world.check(request, 0.0)
    models = {
        name: attrs.evolve(info, output_usd_per_mtok=info.output_usd_per_mtok * 10)
        for name, info in DEMO.models.items()
    }
    world.ranker.reprice(attrs.evolve(DEMO, models=models))
    assert world.check(request, 0.0).explain() != before.explain()


def test_a_model_no_provider_offers_is_refused_every_time() -> None:
    world = World()
    for _ in range(2):
        with pytest.raises(ModelNotOffered):
            world.memo.plan(Request(prompt="hi", model="nope"), world.table, 0.0)


def test_the_memo_keeps_a_bounded_number_of_plans() -> None:
    world = World()
    memo = PlanMemo(world.ranker, DEMO.levels, size=4)
    first = memo.plan(Request(prompt="hi", max_tokens=1), {}, 0.0)
    for max_tokens in range(2, 20):
        memo.plan(Request(prompt="hi", max_tokens=max_tokens), {}, 0.0)
    assert len(memo._plans) == 4
    assert memo.plan(Request(prompt="hi", max_tokens=1), {}, 0.0) is not first


async def test_the_router_plans_through_the_memo(autojump_clock: Any) -> None:
    router = RouterActor(DEMO, Ranker(DEMO))
    await router.handle(snap("openai", state=BreakerState.OPEN, open_until=5.0))
    first = router.plan(Request(prompt="hi"), explore=False)
    assert router.plan(Request(prompt="hi"), explore=False) is first
    await router.handle(snap("openai"))
    assert router.plan(Request(prompt="hi"), explore=False) is not first


# --- each field of the shape ----------------------------------------------------------------

#: Per field the ranking reads, two requests that differ only there, and rank differently.
PAIRS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "complexity": ({"complexity": "trivial"}, {"complexity": "epic"}),
    "quality": ({"quality": "draft"}, {"quality": "critical"}),
    "cost": ({}, {"cost": "low"}),
    "budget_usd": ({"budget_usd": 1.0}, {"budget_usd": 0.0001}),
    "max_tokens": ({"max_tokens": 100}, {"max_tokens": 200}),
    "model": ({"model": "gpt-4o"}, {"model": "claude-sonnet"}),
    "models": ({"models": ["gpt-4o"]}, {"models": ["claude-sonnet"]}),
    "model or models": ({"model": "gpt-4o"}, {"models": ["gpt-4o"]}),
    "levels": ({}, {"levels": ["secondary"]}),
    "needs": ({"tools": [TOOL]}, {"tools": [TOOL], "tool_choice": "required"}),
    "one call": (
        {"tools": [TOOL], "parallel_tool_calls": None},
        {"tools": [TOOL], "parallel_tool_calls": False},
    ),
    "hints": ({}, {"seed": 7}),
    "prompt tokens": ({"prompt": "hi"}, {"prompt": "hi" * 400}),
    "top_p": ({"model": "o1-preview"}, {"model": "o1-preview", "top_p": 0.5}),
    "images": (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]},
        {"messages": [{"role": "user", "content": [IMAGE]}]},
    ),
}


@pytest.mark.parametrize("field", list(PAIRS))
def test_requests_that_differ_in_one_field_get_their_own_plans(field: str) -> None:
    world = World()
    world.table = {name: snap(name) for name in PROVIDERS}
    first, second = ({"prompt": "hi", **fields} for fields in PAIRS[field])
    if "messages" in first:
        del first["prompt"], second["prompt"]
    a, b = Request(**first), Request(**second)
    assert world.fresh(a, 0.0).explain() != world.fresh(b, 0.0).explain()  # the pair is apt
    world.check(a, 0.0)
    world.check(b, 0.0)
    world.check(a, 0.0)


# --- memo against fresh, at random ----------------------------------------------------------

SNAPSHOTS = st.builds(
    lambda name, state, until, retry, latency, error_rate, available: snap(
        name,
        state=state,
        open_until=until if state is BreakerState.OPEN else None,
        retry_after_until=retry,
        latency_ms=latency,
        error_rate=error_rate,
        available=available,
    ),
    st.sampled_from(PROVIDERS),
    st.sampled_from(list(BreakerState)),
    st.sampled_from([1.0, 2.0, 3.0]),
    st.none() | st.sampled_from([1.0, 2.5, 4.0]),
    st.sampled_from([100.0, 800.0, 3000.0]),
    st.sampled_from([0.0, 0.3]),
    st.booleans().map(lambda down: not down) | st.just(True),
)

#: Each field of a request the tests vary, with the values they take.
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "complexity": st.sampled_from(["trivial", "moderate", "expert", "epic"]),
    "quality": st.sampled_from(["draft", "production", "critical"]),
    "cost": st.sampled_from(["ultra_low", "low", "medium", "high"]),
    "budget_usd": st.sampled_from([0.0, 0.0001, 0.002, 0.01]),
    "max_tokens": st.sampled_from([50, 500, 5000, 40000]),
    "model": st.sampled_from([*MODELS, "nope"]),
    "models": st.lists(st.sampled_from(MODELS), min_size=1, max_size=3, unique=True),
    "levels": st.lists(st.sampled_from(LEVELS), min_size=1, max_size=2, unique=True),
    "tools": st.just([TOOL]),
    "response_format": st.sampled_from(["json_object", "text"]).map(lambda t: {"type": t}),
    "seed": st.just(3),
    "user": st.just("u"),
    "top_p": st.sampled_from([0.5, 0.9]),
    "presence_penalty": st.just(0.1),
    "frequency_penalty": st.just(0.2),
    "parallel_tool_calls": st.booleans(),
    "prompt": st.sampled_from(["hi", "hello there", "x" * 20000]),
    "image": st.just(True),
    "temperature": st.sampled_from([0.0, 1.0]),  # read by no ranking: must not matter
}
REQUESTS = st.fixed_dictionaries({}, optional=FIELDS)
#: A change to one field of a request (or none).
TWEAKS = st.one_of(
    st.just({}), *(st.fixed_dictionaries({name: values}) for name, values in FIELDS.items())
)


def _request(fields: dict[str, Any]) -> Request:
    fields = dict(fields)
    if "model" in fields and "models" in fields:
        del fields["models"]
    if "tools" not in fields:
        fields.pop("parallel_tool_calls", None)
    prompt = fields.pop("prompt", "hi")
    if fields.pop("image", False):
        fields["messages"] = [
            {"role": "user", "content": [{"type": "text", "text": prompt}, IMAGE]}
        ]
    else:
        fields["prompt"] = prompt
    return Request(**fields)


#: What changes before a request: nothing (most often), a heartbeat, the time, a demotion or
#: a brownout.
CHANGES = st.one_of(
    st.none(),
    st.none(),
    st.tuples(st.just("heartbeat"), SNAPSHOTS),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 1.0, 1.5])),
    st.tuples(st.just("demote"), st.lists(st.sampled_from(PROVIDERS), unique=True)),
    st.tuples(st.just("brownout"), st.lists(st.sampled_from(PROVIDERS), unique=True)),
)
#: Each request is like one of a few others, changed in one field at most: most requests of a
#: run are alike, and a field the memo overlooked would show only between near twins.
STEPS = st.lists(st.tuples(CHANGES, st.integers(0, 2), TWEAKS), min_size=10, max_size=40)


def _change(world: World, change: tuple[str, Any] | None, now: float) -> float:
    """`world` after `change`; returns the time after it."""
    if change is None:
        return now
    kind, value = change
    if kind == "heartbeat":
        world.table[value.provider] = value
    elif kind == "wait":
        now += value
    elif kind == "demote":
        world.demoted = {name: demotion(name, until=now + 1.0) for name in value}
    else:
        world.browned = {name: brownout(name) for name in value}
    return now


@settings(max_examples=100, deadline=None)
@given(st.lists(REQUESTS, min_size=3, max_size=3), STEPS)
def test_the_memo_gives_what_a_fresh_ranking_gives(
    bases: list[dict[str, Any]], steps: list[tuple[Any, int, dict[str, Any]]]
) -> None:
    world, now = World(), 0.0
    for change, index, tweak in steps:
        now = _change(world, change, now)
        request = _request({**bases[index], **tweak})
        try:
            world.check(request, now)
        except ModelNotOffered:
            with pytest.raises(ModelNotOffered):
                world.fresh(request, now)


async def test_a_retry_after_ending_in_virtual_time_ends_the_routers_plan(
    autojump_clock: Any,
) -> None:
    router = RouterActor(DEMO, Ranker(DEMO))
    await router.handle(snap("openai", retry_after_until=trio.current_time() + 2.0))
    request = Request(prompt="hi")
    before = router.plan(request, explore=False)
    await trio.sleep(2.0)
    after = router.plan(request, explore=False)
    fresh = router.ranker.plan(request, router.levels, router.table, trio.current_time())
    assert_same(after, fresh)
    assert before.earliest_available is not None
    assert after.earliest_available is None
