"""State a fleet of runtime instances shares: one interface (`StateStore`), two backends
(`MemoryStore`, `RedisStore`), and `FleetState`, what the runtime asks of them, which carries on
from local state when the shared store is slow or gone."""

from actors.state.fleet import FleetState, Limited, PeriodSpend, SpendSource, open_fleet_state
from actors.state.memory import MemoryStore
from actors.state.store import Instance, StateStore, StoreUnavailable

__all__ = [
    "FleetState",
    "Instance",
    "Limited",
    "MemoryStore",
    "PeriodSpend",
    "SpendSource",
    "StateStore",
    "StoreUnavailable",
    "open_fleet_state",
]
