"""The router actor: keeps the latest heartbeat of every provider and ranks them per request.

Heartbeats arrive through the mailbox; ranking is a synchronous read of the table the mailbox
loop maintains (no await between reading and answering, so a plan is always built from one
consistent table). The ranking itself lives in `actors.ranking`, precomputed per config; a
plan is reused for requests of the same shape while nothing it was ranked from has changed
(`PlanMemo`), and explored or reordered per request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from actors.config import Config
from actors.learned import ArmEstimate, Learner
from actors.messages import ProviderSnapshot, Request
from actors.ranking import PlanMemo, Ranker, RoutePlan
from runtime.kernel.actor import Actor


@attrs.frozen
class RouterSnapshot:
    name: str
    kind: str
    heartbeats: int
    explorations: int
    providers: tuple[ProviderSnapshot, ...]
    #: "score" or "learned" (`[routing] mode`).
    mode: str = "score"
    #: Learned mode: the learner's estimate of every provider and model it has seen.
    learned: tuple[ArmEstimate, ...] = ()


class RouterActor(Actor):
    kind = "router"

    def __init__(
        self,
        config: Config,
        ranker: Ranker,
        *,
        seed: Callable[[], Mapping[str, ProviderSnapshot]] = dict,
        learner: Learner | None = None,
    ) -> None:
        super().__init__("router")
        self.config = config
        self.ranker = ranker
        self.levels = config.levels
        #: The plans of recent request shapes, while the table and the time leave them valid.
        self._plans = PlanMemo(ranker, self.levels)
        #: Rebuilt on (re)start from the providers' last published snapshots.
        self.table: dict[str, ProviderSnapshot] = dict(seed())
        self.heartbeats = 0
        self.latency_stale_s = config.routing.latency_stale_s
        self._explored_at: dict[str, float] = {}
        self.explorations = 0
        #: Learned mode's sampler (`actors.learned`), which then does the exploring; or None.
        self.learner = learner
        deadline_s = config.runtime.deadline_s
        #: Per level, the horizon of a request without a deadline of its own.
        self._horizons_s = tuple(min(level.timeout_s, deadline_s) for level in config.levels)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, ProviderSnapshot):
            self.table[message.provider] = message
            self.heartbeats += 1
            return None
        return await super().handle(message)

    def plan(self, request: Request, *, explore: bool = True) -> RoutePlan:
        """The plan for one request. With `explore`, a provider whose latency was last measured
        more than `latency_stale_s` ago goes first in its level for this one request (at most
        once per stale period): its old measurement may be the only thing keeping a recovered
        provider out of rotation, and one request finds out, where a neutral score would have
        sent it every request until the first slow answer came back.

        In learned mode the learner orders each level's tiers instead, and explores by
        sampling (`actors.learned`): its estimates replace the staleness rule."""
        now = trio.current_time()
        plan = self._plans.plan(request, self.table, now)
        if self.learner is not None:
            return self.learner.reorder(plan, self.table, self._horizons(request), explore=explore)
        if explore:
            plan = self._explore(plan, now)
        return plan

    def _horizons(self, request: Request) -> tuple[float, ...]:
        """Per level, how long the request's call may take: the level's timeout, within the
        request's deadline."""
        if request.deadline_s is None:
            return self._horizons_s
        return tuple(min(h, request.deadline_s) for h in self._horizons_s)

    def _explore(self, plan: RoutePlan, now: float) -> RoutePlan:
        stale_before = now - self.latency_stale_s
        for index, level in enumerate(plan.levels):
            for position, candidate in enumerate(level.candidates[1:], 1):
                snapshot = self.table.get(candidate.provider)
                last = snapshot.last_check if snapshot is not None else None
                if last is None or last >= stale_before:
                    continue
                if self._explored_at.get(candidate.provider, -math.inf) >= stale_before:
                    continue
                self._explored_at[candidate.provider] = now
                self.explorations += 1
                first = attrs.evolve(
                    candidate, reason=f"exploring: latency last measured {now - last:.0f}s ago"
                )
                rest = level.candidates[:position] + level.candidates[position + 1 :]
                levels = list(plan.levels)
                levels[index] = attrs.evolve(level, candidates=(first, *rest))
                return attrs.evolve(plan, levels=tuple(levels))
        return plan

    def snapshot(self) -> RouterSnapshot:
        return RouterSnapshot(
            name=self.name,
            kind=self.kind,
            heartbeats=self.heartbeats,
            explorations=self.learner.explorations if self.learner else self.explorations,
            providers=tuple(self.table[name] for name in sorted(self.table)),
            mode=self.config.routing.mode,
            learned=self.learner.estimates(self.table) if self.learner is not None else (),
        )
