"""A fleet in one virtual-time run (``[fleet]``): the table, the load spread round-robin, one
fault every instance meets, the store's propagation delay, the report's per-instance and fleet
totals (and nothing new without a fleet), when each instance had a provider back after a fault,
and a comparison of a shared store with none."""

from __future__ import annotations

import contextlib
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from support import drain

from actors.config import ModelInfo
from actors.faults import Fault, FaultKind
from actors.messages import Attempt, Complexity, Quality, Reply
from runtime import Request
from runtime.embed import Runtime
from runtime.scenario.checks import check_expectations
from runtime.scenario.cli import main
from runtime.scenario.compare import Comparison, compare, run_numbers, variants_to_compare
from runtime.scenario.fleet import FleetFaults, open_fleet
from runtime.scenario.fleet_measure import fleet_recovery
from runtime.scenario.format import (
    Expectations,
    FleetInfo,
    Scenario,
    ScenarioError,
    parse_scenario,
)
from runtime.scenario.html import render_html
from runtime.scenario.lagged import LaggedStore
from runtime.scenario.recorder import AppliedFault, Recorder
from runtime.scenario.report import Report, build_report
from runtime.scenario.runner import _drive, _open_targets, run_scenario
from runtime.scenario.terminal import render_terminal

FLEET = """
[scenario]
name = "small-fleet"
base = "demo"
seed = 7

[fleet]
instances = 3
sync_delay_ms = 50

[state]
backend = "redis"
url = "redis://in-process"

[[providers]]
name = "openai"
breaker = { open_max_s = 30, consecutive_failures = 2 }

[load]
rps = 6
duration_s = 60

[[load.mix]]
complexity = "moderate"
quality = "production"

[[faults]]
at_s = 15
provider = "openai"
kind = "outage"
duration_s = 35

[[variants]]
name = "isolated"
state = { backend = "memory" }
"""

REQUEST = Request(
    prompt="Summarise the quarterly tax report",
    complexity=Complexity.MODERATE,
    quality=Quality.PRODUCTION,
    max_tokens=200,
)


def scenario(text: str = FLEET, **fleet: Any) -> Scenario:
    data = tomllib.loads(text)
    data.setdefault("fleet", {}).update(fleet)
    return parse_scenario(data, source="fleet.toml")


def without_fleet() -> Scenario:
    data = tomllib.loads(FLEET)
    del data["fleet"], data["state"], data["variants"]
    data["scenario"]["name"] = "single"
    data["load"]["duration_s"] = 30
    return parse_scenario(data, source="single.toml")


# -- the table --------------------------------------------------------------------------------


def test_the_fleet_table_is_parsed_and_optional() -> None:
    assert scenario().fleet == FleetInfo(instances=3, sync_delay_ms=50.0)
    assert without_fleet().fleet is None
    data = tomllib.loads(FLEET)
    data["fleet"] = {}
    assert parse_scenario(data).fleet == FleetInfo(instances=1, sync_delay_ms=0.0)


@pytest.mark.parametrize(
    ("fleet", "key"),
    [
        ({"instances": 0}, "key instances"),
        ({"instances": 2.5}, "key instances"),
        ({"sync_delay_ms": -1}, "key sync_delay_ms"),
        ({"nodes": 3}, "key nodes: unknown key"),
    ],
)
def test_a_wrong_fleet_key_is_named(fleet: dict[str, Any], key: str) -> None:
    with pytest.raises(ScenarioError, match=rf"fleet\.toml: table \[fleet\], {key}"):
        scenario(**fleet)


# -- the store's propagation delay ----------------------------------------------------------


