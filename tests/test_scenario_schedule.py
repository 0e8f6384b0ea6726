"""A virtual run's schedule is a function of its seed, not of where its objects sit in memory."""

from __future__ import annotations

import json
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


#: fleet-outage, shorter: three instances sharing state, then each on its own.
FLEET = """
[scenario]
name = "short-fleet-outage"
base = "demo"
seed = 1

[fleet]
instances = 3
sync_delay_ms = 50

[state]
backend = "redis"
url = "redis://in-process"

[[providers]]
name = "openai"
breaker = { open_max_s = 30 }

[load]
rps = 12
duration_s = 100

[[load.mix]]
complexity = "moderate"

[[faults]]
at_s = 20
provider = "openai"
kind = "outage"
duration_s = 60

[[variants]]
name = "isolated"
state = { backend = "memory" }
"""


#: Runs the command after allocating `sys.argv[1]` throwaway objects: what a process did
#: before the run (its imports, an earlier run) moves where the run's objects sit in memory.
CLI_AFTER_ALLOCATING = (
    "import sys; junk = [dict(a=i) for i in range(int(sys.argv[1]))]; "
    "from runtime.scenario.cli import main; sys.exit(main(sys.argv[2:]))"
)


def _uptax_scenario(args: list[str], hash_seed: str, allocated: int) -> None:
    subprocess.run(
        [sys.executable, "-c", CLI_AFTER_ALLOCATING, str(allocated), *args],
        check=True,
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        timeout=300,
    )


def test_a_fleet_compare_is_the_same_bytes_in_any_process_and_each_column_its_run(
    tmp_path: Path,
) -> None:
    """Other processes (no pytest-trio), other hash seeds, other allocations before the run:
    the comparison is the same bytes, and the variant run second in it has the numbers of its
    own `run`. (Before trio's deterministic scheduling, the costs differed.)"""
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET, encoding="utf-8")
    compared = []
    for hash_seed, allocated in (("1", 0), ("2", 20_000)):
        out = tmp_path / f"compare{hash_seed}.json"
        args = ["compare", str(path), "--seed", "1", "--json", str(out)]
        _uptax_scenario(args, hash_seed, allocated)
        compared.append(out.read_bytes())
    assert compared[0] == compared[1]
    run_out = tmp_path / "isolated.json"
    args = ["run", str(path), "--variant", "isolated", "--seed", "1", "--json", str(run_out)]
    _uptax_scenario(args, "3", 5_000)
    report = json.loads(run_out.read_text(encoding="utf-8"))
    isolated = json.loads(compared[0])["variants"][1]
    assert isolated["name"] == "isolated"
    (numbers,) = isolated["runs"]
    assert numbers["p99_ms"] == report["latency_ms"]["p99"]
    assert numbers["p50_ms"] == report["latency_ms"]["p50"]
    assert numbers["cost_usd"] == report["cost"]["total_usd"]
    assert numbers["availability"] == report["availability"]
