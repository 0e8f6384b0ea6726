"""A virtual run's schedule is a function of its seed, not of where its objects sit in memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from runtime.scenario.runner import seed_trio_scheduler, virtual_clock

#: Tasks whose timeouts all fall due at the same instant.
TASKS = 12


async def _wake_order(scopes_by_descending_id: bool) -> list[int]:
    """The order in which tasks spawned 0, 1, 2, ... wake from timeouts due at one instant,
    their cancel scopes handed out in ascending or descending order of `id()`."""
    deadline = trio.current_time() + 1.0
    scopes = sorted(
        (trio.CancelScope(deadline=deadline) for _ in range(TASKS)),
        key=id,
        reverse=scopes_by_descending_id,
    )
    woke: list[int] = []

    async def sleeper(position: int, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep_forever()
        woke.append(position)

    async with trio.open_nursery() as nursery:
        for position, scope in enumerate(scopes):
            nursery.start_soon(sleeper, position, scope)
    return woke


def _seeded_run(scopes_by_descending_id: bool) -> list[int]:
    seed_trio_scheduler(7)
    return trio.run(_wake_order, scopes_by_descending_id, clock=virtual_clock())


def test_tasks_woken_at_one_instant_run_in_an_order_memory_addresses_do_not_decide(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """trio expires timeouts due at one instant in the order of their scopes' ids; the seeded
    scheduler must not let that order through. Outside pytest-trio (which turns trio's
    deterministic mode on for the whole test session) it did: `uptax scenario` numbers moved
    with what the process had allocated before the run."""
    monkeypatch.setattr(trio._core._run, "_ALLOW_DETERMINISTIC_SCHEDULING", False)
    ascending = _seeded_run(scopes_by_descending_id=False)
    monkeypatch.setattr(trio._core._run, "_ALLOW_DETERMINISTIC_SCHEDULING", False)
    descending = _seeded_run(scopes_by_descending_id=True)
    assert sorted(ascending) == list(range(TASKS))
    assert ascending == descending