async def test_published_writes_land_after_the_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = LaggedStore(0.2)
    await store.hold("hold:openai:open", "i1|", 10.0)
    assert await store.holds(["hold:openai:open"]) == [None]
    assert await store.claim("probe:openai", "i1", 5.0)  # atomic operations: at once
    assert not await store.claim("probe:openai", "i2", 5.0)
    await trio.sleep(0.19)
    assert await store.holds(["hold:openai:open"]) == [None]
    await trio.sleep(0.01)
    [found] = await store.holds(["hold:openai:open"])
    assert found is not None and found[0] == "i1|"
    assert found[1] == pytest.approx(9.8)  # ends when its writer meant it to
    # A delete lands late as well, after a hold published before it, never under it.
    await store.hold("hold:openai:open", "i2|", 20.0)
    await store.delete(["hold:openai:open"])
    await trio.sleep(0.2)
    assert await store.holds(["hold:openai:open"]) == [None]


def breaker(rt: Runtime, provider: str = "openai") -> str:
    snapshot = rt.provider_snapshot(provider)
    assert snapshot is not None
    return snapshot.breaker.state.value


async def trip_on_first(runtimes: list[Runtime]) -> float:
    """Fail openai (one outage for the fleet) and send requests through the first instance
    until its breaker opens; when it opened (its event's time)."""
    with runtimes[0].events.subscribe(10_000) as events:
        FleetFaults(runtimes).inject_fault("openai", Fault(FaultKind.OUTAGE))
        while breaker(runtimes[0]) != "open":
            await runtimes[0].complete(REQUEST)
        return next(
            event.at
            for event in drain(events)
            if event.event == "breaker_opened" and event.fields["provider"] == "openai"
        )


async def watch_open(rt: Runtime, seen: list[float]) -> None:
    """Note when `rt`'s openai breaker is first seen open, looking every 10 ms (polling its
    status, as an operator would: the hold reaches it at a sync, with no event to wait on)."""
    for _ in range(100_000):
        if breaker(rt) == "open":
            seen.append(trio.current_time())
            return
        await trio.sleep(0.01)


async def seen_by_second(runtimes: list[Runtime]) -> tuple[float, list[float]]:
    """When the first instance tripped, and when the second saw it (if within 2 s)."""
    seen: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_open, runtimes[1], seen)
        tripped = await trip_on_first(runtimes)
        await trio.sleep(2.0)
        nursery.cancel_scope.cancel()
    return tripped, seen


