"""The bulkhead: `trio.CapacityLimiter`'s behaviour with its slots counted; and the provider's
call through it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing
from support import make_config

import runtime
from actors.concurrency import Bulkhead
from actors.errors import FailureKind, ProviderError
from actors.provider import ProviderActor
from runtime.embed import open_runtime

REQUEST = runtime.Request(prompt="What is the VAT rate for books?")


async def test_a_free_slot_is_taken_at_once_and_a_full_bulkhead_refuses() -> None:
    bulkhead = Bulkhead(2)
    await bulkhead.acquire()
    bulkhead.acquire_nowait()
    assert bulkhead.borrowed_tokens == 2
    with pytest.raises(trio.WouldBlock):
        bulkhead.acquire_nowait()
    bulkhead.release()
    bulkhead.release()
    assert bulkhead.borrowed_tokens == 0
    with pytest.raises(RuntimeError):
        bulkhead.release()


async def _line_up(
    nursery: trio.Nursery, bulkhead: Bulkhead, names: Sequence[object]
) -> list[object]:
    """Start a task per name that takes a slot, one after another in line; the names of those
    that got one, in the order they did."""
    got: list[object] = []

    async def waiter(name: object) -> None:
        await bulkhead.acquire()
        got.append(name)

    for name in names:
        nursery.start_soon(waiter, name)
        await trio.testing.wait_all_tasks_blocked()
    return got


async def test_a_slot_given_back_goes_to_the_longest_waiter() -> None:
    bulkhead = Bulkhead(1)
    bulkhead.acquire_nowait()
    async with trio.open_nursery() as nursery:
        got = await _line_up(nursery, bulkhead, ("first", "second", "third"))
        assert got == []
        bulkhead.release()
        # The slot is the first waiter's already: a newcomer cannot take it meanwhile.
        assert bulkhead.borrowed_tokens == 1
        with pytest.raises(trio.WouldBlock):
            bulkhead.acquire_nowait()
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["first"]
        bulkhead.release()
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["first", "second"]
        nursery.cancel_scope.cancel()
    assert bulkhead.borrowed_tokens == 1  # "second" holds it; "third" left without one


async def test_a_waiter_cancelled_in_line_takes_no_slot() -> None:
    bulkhead = Bulkhead(1)
    bulkhead.acquire_nowait()
    with trio.move_on_after(0.01) as scope:
        await bulkhead.acquire()
    assert scope.cancelled_caught
    bulkhead.release()
    assert bulkhead.borrowed_tokens == 0
    bulkhead.acquire_nowait()  # nobody left in line


async def test_taking_a_slot_is_a_checkpoint() -> None:
    bulkhead = Bulkhead(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await bulkhead.acquire()
    assert scope.cancelled_caught and bulkhead.borrowed_tokens == 0


async def test_resizing_wakes_waiters_or_lets_the_calls_out_finish() -> None:
    bulkhead = Bulkhead(2)
    bulkhead.acquire_nowait()
    bulkhead.acquire_nowait()
    async with trio.open_nursery() as nursery:
        got = await _line_up(nursery, bulkhead, range(3))
        bulkhead.total_tokens = 4
        await trio.testing.wait_all_tasks_blocked()
        assert got == [0, 1] and bulkhead.borrowed_tokens == 4
        bulkhead.total_tokens = 1
        for _ in range(3):
            bulkhead.release()
        await trio.testing.wait_all_tasks_blocked()
        assert got == [0, 1]  # one still out: the cut to 1 is used up
        bulkhead.release()
        await trio.testing.wait_all_tasks_blocked()
        assert got == [0, 1, 2] and bulkhead.borrowed_tokens == 1
    with pytest.raises(ValueError, match="total_tokens"):
        bulkhead.total_tokens = -1


@pytest.mark.parametrize("provider", ["openai", "local", "cache", "templates"])
async def test_a_call_with_a_free_slot_is_still_a_checkpoint(
    autojump_clock: trio.abc.Clock, provider: str
) -> None:
    """The free-slot path has a cancel point and no schedule point of its own: the adapter's
    call is the one every provider call makes, whether it answers or fails (a last resort
    with nothing to offer), so a loop of requests never starves the other tasks."""
    config = make_config(providers={"openai": {"latency_ms": 0}, "local": {"latency_ms": 0}})
    async with open_runtime(config) as rt:
        actor = rt.registry.cell(provider).actor
        assert isinstance(actor, ProviderActor)
        model = actor.config.models[0] if actor.config.models else ""
        with trio.testing.assert_checkpoints():
            try:
                await actor.complete(REQUEST, model, deadline=trio.current_time() + 5)
            except ProviderError as error:
                assert error.kind is FailureKind.NO_MATCH
        assert actor.bulkhead.borrowed_tokens == 0
