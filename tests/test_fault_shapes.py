"""The fault shapes that static rules miss: a hidden rate limit (`rate_cap`) in the simulated
backend and the fake provider server, ramping faults on the scenario timeline, and a model's price
changing while the runtime runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from actors.adapters.simulated import SimulatedBackend
from actors.config import Config, LevelConfig, ModelInfo, ProviderConfig
from actors.errors import FailureKind
from actors.faults import Fault, FaultKind, SlidingWindow
from actors.messages import Request
from runtime.embed import open_runtime
from runtime.scenario.format import FaultStep
from runtime.scenario.recorder import Recorder
from runtime.scenario.timeline import Timeline, plan_actions
from runtime.testing import FakeProviderServer, open_fake_provider_server

REQUEST = Request(prompt="say something short", max_tokens=50)


# --- the sliding window ------------------------------------------------------------------------


def test_sliding_window_admits_whole_calls_per_second_and_says_when_there_is_room() -> None:
    window = SlidingWindow()
    assert [window.admit(2.5, 10.0 + i * 0.1) for i in range(2)] == [None, None]
    # The third call in the same second waits until the first leaves the window (at 11.0).
    assert window.admit(2.5, 10.3) == pytest.approx(0.7)
    assert window.admit(2.5, 11.0) is None
    assert window.admit(2.5, 11.05) == pytest.approx(0.05)
    # Below one call a second nothing is admitted.
    assert SlidingWindow().admit(0.5, 0.0) == 1.0


# --- rate_cap in the simulated backend (virtual time) ------------------------------------------


def _backend(**knobs: Any) -> SimulatedBackend:
    config = ProviderConfig(
        name="sim", kind="simulated", models=("m",), latency_ms=0, error_rate=0.0, **knobs
    )
    return SimulatedBackend(config)


async def test_simulated_rate_cap_refuses_calls_beyond_the_rate_with_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = _backend()
    backend.inject(Fault(FaultKind.RATE_CAP, rps=3))
    outcomes = []
    for _ in range(5):
        plan = backend.plan(REQUEST, "m")
        outcomes.append(plan.error)
        await trio.sleep(0.1)
    assert [error is None for error in outcomes] == [True, True, True, False, False]
    refused = outcomes[3]
    assert refused is not None and refused.kind is FailureKind.RATE_LIMITED
    assert refused.status == 429
    # Asked at 0.3 s: the first call (at 0 s) leaves the window at 1 s.
    assert refused.retry_after_s == pytest.approx(0.7)
    await trio.sleep(0.7)
    assert backend.plan(REQUEST, "m").error is None


async def test_simulated_rate_cap_leaves_calls_within_the_rate_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    capped, free = _backend(), _backend()
    capped.inject(Fault(FaultKind.RATE_CAP, rps=5))
    for _ in range(30):
        # Four a second: never over the cap, and the RNG is drawn exactly as without it.
        assert capped.plan(REQUEST, "m") == free.plan(REQUEST, "m")
        await trio.sleep(0.25)


# --- rate_cap in the fake provider server --------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[FakeProviderServer]:
    async with open_fake_provider_server({"gpt": "openai"}) as running:
        yield running


async def _post(client: httpx.AsyncClient, server: FakeProviderServer) -> httpx.Response:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    return await client.post(
        server.url_for("gpt") + "/chat/completions", json=body, headers={"authorization": "Bearer k"}
    )


async def test_fake_server_rate_cap_answers_429_with_retry_after_beyond_the_rate(
    server: FakeProviderServer, mock_clock: trio.testing.MockClock
) -> None:
    # The clock stands still unless jumped: every request below arrives in the same instant.
    server.target("gpt").inject(Fault(FaultKind.RATE_CAP, rps=2))
    async with httpx.AsyncClient(timeout=30.0) as client:
        statuses = [(await _post(client, server)).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        mock_clock.jump(0.4)
        refused = await _post(client, server)
        assert refused.status_code == 429
        assert refused.headers["retry-after-ms"] == "600"
        assert refused.json()["error"]["type"]  # the provider's own 429 body
        mock_clock.jump(0.6)
        assert (await _post(client, server)).status_code == 200


# --- ramps on the timeline ------------------------------------------------------------------


class _TargetRuntime:
    """The timeline's view of a runtime, reaching one fault target (a simulated backend or a
    fake-server provider): what both scenario modes do."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def inject_fault(self, name: str, fault: Fault) -> None:
        self.target.inject(fault)

    def heal(self, name: str) -> None:
        self.target.heal()

    def crash(self, name: str) -> None:
        raise AssertionError("no crash here")

    def set_price(
        self,
        model: str,
        input_usd_per_mtok: float | None = None,
        output_usd_per_mtok: float | None = None,
    ) -> ModelInfo:
        raise AssertionError("no price here")


def _ramp(**fields: Any) -> FaultStep:
    values: dict[str, Any] = {
        "at_s": 10.0,
        "provider": "sim",
        "kind": "errors",
        "rate": 0.6,
        "ramp_s": 30.0,
        "ramp_step_s": 10.0,
        "duration_s": 50.0,
    }
    return FaultStep(**{**values, **fields})


