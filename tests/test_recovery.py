"""Recovery probes while a breaker is open, through the runtime, in virtual time: their interval,
one in flight at most, what a failure and a success do to the breaker, their cost, and their end
with the actor."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
import trio
from support import make_config

import runtime
from actors.adapters.simulated import SimulatedAdapter
from actors.config import RecoveryConfig, parse_config
from actors.errors import ConfigError
from actors.faults import Fault, FaultKind
from actors.messages import BreakerState
from actors.provider import ProviderActor
from actors.recovery import PROBE_REQUEST
from runtime.embed import Runtime, open_runtime
from runtime.kernel.events import Event
from runtime.scenario.format import parse_scenario
from runtime.scenario.runner import run_scenario

REQUEST = runtime.Request(prompt="Summarise the quarterly tax report", deadline_s=10)
OPEN_S = 5.0


def _config(probe: str = "models", interval_s: float = 1.0, timeout_s: float = 3.0) -> Any:
    breaker = {"consecutive_failures": 3, "open_s": OPEN_S, "half_open_probes": 2}
    recovery = {"probe": probe, "interval_s": interval_s, "timeout_s": timeout_s}
    return make_config(
        providers={
            "openai": {"latency_jitter": 0, "breaker": breaker, "recovery": recovery},
        },
        # openai alone in its level: it gets the traffic whenever its breaker lets calls out.
        levels=[
            {"name": "primary", "providers": ["openai"], "timeout_s": 30},
            {"name": "secondary", "providers": ["anthropic"], "timeout_s": 30},
        ],
    )


def _actor(rt: Runtime, name: str = "openai") -> ProviderActor:
    actor = rt.registry.cell(name).actor
    assert isinstance(actor, ProviderActor)
    return actor


def _adapter(rt: Runtime) -> SimulatedAdapter:
    adapter = _actor(rt).adapter
    assert isinstance(adapter, SimulatedAdapter)
    return adapter


async def _trip(rt: Runtime) -> float:
    """Take openai down and send requests until its breaker opens; when it did."""
    rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
    breaker = _actor(rt).breaker
    while breaker.state is not BreakerState.OPEN:
        await rt.complete(REQUEST)
    assert breaker.open_until is not None
    return breaker.open_until - OPEN_S


def _state(rt: Runtime) -> BreakerState:
    return _actor(rt).breaker.state


def _named(events: list[Event], name: str) -> list[Event]:
    return [event for event in events if event.event == name]


async def _collect(rt: Runtime, seconds: float) -> list[Event]:
    """The events of the next `seconds`."""
    seen: list[Event] = []
    with rt.events.subscribe() as events:
        with trio.move_on_after(seconds):
            async for event in events:
                seen.append(event)
    return seen


async def test_probes_go_out_every_interval_and_failures_keep_it_open_without_a_trip(
    autojump_clock: Any,
) -> None:
    async with open_runtime(_config()) as rt:
        opened = await _trip(rt)
        actor, backend = _actor(rt), _adapter(rt).backend
        calls = backend.calls
        events = await _collect(rt, 3 * OPEN_S + 0.5)
        probes = _named(events, "recovery_probe")
        assert [round(e.at - opened, 3) for e in probes] == [float(n) for n in range(1, 16)]
        assert all(e.fields["ok"] is False and e.fields["probe"] == "models" for e in probes)
        # Open all along: no half-open trial reached the dead provider, no trip was counted.
        assert actor.breaker.state is BreakerState.OPEN
        assert actor.breaker.trips == 1
        assert backend.calls == calls
        assert _named(events, "breaker_half_open") == []
        assert backend.probes == 15
        assert actor.snapshot().recovery_probes == 15


async def test_a_successful_probe_turns_the_breaker_half_open_and_traffic_closes_it(
    autojump_clock: Any,
) -> None:
    async with open_runtime(_config()) as rt:
        opened = await _trip(rt)
        actor = _actor(rt)
        async with trio.open_nursery() as nursery:

            async def heal_later() -> None:
                await trio.sleep(2.5)
                rt.heal("openai")

            nursery.start_soon(heal_later)
            events = await _collect(rt, 3.2)
        # Healed at +2.5; the probe at +3 answers after the 100 ms latency.
        (half_open,) = _named(events, "breaker_half_open")
        assert half_open.fields["reason"] == "recovery_probe"
        assert half_open.at - opened == pytest.approx(3.1)
        (recovered,) = _named(events, "provider_recovered")
        assert recovered.fields == {
            "provider": "openai",
            "probe": "models",
            "open_for_s": pytest.approx(3.1),
        }
        assert _state(rt) is BreakerState.HALF_OPEN
        reply = await rt.complete(REQUEST)
        assert reply.provider == "openai"
        await rt.complete(REQUEST)
        assert _state(rt) is BreakerState.CLOSED
        assert actor.breaker.trips == 1


async def test_one_probe_in_flight_at_most(autojump_clock: Any) -> None:
    """A probe that hangs is given up after timeout_s; the next goes out only then."""
    async with open_runtime(_config(interval_s=1.0, timeout_s=3.0)) as rt:
        opened = await _trip(rt)
        rt.heal("openai")
        rt.inject_fault("openai", Fault(FaultKind.HANG))
        adapter = _adapter(rt)
        real = adapter.probe_models
        out: list[int] = [0]
        most: list[int] = [0]
        started: list[float] = []

        async def counting() -> None:
            out[0] += 1
            most[0] = max(most[0], out[0])
            started.append(trio.current_time() - opened)
            try:
                await real()
            finally:
                out[0] -= 1

        adapter.probe_models = counting  # type: ignore[method-assign]
        events = await _collect(rt, 10.5)
        assert most[0] == 1
        assert [round(t, 3) for t in started] == [1.0, 4.0, 7.0, 10.0]
        assert [e.fields["error"] for e in _named(events, "recovery_probe")] == ["timeout"] * 3
        assert _actor(rt).breaker.state is BreakerState.OPEN


async def test_a_probe_in_flight_is_cancelled_with_its_actor(autojump_clock: Any) -> None:
    async with open_runtime(_config(timeout_s=30.0)) as rt:
        await _trip(rt)
        rt.heal("openai")
        rt.inject_fault("openai", Fault(FaultKind.HANG))
        old = _actor(rt)
        cancelled: list[bool] = []
        adapter = _adapter(rt)

        async def hanging() -> None:
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                cancelled.append(True)
                raise

        adapter.probe_models = hanging  # type: ignore[method-assign]
        await trio.sleep(1.5)
        assert old.recovery is not None and old.recovery.in_flight
        await rt.restart("openai")
        assert cancelled == [True]
        assert not old.recovery.in_flight
        new = _actor(rt)
        assert new is not old and new.recovery is not None
        # The new incarnation takes up the open breaker and probes it in turn.
        assert new.breaker.state is BreakerState.OPEN
        assert new.recovery.probes == 0  # the cancelled probe never ended
        rt.heal("openai")
        await trio.sleep(1.5)
        assert new.recovery.probes == 1
        assert new.breaker.state is BreakerState.HALF_OPEN


async def test_completion_probes_are_counted_in_cost(autojump_clock: Any) -> None:
    async with open_runtime(_config(probe="completion")) as rt:
        opened = await _trip(rt)
        backend = _adapter(rt).backend
        calls = backend.calls
        async with trio.open_nursery() as nursery:

            async def heal_later() -> None:
                await trio.sleep(2.5)
                rt.heal("openai")

            nursery.start_soon(heal_later)
            events = await _collect(rt, 3.5)
        probes = _named(events, "recovery_probe")
        assert [round(e.at - opened, 1) for e in probes] == [1.0, 2.0, 3.1]
        assert [e.fields["ok"] for e in probes] == [False, False, True]
        # Three completions reached the provider; the one that answered costs one input token
        # and one output token of its first model, gpt-4o (2.5 and 10 USD per million).
        assert backend.calls == calls + 3
        assert backend.probes == 0
        cost = (2.5 + 10.0) / 1e6
        assert probes[-1].fields["cost_usd"] == pytest.approx(cost)
        snapshot = _actor(rt).snapshot()
        assert snapshot.recovery_probes == 3
        assert snapshot.probe_cost_usd == pytest.approx(cost)
        assert _actor(rt).breaker.state is BreakerState.HALF_OPEN


async def test_no_probes_while_a_retry_after_runs(autojump_clock: Any) -> None:
    """A rate limit's Retry-After holds the breaker open; it asks us to wait, so no probe goes."""
    async with open_runtime(_config()) as rt:
        rt.inject_fault("openai", Fault(FaultKind.RATE_LIMIT, retry_after_s=4.0))
        await rt.complete(REQUEST)
        assert _actor(rt).breaker.state is BreakerState.OPEN
        events = await _collect(rt, 3.5)
        assert _named(events, "recovery_probe") == []
        assert _adapter(rt).backend.probes == 0


