"""The state store's interface: a handful of atomic operations on named keys, each one a single
round trip, from which `FleetState` builds rate limits, spend counters, breaker holds, the
shared cache and heartbeats.

Keys are given without the fleet's prefix (the backend adds it). Durations are seconds relative
to now, never absolute times, so instances whose clocks disagree (or that run in trio's virtual
time) still agree on how long a hold has left.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import attrs

__all__ = ["BucketMode", "Instance", "StateStore", "StoreUnavailable"]

#: take: take the amount when it is there; check: take nothing; charge: take it, into debt.
BucketMode = Literal["take", "check", "charge"]


class StoreUnavailable(Exception):
    """The shared store did not answer (down, slow past its timeout, or refused the call)."""


@attrs.frozen
class Instance:
    """One live instance of the fleet, as its last heartbeat described it."""

    id: str
    #: What it published (JSON: its providers' states).
    summary: str
    #: Seconds until its heartbeat expires unless renewed.
    expires_in_s: float


class StateStore(Protocol):
    """What a backend offers. Every method is atomic on the store and may raise
    `StoreUnavailable`."""

    async def bucket(self, key: str, per_minute: float, amount: float, mode: BucketMode) -> float:
        """A token bucket of `per_minute` units refilled continuously, full when new: apply
        `mode` with `amount`; the seconds until `amount` is there (0.0: now)."""
        ...

    async def add(self, key: str, amount: float, ttl_s: float) -> float:
        """Add `amount` to the counter `key` (created at 0, expiring `ttl_s` after creation);
        its new value."""
        ...

    async def reserve(
        self,
        keys: Sequence[str],
        limits: Sequence[float],
        amount: float,
        ttl_s: Sequence[float],
        marker: str | None = None,
    ) -> int:
        """Add `amount` to every counter in `keys` unless one already stands at or above its
        limit: -1 when added, else the index of the first counter that is spent; -2 (nothing
        added) when `marker` is given and missing (the counters must be seeded first)."""
        ...

    async def counters(self, keys: Sequence[str]) -> list[float]:
        """The counters' values (0.0 for a missing one)."""
        ...

    async def settle(
        self,
        keys: Sequence[str],
        amount: float,
        ttl_s: Sequence[float],
        once: str,
        once_ttl_s: float,
    ) -> list[float]:
        """Add `amount` to every counter in `keys` (as `add`) unless the key `once` is set, and
        set it for `once_ttl_s`: a settle sent again after a failure that hid whether it landed
        counts once. The counters' values."""
        ...

    async def failure(self, key: str, ago_s: float, ttl_s: float) -> int:
        """Count a failed call sent `ago_s` seconds ago into the run of consecutive failures
        at `key` (expiring `ttl_s` after the latest); the run's new length."""
        ...

    async def success(self, key: str, ago_s: float) -> None:
        """A call sent `ago_s` seconds ago succeeded: it ends the run at `key` unless a failed
        call was sent after it."""
        ...

    async def seed(self, key: str, value: float, ttl_s: float) -> bool:
        """Set the counter `key` to `value` for `ttl_s` only when it is missing (SET NX PX);
        True when it was set."""
        ...

    async def hold(self, key: str, value: str, seconds: float) -> None:
        """Set `key` to `value` for `seconds`, unless it is already set for longer."""
        ...

    async def holds(self, keys: Sequence[str]) -> list[tuple[str, float] | None]:
        """Each key's value and seconds left, or None when it is not set."""
        ...

    async def claim(self, key: str, owner: str, seconds: float) -> bool:
        """Set `key` to `owner` for `seconds` only when nobody holds it (SET NX PX); True
        when `owner` holds it now (it may have claimed it before)."""
        ...

    async def release(self, key: str, owner: str, also: Sequence[str] = ()) -> bool:
        """Delete `key`, and the keys `also` with it, only when `owner` holds it (a claim
        another owner took after `owner`'s ran out stays theirs); True when deleted."""
        ...

    async def put(self, key: str, value: str, seconds: float) -> None: ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete `keys`, those that are set."""
        ...

    async def get(self, key: str) -> str | None: ...

    async def beat(self, instance: str, summary: str, seconds: float) -> None:
        """Say that `instance` is alive for `seconds`, with its `summary`."""
        ...

    async def instances(self) -> list[Instance]:
        """Every instance whose heartbeat has not expired, by id."""
        ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...
