"""A fleet of runtime instances in one virtual-time run (a scenario's ``[fleet]`` table).

What a fleet of `uptax serve` processes behind a load balancer does, predicted in one process:

- every instance is a whole runtime (`open_runtime`) with its own actors, breakers and caches,
  its `[state] instance` id set to ``i1``, ``i2``, ...;
- with ``[state] backend = "redis"`` they share one in-process store instead of Redis, a
  `LaggedStore` whose published writes (breaker and Retry-After holds, the shared cache,
  heartbeats) reach the others ``sync_delay_ms`` late; with "memory" each keeps to itself;
- the simulated providers are one set of backends the whole fleet calls, so a fault is one
  fault every instance meets (and one RNG, one rate-limit bucket);
- requests go round-robin by arrival (request ``n`` to instance ``n mod N``), as a plain
  load balancer spreads them: the spread is exact and the same for every seed and variant,
  so per-instance numbers differ only by what the instances did.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import attrs
import structlog

from actors.adapters.simulated import SimulatedBackend
from actors.config import Config, ModelInfo
from actors.faults import Fault
from runtime.embed import Runtime, open_runtime
from runtime.scenario.format import FleetInfo, Scenario
from runtime.scenario.lagged import LaggedStore

__all__ = ["FleetFaults", "instance_id", "instance_trips", "open_fleet"]

_log = structlog.get_logger("uptax.scenario")


def instance_id(position: int) -> str:
    """The id of the instance at `position` (from 0) in heartbeats, logs and the report."""
    return f"i{position + 1}"


def _instance_config(config: Config, position: int) -> Config:
    state = attrs.evolve(config.state, instance=instance_id(position))
    return attrs.evolve(config, state=state)


@contextlib.asynccontextmanager
async def open_fleet(
    scenario: Scenario, fleet: FleetInfo, *, repl_socket: str | None = None
) -> AsyncIterator[list[Runtime]]:
    """The fleet's runtimes, open while the block runs (a REPL socket serves the first)."""
    store = LaggedStore(fleet.sync_delay_ms / 1000.0)
    backends = {
        (p.name, "simulated"): SimulatedBackend(p)
        for p in scenario.config.providers
        if p.kind == "simulated"
    }
    async with contextlib.AsyncExitStack() as stack:
        runtimes = []
        for position in range(fleet.instances):
            rt = await stack.enter_async_context(
                open_runtime(
                    _instance_config(scenario.config, position),
                    repl_socket=repl_socket if position == 0 else None,
                    state_store=store,
                    shared=backends,
                )
            )
            runtimes.append(rt)
        _log.info(
            "scenario_fleet_opened",
            instances=fleet.instances,
            sync_delay_ms=fleet.sync_delay_ms,
            shared=scenario.config.state.backend != "memory",
        )
        yield runtimes


class FleetFaults:
    """The fault timeline's runtime for a fleet: a provider's fault goes to the one simulated
    backend every instance calls (through the first instance, whose events record it); a crash
    hits that provider's actor in every instance; a price change reaches every price table."""

    def __init__(self, runtimes: Sequence[Runtime]) -> None:
        self.runtimes = list(runtimes)

    def inject_fault(self, name: str, fault: Fault) -> None:
        self.runtimes[0].inject_fault(name, fault)

    def heal(self, name: str) -> None:
        self.runtimes[0].heal(name)

    def crash(self, name: str) -> None:
        for rt in self.runtimes:
            rt.crash(name)

    def set_price(
        self,
        model: str,
        input_usd_per_mtok: float | None = None,
        output_usd_per_mtok: float | None = None,
    ) -> ModelInfo:
        infos = [
            rt.set_price(model, input_usd_per_mtok, output_usd_per_mtok) for rt in self.runtimes
        ]
        return infos[0]


def instance_trips(rt: Runtime) -> dict[str, int]:
    """Each provider's breaker trips in `rt` by its own count (a hold another instance
    published is not one of its trips)."""
    trips = {}
    for provider in rt.config.providers:
        snapshot = rt.provider_snapshot(provider.name)
        trips[provider.name] = 0 if snapshot is None else snapshot.breaker.trips
    return trips