async def test_probes_leave_the_calls_random_draws_alone(autojump_clock: Any) -> None:
    """Probes draw from their own generator: the latencies calls see are the same with probes
    on or off, so a virtual run compares them side by side."""
    latencies = []
    for probe in ("models", "off"):
        async with open_runtime(_config(probe=probe)) as rt:
            await _trip(rt)
            rt.heal("openai")
            rt.inject_fault("openai", Fault(FaultKind.ERRORS, rate=0.9))
            await trio.sleep(3.5)
            backend = _adapter(rt).backend
            assert backend.probes == (3 if probe == "models" else 0)
            backend.configure(latency_jitter=0.5)
            latencies.append([backend.plan(PROBE_REQUEST, "gpt-4o").latency_s for _ in range(5)])
    assert latencies[0] == latencies[1]


# -- which providers probe, and the config --------------------------------------------------------


def _provider(**fields: Any) -> dict[str, Any]:
    return {"name": "p", "models": ["m"], **fields}


@pytest.mark.parametrize(
    ("kind", "probe", "resolved"),
    [
        ("openai", "auto", "models"),
        ("gemini", "auto", "models"),
        ("ollama", "auto", "models"),
        ("simulated", "auto", "off"),
        ("cache", "auto", "off"),
        ("simulated", "models", "models"),
        ("anthropic", "completion", "completion"),
        ("openai", "off", "off"),
    ],
)
def test_auto_probes_http_kinds_only(kind: str, probe: str, resolved: str) -> None:
    config = parse_config(
        {
            "providers": [_provider(kind=kind, recovery={"probe": probe})],
            "levels": [{"name": "primary", "providers": ["p"]}],
        }
    )
    assert config.providers[0].recovery_probe == resolved


