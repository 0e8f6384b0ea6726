"""The seeded load generator and the fault timeline's plan."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import attrs
import pytest

from actors.config import ModelInfo
from actors.faults import Fault, FaultKind
from actors.messages import Request
from runtime.scenario.format import FaultStep, LoadProfile, MixEntry, RatePhase
from runtime.scenario.load import LoadGenerator, prompt_text
from runtime.scenario.recorder import Recorder
from runtime.scenario.timeline import Timeline, plan_actions


def _profile(**changes: Any) -> LoadProfile:
    profile = LoadProfile(rps=20, duration_s=100)
    return attrs.evolve(profile, **changes)


def test_same_seed_same_schedule_different_seed_different_times() -> None:
    profile = _profile(stream_fraction=0.5, mix=(MixEntry(weight=1), MixEntry(weight=2)))
    first = [(p.at, p.mix, p.stream, p.request) for p in LoadGenerator(profile, 3)]
    again = [(p.at, p.mix, p.stream, p.request) for p in LoadGenerator(profile, 3)]
    other = [(p.at, p.mix, p.stream, p.request) for p in LoadGenerator(profile, 4)]
    assert first == again
    assert [t for t, *_ in first] != [t for t, *_ in other]


def test_each_request_is_what_building_it_from_its_mix_entry_gives() -> None:
    """Requests of one (mix, number) are copies of the first with their own task id: equal,
    field by field, to a `Request` built and validated from the entry."""
    mix = (MixEntry(weight=1, budget_usd=0.01, max_tokens=60), MixEntry(weight=1, cost="low"))
    profile = _profile(prompts=3, mix=mix, deadline_s=20.0)
    planned = list(LoadGenerator(profile, 5))
    assert len({(p.mix, p.request.prompt) for p in planned}) < len(planned)  # repeats happen
    for p in planned:
        entry = mix[p.mix]
        built = Request(
            prompt=p.request.prompt,
            complexity=entry.complexity,
            quality=entry.quality,
            budget_usd=entry.budget_usd,
            cost=entry.cost,
            max_tokens=entry.max_tokens,
            deadline_s=20.0,
            task_id=f"scenario-{p.index}",
        )
        assert attrs.asdict(p.request) == attrs.asdict(built)
        assert p.request == built and hash(p.request) == hash(built)
        assert p.request.conversation == built.conversation


def test_poisson_arrivals_follow_the_rate_and_stay_in_order() -> None:
    planned = list(LoadGenerator(_profile(), 1))
    times = [p.at for p in planned]
    assert times == sorted(times)
    assert all(0 < t < 100 for t in times)
    # 2,000 expected; a Poisson count is within 4 sigma (about 180) of that.
    assert 1820 < len(planned) < 2180
    assert [p.index for p in planned] == list(range(len(planned)))


def test_uniform_arrivals_are_evenly_spaced() -> None:
    planned = list(LoadGenerator(_profile(arrivals="uniform", rps=4, duration_s=10), 1))
    assert len(planned) == 39  # 0.25, 0.5, ..., 9.75
    gaps = {round(b.at - a.at, 9) for a, b in itertools.pairwise(planned)}
    assert gaps == {0.25}


def test_rate_phases_change_the_rate_and_a_zero_rate_pauses() -> None:
    profile = _profile(
        arrivals="uniform",
        rps=1,
        duration_s=30,
        phases=(RatePhase(at_s=10, rps=10), RatePhase(at_s=20, rps=0)),
    )
    planned = list(LoadGenerator(profile, 1))
    per_phase = Counter(int(p.at // 10) for p in planned)
    assert per_phase[0] == 9
    assert 99 <= per_phase[1] <= 100
    assert per_phase[2] == 0


def test_mix_weights_budgets_and_stream_fractions() -> None:
    profile = _profile(
        duration_s=200,
        stream_fraction=0.0,
        mix=(
            MixEntry(weight=3, complexity="trivial", quality="draft", budget_usd=0.01),
            MixEntry(weight=1, complexity="expert", stream_fraction=1.0, max_tokens=50),
        ),
    )
    planned = list(LoadGenerator(profile, 9))
    counts = Counter(p.mix for p in planned)
    share = counts[0] / len(planned)
    assert 0.70 < share < 0.80
    for p in planned:
        if p.mix == 0:
            assert p.request.complexity == "trivial" and p.request.budget_usd == 0.01
            assert not p.stream
        else:
            assert p.request.complexity == "expert" and p.request.max_tokens == 50
            assert p.stream


def test_prompts_repeat_within_the_pool_and_have_the_asked_length() -> None:
    profile = _profile(prompts=5, mix=(MixEntry(prompt_chars=300),))
    prompts = {p.request.last_user_text for p in LoadGenerator(profile, 2)}
    assert len(prompts) == 5
    assert all(len(prompt) == 300 for prompt in prompts)
    assert prompt_text(0, 1, 50) == prompt_text(0, 1, 50) != prompt_text(0, 2, 50)


# --- the timeline ------------------------------------------------------------------------


def _step(**fields: Any) -> FaultStep:
    values: dict[str, Any] = {"at_s": 10.0, "provider": "openai", "kind": "outage"}
    values.update(fields)
    return FaultStep(**values)


def test_flapping_becomes_down_windows_and_ends_come_before_starts() -> None:
    steps = [_step(kind="flapping", down_s=5, up_s=5, duration_s=20)]
    actions = plan_actions(steps, horizon=100)
    assert [(a.at, a.what) for a in actions] == [
        (10, "inject"),
        (15, "lift"),
        (20, "inject"),
        (25, "lift"),
    ]
    back_to_back = plan_actions([_step(duration_s=5), _step(at_s=15, duration_s=5)], 100)
    assert [(a.at, a.what, a.step) for a in back_to_back] == [
        (10, "inject", 0),
        (15, "lift", 0),
        (15, "inject", 1),
        (20, "lift", 1),
    ]


def test_crash_loop_crashes_every_period_within_its_window() -> None:
    actions = plan_actions([_step(kind="crash", every_s=3, duration_s=10)], horizon=100)
    assert [(a.at, a.what) for a in actions] == [
        (10, "open"),
        (10, "crash"),
        (13, "crash"),
        (16, "crash"),
        (19, "crash"),
        (20, "close"),
    ]
    single = plan_actions([_step(kind="crash")], horizon=100)
    assert [(a.at, a.what) for a in single] == [(10, "crash")]


class FakeRuntime:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, FaultKind | None]] = []
        self.prices: list[tuple[str, float | None, float | None]] = []

    def inject_fault(self, name: str, fault: Fault) -> None:
        self.calls.append(("inject", name, fault.kind))

    def heal(self, name: str) -> None:
        self.calls.append(("heal", name, None))

    def crash(self, name: str) -> None:
        self.calls.append(("crash", name, None))

    def set_price(
        self,
        model: str,
        input_usd_per_mtok: float | None = None,
        output_usd_per_mtok: float | None = None,
    ) -> ModelInfo:
        self.prices.append((model, input_usd_per_mtok, output_usd_per_mtok))
        return ModelInfo(input_usd_per_mtok or 0.0, output_usd_per_mtok or 0.0)


def _recorder() -> Recorder:
    return Recorder(
        providers=["openai"], levels=["primary"], baseline_price=ModelInfo(), clock=lambda: 0.0
    )


def test_overlapping_faults_on_one_provider_survive_each_others_heal() -> None:
    rt = FakeRuntime()
    recorder = _recorder()
    steps = [
        _step(kind="latency", factor=5, duration_s=30),
        _step(at_s=20, kind="errors", rate=0.5, duration_s=5),
    ]
    timeline = Timeline(rt, steps, recorder, horizon=100)
    for action in plan_actions(steps, 100):
        timeline.apply(action, action.at)
    assert rt.calls == [
        ("inject", "openai", FaultKind.LATENCY),
        ("inject", "openai", FaultKind.ERRORS),
        # The errors window ends: heal lifts everything, so the latency fault goes back on.
        ("heal", "openai", None),
        ("inject", "openai", FaultKind.LATENCY),
        ("heal", "openai", None),
    ]
    windows = [(f.kind, f.start, f.end) for f in recorder.faults]
    assert windows == [("latency", 10, 40), ("errors", 20, 25)]


async def test_timeline_runs_on_the_trio_clock(autojump_clock: object) -> None:
    import trio

    rt = FakeRuntime()
    recorder = Recorder(providers=["openai"], levels=["primary"], baseline_price=ModelInfo())
    steps = [_step(kind="crash", every_s=2, duration_s=5)]
    timeline = Timeline(rt, steps, recorder, horizon=100)
    start = trio.current_time()
    await timeline.run(start)
    assert trio.current_time() - start == pytest.approx(15)
    assert [c[0] for c in rt.calls] == ["crash", "crash", "crash"]
    assert timeline.crashes == 3
    assert recorder.faults[0].end == pytest.approx(15 + start - recorder.t0)
