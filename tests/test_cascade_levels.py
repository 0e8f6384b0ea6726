"""`Request.levels`: a request limited to some levels (a tenant's policy) is walked through
those only, the last resort's included, in virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from support import make_config

from actors.errors import AllLevelsFailed
from actors.faults import Fault, FaultKind
from actors.messages import Request
from actors.validation import FieldError
from runtime.embed import open_runtime

ASK = "What is the VAT rate on books?"


def test_levels_must_be_a_list_of_names() -> None:
    assert Request(prompt=ASK, levels=["primary"]).levels == ("primary",)
    assert Request(prompt=ASK).levels == ()
    with pytest.raises(FieldError, match="levels"):
        Request(prompt=ASK, levels="primary")
    with pytest.raises(FieldError, match="levels"):
        Request(prompt=ASK, levels=["primary", ""])


def test_levels_do_not_change_the_cache_key() -> None:
    """How a request is served, not what it asks: a policy change keeps the cached answers."""
    request = Request(prompt=ASK)
    assert Request(prompt=ASK, levels=["primary"]).cache_key() == request.cache_key()


async def test_a_request_walks_only_its_levels(autojump_clock: trio.testing.MockClock) -> None:
    async with open_runtime(make_config()) as rt:
        reply = await rt.complete(Request(prompt=ASK, levels=["secondary", "last_resort"]))
        assert (reply.level, reply.provider) == ("secondary", "gemini")
        plan = rt.cascade.planner.plan(Request(prompt=ASK, levels=["secondary"]))
        assert [bool(level.candidates) for level in plan.levels] == [False, True, False, False]
        assert all(not level.exclusions for level in plan.levels if level.level != "secondary")


async def test_a_failing_allowed_level_does_not_fall_back_to_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(make_config()) as rt:
        rt.inject_fault("gemini", Fault(FaultKind.OUTAGE))
        with pytest.raises(AllLevelsFailed) as failed:
            await rt.complete(Request(prompt=ASK, levels=["secondary"]))
        assert {a.provider for a in failed.value.attempts} == {"gemini"}


async def test_without_the_last_resort_a_cached_answer_is_not_served(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(make_config()) as rt:
        first = await rt.complete(Request(prompt=ASK))
        for name in ("openai", "anthropic", "gemini", "local"):
            rt.inject_fault(name, Fault(FaultKind.OUTAGE))
        assert (await rt.complete(Request(prompt=ASK))).text == first.text  # from the cache
        no_last_resort = Request(prompt=ASK, levels=["primary", "secondary", "emergency"])
        with pytest.raises(AllLevelsFailed) as failed:
            await rt.complete(no_last_resort)
        assert "cache" not in {a.provider for a in failed.value.attempts}
        stream_failed = False
        try:
            async with rt.stream(no_last_resort) as stream:
                async for _ in stream.events():
                    pass
        except AllLevelsFailed as exc:
            stream_failed = "cache" not in {a.provider for a in exc.attempts}
        assert stream_failed


async def test_without_the_last_resort_a_level_keeps_no_time_back_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Deadline 8 s, last resort 5 s: the primary level normally ends at 4 s (half the deadline
    kept back); a request that may not use the last resort gives the primary all 8 s."""
    config = make_config(
        runtime={"deadline_s": 8},
        providers={"openai": {"latency_ms": 6000}, "anthropic": {"latency_ms": 6000}},
    )
    async with open_runtime(config) as rt:
        start = trio.current_time()
        reply = await rt.complete(Request(prompt=ASK, levels=["primary"]))
        assert (reply.level, reply.provider) == ("primary", "openai")
        assert 6.0 <= trio.current_time() - start < 8.0
    async with open_runtime(config) as rt:
        with pytest.raises(AllLevelsFailed) as failed:
            await rt.complete(Request(prompt=ASK))  # the primary is cut at 4 s
        assert ("openai", "timeout") in [(a.provider, a.outcome) for a in failed.value.attempts]


async def test_a_request_s_strategy_overrides_the_level_s(autojump_clock: Any) -> None:
    # The primary level tries one candidate after another; its first one hangs. Sequentially
    # the request waits out the attempt; raced, the second candidate answers at once.
    config = make_config(
        levels=[
            {
                "name": "primary",
                "providers": ["openai", "anthropic"],
                "timeout_s": 30,
                "attempt_timeout_s": 10,
            },
            {"name": "last_resort", "providers": ["cache", "templates"], "timeout_s": 5},
        ]
    )
    async with open_runtime(config) as rt:
        rt.inject_fault("openai", Fault(FaultKind.HANG))
        plain = await rt.complete(Request(prompt="a question"))
        raced = await rt.complete(Request(prompt="a question", strategy="race"))
    assert (plain.provider, raced.provider) == ("anthropic", "anthropic")
    assert plain.latency_ms >= 10_000 > 1_000 > raced.latency_ms


def test_a_strategy_is_one_of_the_three() -> None:
    with pytest.raises(ValueError, match="strategy='fastest' is not one of"):
        Request(prompt="x", strategy="fastest")