def test_the_default_is_auto_every_second() -> None:
    assert RecoveryConfig() == RecoveryConfig(probe="auto", interval_s=1.0, timeout_s=5.0)


async def test_a_provider_that_does_not_probe_has_no_probing_task(autojump_clock: Any) -> None:
    async with open_runtime(_config(probe="off")) as rt:
        await _trip(rt)
        assert _actor(rt).recovery is None
        events = await _collect(rt, 3.0)
        assert _named(events, "recovery_probe") == []


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        (
            {"kind": "cache", "recovery": {"probe": "models"}},
            "providers[0]: recovery.probe='models': a cache provider has nothing to probe",
        ),
        (
            {"kind": "openai", "recovery": {"probe": "sometimes"}},
            "providers[0].recovery.probe: 'sometimes' is not one of: auto, models, completion, off",
        ),
        (
            {"kind": "openai", "recovery": {"interval_s": 0}},
            "providers[0].recovery: interval_s=0.0 must be > 0",
        ),
        (
            {"kind": "openai", "recovery": {"timeout_s": -1.0}},
            "providers[0].recovery: timeout_s=-1.0 must be > 0",
        ),
        (
            {"kind": "openai", "recovery": {"every_s": 1.0}},
            "providers[0].recovery: unknown key(s) every_s",
        ),
    ],
)
def test_bad_recovery_settings_are_config_errors(provider: dict[str, Any], message: str) -> None:
    data = {
        "providers": [_provider(name="p", **provider)],
        "levels": [{"name": "primary", "providers": ["p"]}],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert message in str(caught.value)


# -- a virtual scenario sees them --------------------------------------------------------------

OUTAGE_SCENARIO = """
[scenario]
name = "probed-outage"
base = "demo"
seed = 5

[[providers]]
name = "openai"
recovery = {{ probe = "{probe}" }}

[load]
rps = 5
duration_s = 75

[[faults]]
at_s = 10
provider = "openai"
kind = "outage"
duration_s = 30
"""


def test_a_virtual_scenario_sees_a_simulated_provider_answer_probes() -> None:
    """The same outage with probes off and on: the provider is back within a probe interval
    or so of recovering instead of after the open periods, and its breaker trips once."""
    faults = {}
    for probe in ("off", "models"):
        scenario = parse_scenario(tomllib.loads(OUTAGE_SCENARIO.format(probe=probe)))
        report = json.loads(run_scenario(scenario).to_json())
        (fault,) = report["faults"]
        (openai,) = [p for p in report["providers"] if p["name"] == "openai"]
        faults[probe] = (fault["recovery_s"], openai["breaker_trips"])
    assert faults["models"][0] <= 3.0 < faults["off"][0], faults
    assert faults["models"][1] == 1 < faults["off"][1], faults
