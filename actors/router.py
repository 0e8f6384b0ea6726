"""The router actor: keeps the latest heartbeat of every provider and ranks them per request.

Heartbeats arrive through the mailbox; ranking is a synchronous read of the table the mailbox
loop maintains (no await between reading and answering, so a plan is always built from one
consistent table). The ranking itself lives in `actors.ranking`, precomputed per config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from actors.messages import ProviderSnapshot, Request
from actors.ranking import Ranker, RoutePlan
from runtime.actor import Actor
from runtime.config import Config


@attrs.frozen
class RouterSnapshot:
    name: str
    kind: str
    heartbeats: int
    providers: tuple[ProviderSnapshot, ...]


class RouterActor(Actor):
    kind = "router"

    def __init__(
        self,
        config: Config,
        ranker: Ranker,
        *,
        seed: Callable[[], Mapping[str, ProviderSnapshot]] = dict,
    ) -> None:
        super().__init__("router")
        self.config = config
        self.ranker = ranker
        self.levels = config.levels
        #: Rebuilt on (re)start from the providers' last published snapshots.
        self.table: dict[str, ProviderSnapshot] = dict(seed())
        self.heartbeats = 0

    async def handle(self, message: Any) -> Any:
        if isinstance(message, ProviderSnapshot):
            self.table[message.provider] = message
            self.heartbeats += 1
            return None
        return await super().handle(message)

    def plan(self, request: Request) -> RoutePlan:
        return self.ranker.plan(request, self.levels, self.table, trio.current_time())

    def snapshot(self) -> RouterSnapshot:
        return RouterSnapshot(
            name=self.name,
            kind=self.kind,
            heartbeats=self.heartbeats,
            providers=tuple(self.table[name] for name in sorted(self.table)),
        )
