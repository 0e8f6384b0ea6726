"""The in-process backend: the store of a single instance, and what a fleet's instance falls
back on while Redis is away. Plain dicts on trio's clock (so tests run in virtual time); expired
keys are dropped when read."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from actors.state.store import BucketMode, Instance

__all__ = ["MemoryStore", "failure_run"]


def failure_run(value: object | None) -> tuple[int, float]:
    """A run of failures as stored ("count|when the latest was sent"): (0, 0.0) for none."""
    if value is None:
        return 0, 0.0
    count, _, sent = str(value).partition("|")
    return int(count), float(sent)


class MemoryStore:
    """A `StateStore` in this process's memory; it never raises `StoreUnavailable`."""

    def __init__(self, clock: Callable[[], float] = trio.current_time) -> None:
        self._clock = clock
        #: key -> (value, expires at or None)
        self._values: dict[str, tuple[object, float | None]] = {}
        self._buckets: dict[str, tuple[float, float, float]] = {}  # per_minute, level, updated

    def _read(self, key: str) -> object | None:
        found = self._values.get(key)
        if found is None:
            return None
        value, expires = found
        if expires is not None and self._clock() >= expires:
            del self._values[key]
            return None
        return value

    def _left(self, key: str) -> float:
        found = self._values.get(key)
        if found is None or found[1] is None:
            return 0.0
        return max(0.0, found[1] - self._clock())

    async def bucket(self, key: str, per_minute: float, amount: float, mode: BucketMode) -> float:
        now = self._clock()
        kept = self._buckets.get(key)
        if kept is None or kept[0] != per_minute:
            level = per_minute
        else:
            level = min(per_minute, kept[1] + (now - kept[2]) * per_minute / 60.0)
        missing = amount - level
        wait = 0.0 if missing <= 0 else missing * 60.0 / per_minute
        if mode == "charge" or (mode == "take" and wait == 0.0):
            level -= amount
        self._buckets[key] = (per_minute, level, now)
        return 0.0 if mode == "charge" else wait

    async def add(self, key: str, amount: float, ttl_s: float) -> float:
        value = self._read(key)
        total = (value if isinstance(value, float) else 0.0) + amount
        expires = self._values[key][1] if value is not None else self._clock() + ttl_s
        self._values[key] = (total, expires)
        return total

    async def reserve(
        self,
        keys: Sequence[str],
        limits: Sequence[float],
        amount: float,
        ttl_s: Sequence[float],
        marker: str | None = None,
    ) -> int:
        if marker is not None and self._read(marker) is None:
            return -2
        values = await self.counters(keys)
        for index, (value, limit) in enumerate(zip(values, limits, strict=True)):
            if value >= limit:
                return index
        for key, ttl in zip(keys, ttl_s, strict=True):
            await self.add(key, amount, ttl)
        return -1

    async def seed(self, key: str, value: float, ttl_s: float) -> bool:
        if self._read(key) is not None:
            return False
        self._values[key] = (float(value), self._clock() + ttl_s)
        return True

    async def counters(self, keys: Sequence[str]) -> list[float]:
        values = [self._read(key) for key in keys]
        return [value if isinstance(value, float) else 0.0 for value in values]

    async def settle(
        self,
        keys: Sequence[str],
        amount: float,
        ttl_s: Sequence[float],
        once: str,
        once_ttl_s: float,
    ) -> list[float]:
        if self._read(once) is None:
            self._values[once] = ("1", self._clock() + once_ttl_s)
            for key, ttl in zip(keys, ttl_s, strict=True):
                await self.add(key, amount, ttl)
        return await self.counters(keys)

    async def failure(self, key: str, ago_s: float, ttl_s: float) -> int:
        now = self._clock()
        count, last = failure_run(self._read(key))
        last = max(last, now - ago_s) if count else now - ago_s
        self._values[key] = (f"{count + 1}|{last!r}", now + ttl_s)
        return count + 1

    async def success(self, key: str, ago_s: float) -> None:
        count, last = failure_run(self._read(key))
        if count and self._clock() - ago_s >= last:
            del self._values[key]

    async def hold(self, key: str, value: str, seconds: float) -> None:
        if self._read(key) is None or self._left(key) < seconds:
            self._values[key] = (value, self._clock() + seconds)

    async def holds(self, keys: Sequence[str]) -> list[tuple[str, float] | None]:
        found: list[tuple[str, float] | None] = []
        for key in keys:
            value = self._read(key)
            found.append(None if value is None else (str(value), self._left(key)))
        return found

    async def claim(self, key: str, owner: str, seconds: float) -> bool:
        holder = self._read(key)
        if holder is not None:
            return holder == owner
        self._values[key] = (owner, self._clock() + seconds)
        return True

    async def release(self, key: str, owner: str, also: Sequence[str] = ()) -> bool:
        if self._read(key) != owner:
            return False
        for name in (key, *also):
            self._values.pop(name, None)
        return True

    async def put(self, key: str, value: str, seconds: float) -> None:
        self._values[key] = (value, self._clock() + seconds)

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._values.pop(key, None)

    async def get(self, key: str) -> str | None:
        value = self._read(key)
        return None if value is None else str(value)

    async def beat(self, instance: str, summary: str, seconds: float) -> None:
        await self.put(f"instance:{instance}", summary, seconds)

    async def instances(self) -> list[Instance]:
        found = []
        for key in sorted(self._values):
            if key.startswith("instance:") and (value := self._read(key)) is not None:
                found.append(Instance(key.removeprefix("instance:"), str(value), self._left(key)))
        return found

    async def ping(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Nothing to release."""
