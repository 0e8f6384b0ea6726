"""The fault timeline: turn ``[[faults]]`` steps into timed actions on a running runtime.

A step becomes one or more windows (flapping: one per down period; a crash loop: one window
with a crash every `every_s`). A ramping fault is one window whose fault is injected again every
`ramp_step_s` with its knobs moved on (the same fault kind replaces the earlier one), at exact
planned times, so virtual runs stay a function of the seed. A price change is an instant: it
goes to the runtime's price table, not to the provider. Faults of one provider can overlap: `heal` lifts every fault of a
provider, so when one window ends the provider is healed and the faults of the windows still
open are injected again. At equal times, ends come before starts, so back-to-back faults hand
over cleanly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs
import structlog
import trio

from actors.config import ModelInfo
from actors.faults import Fault
from runtime.kernel.actor import ActorError
from runtime.scenario.format import CRASH, FLAPPING, PRICE, FaultStep
from runtime.scenario.recorder import AppliedFault, Recorder

_log = structlog.get_logger("uptax.scenario")


class FaultableRuntime(Protocol):
    """What the timeline needs of a runtime (`runtime.embed.Runtime` has it)."""

    def inject_fault(self, name: str, fault: Fault) -> None: ...

    def heal(self, name: str) -> None: ...

    def crash(self, name: str) -> None: ...

    def set_price(
        self,
        model: str,
        input_usd_per_mtok: float | None = None,
        output_usd_per_mtok: float | None = None,
    ) -> ModelInfo: ...


@attrs.frozen(order=True)
class Action:
    """One thing to do at time `at` (seconds from the start)."""

    at: float
    #: 0 = end a window, 1 = start a window (or move a ramp on, or change a price), 2 = crash:
    #: ends first at equal times.
    order: int
    step: int
    what: str = attrs.field(order=False)
    window: int = attrs.field(default=0, order=False)


def plan_actions(steps: Sequence[FaultStep], horizon: float) -> list[Action]:
    """Every action of the timeline in the order it happens, up to `horizon` seconds."""
    actions: list[Action] = []
    for index, step in enumerate(steps):
        end = step.at_s + step.duration_s if step.duration_s is not None else math.inf
        if step.kind == CRASH:
            if step.every_s is None:
                actions.append(Action(step.at_s, 2, index, "crash"))
                continue
            actions.append(Action(step.at_s, 1, index, "open"))
            count = 0
            at = step.at_s
            while at < min(end, horizon):
                actions.append(Action(at, 2, index, "crash", count))
                count += 1
                at = step.at_s + count * step.every_s
            if end <= horizon:
                actions.append(Action(end, 0, index, "close"))
        elif step.kind == FLAPPING:
            window = 0
            at = step.at_s
            while at < min(end, horizon):
                down_end = min(at + step.down_s, end)
                actions.append(Action(at, 1, index, "inject", window))
                actions.append(Action(down_end, 0, index, "lift", window))
                window += 1
                at += step.down_s + step.up_s
        elif step.kind == PRICE:
            actions.append(Action(step.at_s, 1, index, "price"))
        else:
            actions.append(Action(step.at_s, 1, index, "inject"))
            actions += _ramp_actions(step, index, min(end, horizon))
            if math.isfinite(end):
                actions.append(Action(end, 0, index, "lift"))
    actions.sort()
    return actions


def _ramp_actions(step: FaultStep, index: int, until: float) -> list[Action]:
    """A ramping step's re-injections: every `ramp_step_s` after it starts, and once where the
    ramp ends, all before the fault ends (`until`)."""
    if step.ramp_s is None:
        return []
    ramp_end = step.at_s + step.ramp_s
    actions = []
    count = 1
    at = step.at_s + step.ramp_interval_s
    while at < min(ramp_end, until):
        actions.append(Action(at, 1, index, "ramp", count))
        count += 1
        at = step.at_s + count * step.ramp_interval_s
    if ramp_end < until:
        actions.append(Action(ramp_end, 1, index, "ramp", count))
    return actions


class Timeline:
    """Applies a scenario's fault steps to a runtime at their times, and records the windows."""

    def __init__(
        self,
        rt: FaultableRuntime,
        steps: Sequence[FaultStep],
        recorder: Recorder,
        *,
        horizon: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.rt = rt
        self.steps = steps
        self.recorder = recorder
        self.horizon = horizon
        self.clock = clock
        #: provider -> {step: fault} currently injected.
        self.active: dict[str, dict[int, Fault]] = {}
        self.crashes = 0
        self.crashes_missed = 0

    async def run(self, t0: float) -> None:
        """Sleep to each action's time and apply it; returns after the last one."""
        for action in plan_actions(self.steps, self.horizon):
            await trio.sleep_until(t0 + action.at)
            self.apply(action, self.clock() - t0)

    def apply(self, action: Action, now: float) -> None:
        step = self.steps[action.step]
        provider = step.provider
        if action.what == "inject":
            fault = step.fault_at(0.0)
            self.active.setdefault(provider, {})[action.step] = fault
            self.rt.inject_fault(provider, fault)
            self.recorder.record_fault(
                AppliedFault(action.step, provider, step.kind, now, None, step.title)
            )
        elif action.what == "ramp":
            faults = self.active.get(provider, {})
            if action.step in faults:
                # The planned time, not the clock: the knobs are exactly where the line says.
                faults[action.step] = step.fault_at(action.at - step.at_s)
                self.rt.inject_fault(provider, faults[action.step])
        elif action.what == "price":
            self._change_price(action.step, now)
        elif action.what == "lift":
            faults = self.active.get(provider, {})
            faults.pop(action.step, None)
            self.rt.heal(provider)
            for fault in faults.values():
                self.rt.inject_fault(provider, fault)
            self.recorder.end_fault(action.step, now)
        elif action.what == "open":
            self.recorder.record_fault(
                AppliedFault(action.step, provider, step.kind, now, None, step.title)
            )
        elif action.what == "close":
            self.recorder.end_fault(action.step, now)
        elif action.what == "crash":
            if step.every_s is None:
                self.recorder.record_fault(
                    AppliedFault(action.step, provider, step.kind, now, now, step.title)
                )
            try:
                self.rt.crash(provider)
                self.crashes += 1
            except (ActorError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                # The actor is between incarnations (or its mailbox is full): that crash is moot.
                self.crashes_missed += 1
                _log.info("scenario_crash_missed", provider=provider, error=type(exc).__name__)
        _log.debug("scenario_fault_action", action=action.what, provider=provider, at=now)

    def _change_price(self, index: int, now: float) -> None:
        step = self.steps[index]
        info = self.rt.set_price(step.model, step.input_usd_per_mtok, step.output_usd_per_mtok)
        self.recorder.reprice(step.model, info)
        self.recorder.record_fault(
            AppliedFault(index, step.provider, step.kind, now, now, step.title)
        )
