"""The router actor: exploration of providers whose latency measurement went stale."""

from __future__ import annotations

from typing import Any

import attrs
import trio
from test_ranking import DEMO, order, snap

from actors.messages import Request
from actors.ranking import Ranker
from actors.router import RouterActor

REQUEST = Request(prompt="hi", complexity="moderate", quality="production")


def primary_order(router: RouterActor, *, explore: bool = True) -> list[str]:
    return order(router.plan(REQUEST, explore=explore).levels[0].candidates)


async def test_a_stale_provider_gets_one_request_per_stale_period(autojump_clock: Any) -> None:
    router = RouterActor(DEMO, Ranker(DEMO))  # latency_stale_s = 30
    now = trio.current_time()
    # openai measured slow (a brownout) 1 s ago; anthropic fine.
    router.table["openai"] = attrs.evolve(snap("openai", latency_ms=8000), last_check=now - 1)
    router.table["anthropic"] = attrs.evolve(snap("anthropic", latency_ms=900), last_check=now)
    assert primary_order(router) == ["anthropic", "openai"]

    await trio.sleep(30)
    router.table["anthropic"] = attrs.evolve(
        router.table["anthropic"], last_check=trio.current_time()
    )
    # openai's 8 s is 31 s old: explaining a plan spends nothing ...
    assert primary_order(router, explore=False) == ["anthropic", "openai"]
    # ... one request explores it ...
    plan = router.plan(REQUEST)
    assert order(plan.levels[0].candidates) == ["openai", "anthropic"]
    assert plan.levels[0].candidates[0].reason == "exploring: latency last measured 31s ago"
    # ... and the next ones do not, until another stale period has passed.
    assert primary_order(router) == ["anthropic", "openai"]
    await trio.sleep(29)
    assert primary_order(router) == ["anthropic", "openai"]
    await trio.sleep(2)
    assert primary_order(router) == ["openai", "anthropic"]
    assert router.explorations == 2


async def test_fresh_or_never_measured_providers_are_not_explored(autojump_clock: Any) -> None:
    router = RouterActor(DEMO, Ranker(DEMO))
    now = trio.current_time()
    router.table["openai"] = attrs.evolve(snap("openai", latency_ms=8000), last_check=now)
    router.table["anthropic"] = attrs.evolve(snap("anthropic", latency_ms=900), last_check=None)
    assert primary_order(router) == ["anthropic", "openai"]
    assert router.explorations == 0
