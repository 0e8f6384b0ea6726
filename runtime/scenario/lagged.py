"""`LaggedStore`: the store a simulated fleet shares, with replication lag.

Writes that publish something to the other instances (breaker and Retry-After holds, shared
cache entries, heartbeats) reach the shared store `delay_s` after they are made, so every
instance, the writer included, sees them that much later; a hold lands with its duration cut by
the lag, so it still ends when its writer meant it to. The atomic operations (token buckets,
spend counters, reservations and settles, runs of failures, half-open probe claims and their
release) stay immediate, as Redis runs its scripts on one primary. Pending writes are applied,
in the order they were made, before any call that comes after their due time: no background
task, so a virtual run stays a function of its seed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import trio

from actors.state import Instance, MemoryStore
from actors.state.store import BucketMode

__all__ = ["LaggedStore"]


class LaggedStore:
    """A `StateStore` over one `MemoryStore` whose published writes land `delay_s` late."""

    def __init__(
        self,
        delay_s: float,
        store: MemoryStore | None = None,
        *,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.delay_s = delay_s
        self.store = store if store is not None else MemoryStore(clock)
        self._clock = clock
        #: (due at, the write) in the order the writes were made (so in due order too).
        self._pending: deque[tuple[float, Callable[[], Awaitable[None]]]] = deque()

    async def _land(self) -> None:
        """Apply every write that is due by now."""
        now = self._clock()
        while self._pending and self._pending[0][0] <= now:
            _, write = self._pending.popleft()
            await write()

    def _later(self, write: Callable[[], Awaitable[None]]) -> None:
        self._pending.append((self._clock() + self.delay_s, write))

    # -- published writes: late ------------------------------------------------------------

    async def hold(self, key: str, value: str, seconds: float) -> None:
        await self._land()
        if self.delay_s <= 0:
            await self.store.hold(key, value, seconds)
            return
        left = seconds - self.delay_s
        if left > 0:
            self._later(lambda: self.store.hold(key, value, left))

    async def put(self, key: str, value: str, seconds: float) -> None:
        await self._land()
        if self.delay_s <= 0:
            await self.store.put(key, value, seconds)
            return
        left = seconds - self.delay_s
        if left > 0:
            self._later(lambda: self.store.put(key, value, left))

    async def delete(self, keys: Sequence[str]) -> None:
        """Late too, so that a hold published before it cannot land after it."""
        await self._land()
        if self.delay_s <= 0:
            await self.store.delete(keys)
            return
        self._later(lambda: self.store.delete(keys))

    async def beat(self, instance: str, summary: str, seconds: float) -> None:
        await self._land()
        if self.delay_s <= 0:
            await self.store.beat(instance, summary, seconds)
            return
        left = seconds - self.delay_s
        if left > 0:
            self._later(lambda: self.store.beat(instance, summary, left))

    # -- reads: whatever has landed ----------------------------------------------------------

    async def holds(self, keys: Sequence[str]) -> list[tuple[str, float] | None]:
        await self._land()
        return await self.store.holds(keys)

    async def get(self, key: str) -> str | None:
        await self._land()
        return await self.store.get(key)

    async def instances(self) -> list[Instance]:
        await self._land()
        return await self.store.instances()

    async def counters(self, keys: Sequence[str]) -> list[float]:
        await self._land()
        return await self.store.counters(keys)

    # -- atomic operations: immediate --------------------------------------------------------

    async def bucket(self, key: str, per_minute: float, amount: float, mode: BucketMode) -> float:
        await self._land()
        return await self.store.bucket(key, per_minute, amount, mode)

    async def add(self, key: str, amount: float, ttl_s: float) -> float:
        await self._land()
        return await self.store.add(key, amount, ttl_s)

    async def reserve(
        self,
        keys: Sequence[str],
        limits: Sequence[float],
        amount: float,
        ttl_s: Sequence[float],
        marker: str | None = None,
    ) -> int:
        await self._land()
        return await self.store.reserve(keys, limits, amount, ttl_s, marker)

    async def settle(
        self,
        keys: Sequence[str],
        amount: float,
        ttl_s: Sequence[float],
        once: str,
        once_ttl_s: float,
    ) -> list[float]:
        await self._land()
        return await self.store.settle(keys, amount, ttl_s, once, once_ttl_s)

    async def failure(self, key: str, ago_s: float, ttl_s: float) -> int:
        await self._land()
        return await self.store.failure(key, ago_s, ttl_s)

    async def success(self, key: str, ago_s: float) -> None:
        await self._land()
        await self.store.success(key, ago_s)

    async def claim(self, key: str, owner: str, seconds: float) -> bool:
        await self._land()
        return await self.store.claim(key, owner, seconds)

    async def release(self, key: str, owner: str, also: Sequence[str] = ()) -> bool:
        await self._land()
        return await self.store.release(key, owner, also)

    async def seed(self, key: str, value: float, ttl_s: float) -> bool:
        await self._land()
        return await self.store.seed(key, value, ttl_s)

    async def ping(self) -> None:
        await self._land()
        await self.store.ping()

    async def aclose(self) -> None:
        """Nothing to release: the fleet's runtimes share it until the run ends."""
