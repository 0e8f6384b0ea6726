"""What the cascade looks up in the actor tree: the live provider actors and the current plan.

Both read the kernel's registry, so a request walks from the cascade to the router's plan and
on to a provider without going back through the runtime that embeds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import trio

from actors.config import LevelConfig
from actors.messages import ProviderSnapshot, Request
from actors.provider import ProviderActor
from actors.ranking import Ranker, RoutePlan
from actors.router import RouterActor
from runtime.kernel.registry import Registry

__all__ = ["ProviderDirectory", "RoutePlanner"]


class ProviderDirectory:
    """The provider actors that can take a call right now, by name."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def live(self, name: str) -> ProviderActor | None:
        """The running actor for `name`, or None while it is starting, restarting or stopped."""
        cell = self._registry.cell(name)
        actor = cell.actor
        if cell.state != "running" or not isinstance(actor, ProviderActor):
            return None
        return actor


class RoutePlanner:
    """The router's plan when the router runs; while it restarts, the ranker's plan over the
    providers' last published snapshots."""

    def __init__(
        self,
        registry: Registry,
        ranker: Ranker,
        levels: Sequence[LevelConfig],
        snapshots: Mapping[str, ProviderSnapshot],
    ) -> None:
        self._registry = registry
        self._ranker = ranker
        self._levels = levels
        self._snapshots = snapshots

    def plan(self, request: Request, *, explore: bool = False) -> RoutePlan:
        cell = self._registry.cell("router") if "router" in self._registry else None
        router = cell.actor if cell is not None else None
        if isinstance(router, RouterActor) and cell is not None and cell.state == "running":
            return router.plan(request, explore=explore)
        return self._ranker.plan(request, self._levels, self._snapshots, trio.current_time())

    def first_choice(self, request: Request, position: int = 0) -> str | None:
        """The provider the level at `position` (the first one by default) would try first for
        `request` if every provider were healthy: ranked with no heartbeats, so that health,
        breakers and Retry-After exclude nothing and score every provider alike (fitness and
        matrix position decide)."""
        if position >= len(self._levels):
            return None
        ranked = self._ranker.rank(request, self._levels[position], {}, trio.current_time())
        return ranked.candidates[0].provider if ranked.candidates else None