async def test_another_instance_sees_a_trip_after_the_delay_and_its_sync(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = scenario()
    async with open_fleet(fleet, FleetInfo(instances=2, sync_delay_ms=300)) as runtimes:
        tripped, seen = await seen_by_second(runtimes)
    sync_s = fleet.config.state.sync_interval_s
    assert len(seen) == 1
    assert tripped + 0.3 <= seen[0] <= tripped + 0.3 + sync_s + 0.01


async def test_without_a_shared_store_the_others_never_hear_of_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    isolated = scenario().under(scenario().variants[0])
    async with open_fleet(isolated, FleetInfo(instances=2)) as runtimes:
        _, seen = await seen_by_second(runtimes)
    assert seen == []


# -- one fault for the fleet -----------------------------------------------------------------


async def test_every_instance_draws_with_the_runs_seed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Learned selection's sampler is seeded from the run's seed in a fleet as in one runtime."""
    async with _open_targets(scenario(), seed=5, mode="virtual", repl_socket=None) as runtimes:
        assert [rt.config.routing.learned_seed for rt in runtimes] == [5, 5, 5]


async def test_a_fault_is_one_fault_every_instance_meets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Isolated: sharing the store, the fleet's run of failures would trip before the third.
    isolated = scenario().under(scenario().variants[0])
    async with open_fleet(isolated, FleetInfo(instances=3)) as runtimes:
        targets = {id(rt.fault_target("openai")) for rt in runtimes}
        assert len(targets) == 1
        FleetFaults(runtimes).inject_fault("openai", Fault(FaultKind.OUTAGE))
        for rt in runtimes:
            reply = await rt.complete(REQUEST)
            first = reply.attempts[0]
            assert (first.provider, first.outcome) == ("openai", "server_error")
        assert runtimes[2].fault_target("openai").calls == 3  # type: ignore[attr-defined]


# -- the report ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    """The fleet sharing its store (the baseline) and isolated, at seed 7."""
    fleet = scenario()
    return compare(fleet, variants_to_compare(fleet), [7])


@pytest.fixture
def fleet_report(comparison: Comparison) -> Report:
    return comparison.results[0].report


def test_the_load_is_spread_round_robin(fleet_report: Report) -> None:
    fleet = fleet_report.data["fleet"]
    issued = fleet_report.data["requests"]["issued"]
    counts = [instance["requests"] for instance in fleet["per_instance"]]
    assert [i["id"] for i in fleet["per_instance"]] == ["i1", "i2", "i3"]
    assert sum(counts) == issued == fleet["total"]["requests"]
    assert max(counts) - min(counts) <= 1
    assert fleet["spread"] == "round-robin" and fleet["shared"]


def test_the_report_has_each_instance_and_the_fleet(fleet_report: Report) -> None:
    data = fleet_report.data
    fleet, total = data["fleet"], data["fleet"]["total"]
    instances = fleet["per_instance"]
    assert total["answered"] == data["requests"]["answered"]
    assert total["cost_usd"] == pytest.approx(data["cost"]["total_usd"])
    assert total["availability"] == data["availability"]
    openai = [instance["providers"]["openai"] for instance in instances]
    for key in ("calls", "failed", "wasted", "breaker_trips"):
        assert total["providers"]["openai"][key] == sum(calls[key] for calls in openai)
    # The outage reached every instance; only one needed to trip for all to stop calling.
    assert all(calls["wasted"] > 0 for calls in openai)
    assert total["breaker_trips"] >= 1
    assert total["wasted_calls"] == sum(i["wasted_calls"] for i in instances)
    terminal = render_terminal(fleet_report)
    assert "fleet of 3 instances sharing one store, writes seen 50 ms late" in terminal
    assert "fleet by provider: failed / wasted calls, breaker trips" in terminal
    page = render_html(fleet_report)
    assert "<h2>Fleet</h2>" in page and "<td>i3</td>" in page


def test_the_fleet_wasted_calls_are_an_expectation(fleet_report: Report) -> None:
    wasted = fleet_report.data["fleet"]["total"]["wasted_calls"]
    for limit, passed in ((wasted, True), (wasted - 1, False)):
        expect = Expectations(fleet_wasted_calls_max=limit)
        [check] = [
            c for c in check_expectations(expect, fleet_report.data, {}) if "fleet" in c.name
        ]
        assert (check.measured, check.passed) == (wasted, passed)
    data = tomllib.loads(FLEET)
    del data["fleet"]
    data["expect"] = {"fleet_wasted_calls_max": 10}
    with pytest.raises(ScenarioError, match="key fleet_wasted_calls_max: needs a"):
        parse_scenario(data)


def test_one_instance_reports_carry_nothing_of_fleets() -> None:
    report = run_scenario(without_fleet())
    assert "fleet" not in report.data
    assert "fleet of" not in render_terminal(report)
    assert "<h2>Fleet</h2>" not in render_html(report)


def test_a_fleet_runs_in_virtual_mode_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="virtual mode only"):
        run_scenario(scenario(), mode="http")
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET, encoding="utf-8")
    assert main(["run", str(path), "--mode", "http"]) == 2
    assert "table [fleet]: runs in virtual mode only" in capsys.readouterr().err


# -- compare ---------------------------------------------------------------------------------


def test_sharing_the_store_wastes_fewer_calls_than_isolated_instances(
    comparison: Comparison,
) -> None:
    wasted = {r.variant.name: r.runs[0]["wasted_calls"] for r in comparison.results}
    assert set(wasted) == {"baseline", "isolated"}
    assert wasted["baseline"] < wasted["isolated"]
    fleets = {r.variant.name: r.report.data["fleet"] for r in comparison.results}
    assert fleets["baseline"]["shared"] and not fleets["isolated"]["shared"]
    trips = {name: fleet["total"]["breaker_trips"] for name, fleet in fleets.items()}
    assert trips["isolated"] > trips["baseline"]


# -- back in rotation, per instance ----------------------------------------------------------

#: fleet-outage, shorter: OpenAI down from 20 s to 60 s; the open period (30 s at most) ends
#: with one instance's probes, whose success closes the others' breakers at their next sync.
BACK = """
[scenario]
name = "fleet-back"
base = "demo"
seed = 7

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
weight = 3
complexity = "moderate"
quality = "production"

[[load.mix]]
complexity = "simple"
quality = "draft"

[[faults]]
at_s = 20
provider = "openai"
kind = "outage"
duration_s = 40
"""


def first_close_after(events: trio.MemoryReceiveChannel[Any], at: float) -> tuple[float, str]:
    """When an instance's openai breaker first closed at or after trio time `at`, and why."""
    return next(
        (event.at, str(event.fields["reason"]))
        for event in drain(events)
        if event.event == "breaker_closed"
        and event.fields["provider"] == "openai"
        and event.at >= at
    )


async def test_each_instance_is_back_with_the_first_answer_through_it_once_its_breaker_let_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    back = scenario(BACK)
    async with _open_targets(back, seed=7, mode="virtual", repl_socket=None) as runtimes:
        with contextlib.ExitStack() as stack:
            streams = [stack.enter_context(rt.events.subscribe(100_000)) for rt in runtimes]
            recorder = await _drive(back, 7, runtimes, None)
            report = build_report(recorder, back, seed=7, mode="virtual")
            [recovery] = report.data["fleet"]["recovery"]
            end = recorder.t0 + recovery["end_s"]
            closes = [first_close_after(events, end) for events in streams]
    per_instance = recovery["per_instance_s"]
    assert None not in per_instance
    reasons = sorted(reason for _, reason in closes)
    assert reasons == ["fleet_closed", "fleet_closed", "probes_succeeded"]
    for (closed, reason), seconds in zip(closes, per_instance, strict=True):
        answered = end + seconds
        if reason == "probes_succeeded":
            # The instance that probed: back with its first probe's answer, closed after them.
            assert answered <= closed + 1e-6
            assert seconds == min(per_instance) == report.data["faults"][0]["recovery_s"]
        else:
            # Closed by the prober's notice: nothing went to openai through it before that.
            assert closed < answered <= closed + 3.0
    assert recovery["fleet_s"] == max(per_instance)


def outage_recorder(back: Scenario) -> Recorder:
    """Two instances, openai out in two windows, 10-14 s and 16-20 s: requests every second,
    even ones through i1, odd ones through i2. Both call openai before the outage; after its
    first window openai answers (in 0.5 s) i2's request at 17 s and i1's at 22 s, and none of
    i2's after the second."""
    recorder = Recorder(
        providers=["openai", "anthropic"],
        levels=["primary"],
        baseline_price=ModelInfo(),
        clock=lambda: 0.0,
    )
    for index in range(30):
        at = float(index)
        provider = "anthropic"
        if at < 10 or at in (17, 22):
            provider = "openai"
        attempt = Attempt(provider, "m", "primary", "ok", 500.0)
        reply = Reply("answer", provider, "m", "primary", False, (attempt,), 500.0, 0.001)
        recorder.record_reply(
            index=index,
            mix=0,
            stream=False,
            arrival=at,
            started=at,
            finished=at + 0.5,
            reply=reply,
            budget_usd=None,
            prompt_chars=100,
        )
    recorder.issued = 30
    for start, end in ((10.0, 14.0), (16.0, 20.0)):
        recorder.record_fault(AppliedFault(0, "openai", "flapping", start, end, "openai flaps"))
    return recorder


def fleet_back_row(terminal: str) -> str:
    """The first row of the terminal's table of each instance back in rotation."""
    lines = terminal.splitlines()
    header = next(n for n, line in enumerate(lines) if line.startswith("fleet back in rotation"))
    return lines[header + 3]  # after the column names and the rule


def test_an_instance_that_never_had_the_provider_back_gives_never() -> None:
    back = scenario(BACK, instances=2)
    report = build_report(outage_recorder(back), back, seed=7, mode="virtual")
    [recovery] = report.data["fleet"]["recovery"]
    # i1: back at 22.5 s, the worst of its windows 8.5 s after the first's end; i2: 3.5 s
    # after the first window, never after the second.
    assert recovery["per_instance_s"] == [8.5, None]
    assert recovery["fleet_s"] is None
    assert report.data["faults"][0]["recovery_s"] == 3.5  # the first instance back, after both
    expect = Expectations(fleet_recovery_s_max=100)
    [check] = [c for c in check_expectations(expect, report.data, {}) if "every" in c.name]
    assert (check.measured, check.passed) == (None, False)
    assert fleet_back_row(render_terminal(report)).split() == [
        "openai",
        "flaps",
        "8.50",
        "never",
        "never",
    ]
    assert "<td>openai flaps</td><td>8.50</td><td>never</td><td>never</td>" in render_html(report)


@pytest.fixture(scope="module")
def back_run() -> tuple[Report, Recorder]:
    """fleet-back's run at seed 7: its report, and what was recorded."""
    recorders: list[Recorder] = []
    report = run_scenario(scenario(BACK), on_recorder=recorders.append)
    return report, recorders[0]


def test_the_report_shows_each_instance_back_and_the_fleet_last(
    back_run: tuple[Report, Recorder],
) -> None:
    report, _ = back_run
    [recovery] = report.data["fleet"]["recovery"]
    times = [f"{value:.2f}" for value in recovery["per_instance_s"]]
    assert recovery["fleet_s"] == max(recovery["per_instance_s"])
    terminal = render_terminal(report)
    assert "fleet back in rotation s (fault end -> first answer through each instance" in terminal
    row = fleet_back_row(terminal)
    assert row.split() == ["outage", "on", "openai", *times, f"{recovery['fleet_s']:.2f}"]
    cells = "".join(f"<td>{t}</td>" for t in [*times, f"{recovery['fleet_s']:.2f}"])
    assert f"<td>outage on openai</td>{cells}" in render_html(report)


def test_compare_shows_the_fleets_last_instance_back_for_fleets_only(
    back_run: tuple[Report, Recorder], comparison: Comparison
) -> None:
    report, recorder = back_run
    numbers = run_numbers(report.data, recorder)
    [recovery] = report.data["fleet"]["recovery"]
    assert numbers["fleet_recovery_s"] == recovery["fleet_s"] > numbers["recovery_s"]
    assert "fleet_recovery_s" in [metric.key for metric in comparison.metrics]
    for result in comparison.results:
        expected = fleet_recovery(result.report.data["fleet"])
        assert result.runs[0]["fleet_recovery_s"] == expected
    assert "every instance" in comparison.data["definitions"]["fleet_recovery_s"]
    single = Comparison(without_fleet(), (1,), ())
    assert "fleet_recovery_s" not in [metric.key for metric in single.metrics]
    assert "recovery_s" in [metric.key for metric in single.metrics]


def test_the_fleets_last_instance_back_is_an_expectation(
    back_run: tuple[Report, Recorder],
) -> None:
    report, _ = back_run
    last = report.data["fleet"]["recovery"][0]["fleet_s"]
    for limit, passed in ((last, True), (last - 0.01, False)):
        expect = Expectations(fleet_recovery_s_max=limit)
        [check] = [
            c for c in check_expectations(expect, report.data, {}) if "every instance" in c.name
        ]
        assert (check.measured, check.passed) == (last, passed)
    data = tomllib.loads(BACK)
    data["expect"] = {"fleet_recovery_s_max": 60}
    assert parse_scenario(data).expect.fleet_recovery_s_max == 60
    del data["fleet"]
    with pytest.raises(ScenarioError, match="key fleet_recovery_s_max: needs a"):
        parse_scenario(data)