def test_a_ramp_is_injected_again_on_its_steps_then_holds_then_lifts() -> None:
    actions = plan_actions([_ramp()], horizon=100)
    assert [(a.at, a.what) for a in actions] == [
        (10, "inject"), (20, "ramp"), (30, "ramp"), (40, "ramp"), (60, "lift"),
    ]  # fmt: skip
    step = _ramp()
    assert [step.fault_at(a.at - step.at_s).rate for a in actions[:4]] == [0, 0.2, 0.4, 0.6]
    latency = _ramp(kind="latency", rate=1.0, start_factor=2, factor=8, start_delay_s=0.5)
    assert (latency.fault_at(15).factor, latency.fault_at(15).delay_s) == (5, 0.25)
    assert latency.fault_at(99).factor == 8


async def test_a_ramp_reaches_the_simulated_backend_on_the_trio_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = _backend()
    recorder = Recorder(providers=["sim"], levels=["primary"], baseline_price=ModelInfo())
    timeline = Timeline(_TargetRuntime(backend), [_ramp()], recorder, horizon=100)
    seen: list[tuple[float, float | None]] = []
    start = trio.current_time()

    async def watch() -> None:
        for at in (5, 15, 25, 35, 45, 65):
            await trio.sleep_until(start + at)
            faults = backend.faults()
            seen.append((at, faults[0].rate if faults else None))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(timeline.run, start)
        nursery.start_soon(watch)
    assert seen == [(5, None), (15, 0), (25, 0.2), (35, 0.4), (45, 0.6), (65, None)]
    # One window in the report, however many times the fault was injected again.
    assert [(f.start, f.end) for f in recorder.faults] == [(10, 60)]


async def test_a_ramp_reaches_a_fake_server_provider(server: FakeProviderServer) -> None:
    target = server.target("gpt")
    step = _ramp(provider="gpt", kind="latency", rate=1.0, factor=5, ramp_s=20, ramp_step_s=5)
    recorder = Recorder(providers=["gpt"], levels=["primary"], baseline_price=ModelInfo(),
                        clock=lambda: 0.0)  # fmt: skip
    timeline = Timeline(_TargetRuntime(target), [step], recorder, horizon=100)
    factors = []
    for action in plan_actions([step], 100):
        timeline.apply(action, action.at)
        factors.append(target.faults()[0].factor if target.faults() else None)
    assert factors == [1, 2, 3, 4, 5, None]
    server.set_latency("gpt", 0.01)
    target.inject(step.fault_at(10))
    assert target.latency_s() == pytest.approx(0.03)


# --- a price change while running --------------------------------------------------------------


def _priced_config() -> Config:
    return Config(
        providers=(
            ProviderConfig(
                name="sim", kind="simulated", models=("m",), latency_ms=10, error_rate=0.0
            ),
        ),
        levels=(LevelConfig(name="primary", providers=("sim",), timeout_s=10),),
        models={"m": ModelInfo(input_usd_per_mtok=1.0, output_usd_per_mtok=2.0)},
    )


async def test_set_price_changes_the_cost_of_replies_budgets_and_status(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(_priced_config()) as rt:
        with rt.events.subscribe(100) as events:
            before = await rt.complete(REQUEST)
            info = rt.set_price("m", input_usd_per_mtok=10.0)
            after = await rt.complete(REQUEST)
            event = events.receive_nowait()
        assert (info.input_usd_per_mtok, info.output_usd_per_mtok) == (10.0, 2.0)
        usage = after.usage
        assert after.cost_usd == pytest.approx(
            (usage.input_tokens * 10.0 + usage.output_tokens * 2.0) / 1e6
        )
        assert after.cost_usd > before.cost_usd
        assert rt.status().prices_changed == {"m": (10.0, 2.0)}
        assert event.event == "price_changed" and event.fields["model"] == "m"
        # The router's cost estimate (what budgets are held to) follows the new price.
        assert rt.ranker.estimate_cost(REQUEST, "m") == pytest.approx(
            (rt.ranker.prompt_tokens(REQUEST) * 10.0 + REQUEST.max_tokens * 2.0) / 1e6
        )


async def test_set_price_refuses_an_unknown_model_or_a_bad_price(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(_priced_config()) as rt:
        with pytest.raises(ValueError, match="'nope' is not in the config"):
            rt.set_price("nope", 1.0, 1.0)
        with pytest.raises(ValueError, match="output_usd_per_mtok=-1"):
            rt.set_price("m", output_usd_per_mtok=-1)
        assert rt.status().prices_changed == {}


def test_a_price_step_reprices_every_baseline_on_its_model() -> None:
    """The single-provider baseline and each quality's (the cost tier's report) follow a price
    step on their model; a baseline on another model keeps its price."""
    old, new, other = ModelInfo(1.0, 2.0), ModelInfo(4.0, 8.0), ModelInfo(0.5, 0.5)
    recorder = Recorder(
        providers=["sim"],
        levels=["primary"],
        baseline_price=old,
        baseline_model="m",
        quality_prices={"production": old, "draft": other},
        quality_models={"production": "m", "draft": "mini"},
        clock=lambda: 0.0,
    )
    recorder.reprice("m", new)
    assert recorder.baseline_price == new
    assert recorder.quality_prices == {"production": new, "draft": other}
