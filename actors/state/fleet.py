"""`FleetState`: what the runtime asks of the shared store, and how it carries on without it.

Every operation goes to the shared store while it answers. A call that fails or takes longer
than `[state] command_timeout_s` is answered from local state (its spend added to the store at
the next sync); a second one, sent after the first failed, marks the store degraded (one
warning): one failure alone may be this process's event loop stalling, which makes every call
then in flight miss its timeout at once. From then on calls go straight to this instance's
`MemoryStore`, without waiting on Redis, and rate limits and budgets there are cut to 1/N of
the fleet's, N being the number of instances in the last heartbeat read. The background task
(`run`) pings the store every `sync_interval_s`; when it answers again the store is restored
(one warning) and the spend counted locally meanwhile is added to the shared counters. A
settle whose call failed may have landed: it is sent again under the same marker, which the
store applies once (`_SETTLED_TTL_S`).

A store that lost its data (a fresh or restarted Redis) has no spend counters: with a ledger
(`spend_source`, set by the gateway), the counters of the current UTC day and month are seeded
from the ledger's totals, each only if missing (SET NX, so instances seeding at once agree),
at start, at a restoration that finds them gone, and as soon as a reservation or a sync finds
the store's `spend:seeded` marker gone (the reservation's script checks it: no counter restarts
from zero). A settle landing between the loss and the seeding may create its counter first (at
most one request per instance in flight at that moment is then not counted). A counter seeded
at a restoration drops this instance's pending local spend for it (the ledger has those
charges); other instances add theirs, which may count twice what they had already written: a
tenant may then be refused before its budget is spent, never let past it.

Staleness bounds, with the defaults (`sync_interval_s` 0.5 s, `command_timeout_s` 0.25 s):

- rate limits and spend: none while the store is up (each check is an atomic script on it);
  while degraded each instance enforces its 1/N share on its own;
- runs of consecutive failures: none for the count (each failed call adds to the fleet's run
  of its provider's failures, an atomic script, and the instance whose failure makes the run
  long enough trips); a success ends the run when this instance knows of it (its own failure,
  or the run read at the last sync);
- breaker opens, Retry-After holds and unavailability: seen by the other instances at the next
  sync, within `sync_interval_s + command_timeout_s` (0.75 s) of being published; an instance
  that knows of a run of a provider's failures reads its holds before each call to it
  (`look_before_calling`), so a trip that run led to stops its calls at once;
- half-open probes: one instance at a time probes a provider (`claim_probe`, SET NX PX), and
  none before it holds the claim; when its probes succeed it ends its claim and the fleet's open
  hold (`release_probe`, never another instance's claim), and the others close their breakers at
  their next sync, within `sync_interval_s + command_timeout_s` (0.75 s), instead of waiting
  out the claim's lease (unless they learnt of a trip since);
- recovery probes (`actors.recovery`, while a breaker is open): one at a time and one per
  interval from the whole fleet, sent by the instance that claims it (`claim_recovery_probe`,
  SET NX PX for as long as the probe may take; when it ends, cut to 0.9 of the interval from
  its sending), the others skipping that interval; two at least 0.9 interval apart when
  another instance takes the turn from the one that held it. A failed probe publishes an open
  hold until the next probe, seen by the others at their next sync, so that no open period ends
  half-open while the provider is still down; a successful one turns the prober's breaker
  half-open, its half-open probes closing the fleet's breaker as above (another instance may
  send one more probe before that news reaches it). While degraded each instance probes on
  its own;
- an operator's override of a breaker (forced open or closed, disabled, reset, handed back to
  traffic), set through any instance: the others apply it at their next sync, within
  `sync_interval_s + command_timeout_s` (0.75 s), each override once; an instance that starts
  later applies a standing one (forced or disabled) at its first sync. A reset ends the fleet's
  trip too (its open hold, run of failures and half-open claim), which would open the breakers
  again at the next sync. Set while degraded, an override stays on its instance;
- the last-resort cache: none (read from the store on a local miss), entries live `ttl_s`;
- heartbeats: renewed every `sync_interval_s`, gone `heartbeat_ttl_s` after the last one;
- the tenants' spend shown by the dashboard (`seen_spend`): read every `sync_interval_s`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import attrs
import structlog
import trio

from actors.config import StateConfig
from actors.state.memory import MemoryStore, failure_run
from actors.state.store import Instance, StateStore, StoreUnavailable

__all__ = [
    "HOLD_KINDS",
    "FleetState",
    "HoldListener",
    "Limited",
    "PeriodSpend",
    "SpendSource",
    "open_fleet_state",
]

T = TypeVar("T")

_log = structlog.get_logger("actors.state")

#: What a provider can be held out for: its breaker opened (or stays open: a recovery probe
#: found it still down), it sent a Retry-After, or it refused our key or our account (auth or
#: billing); and the end of the fleet's open breaker ("closed": the instance that held the
#: half-open probe claim saw its probes succeed). Besides, an operator's override of its
#: breaker ("override": forced open or closed, disabled, reset, handed back to traffic). Read
#: in this order: the override first (holds do not move a breaker under one), and a trip's hold
#: read with a "closed" is news of a later trip (`release_probe` ends the holds older than the
#: probes' success).
HoldKind = Literal["override", "open", "retry_after", "unavailable", "closed"]
HOLD_KINDS: tuple[HoldKind, ...] = ("override", "open", "retry_after", "unavailable", "closed")

#: Called with (kind, seconds, reason) for a hold another instance published: the seconds it
#: has left; for "closed", the seconds since that instance's breaker closed; for "override",
#: the reason is "MODE:INSTANCE", the operator's mode and the instance it was set on.
HoldListener = Callable[[HoldKind, float, str], None]

#: A spend counter outlives its period by this much (a late settle still finds it).
_PERIOD_MARGIN_S = 86400.0
#: Set once the spend counters were seeded from the ledger; gone when the store lost its data.
_SEEDED = "spend:seeded"
_SEEDED_TTL_S = 400 * 86400.0
#: How long the store remembers that a settle landed: one sent again after an outage of the
#: store longer than this, whose first call had landed, counts twice (a tenant may then be
#: refused early, never let past its budget).
_SETTLED_TTL_S = 3600.0
#: A provider's run of failures is forgotten this long after its latest failure.
_FAILURE_RUN_TTL_S = 60.0
#: A recovery probe claim's lease, as a fraction of the probes' interval.
_RECOVERY_LEASE = 0.9
#: How long an operator's override stays for instances to find: one that stands (forced open
#: or closed, disabled) until it is changed; one that ends an override (reset, auto) long
#: enough for every instance to have read it, and for one restarted meanwhile.
_STANDING_OVERRIDES = frozenset({"open", "close", "disable"})
_OVERRIDE_TTL_S = 30 * 86400.0
_OVERRIDE_NEWS_TTL_S = 3600.0


@attrs.frozen
class PeriodSpend:
    """A tenant's spend in USD in the UTC day and month `day`/`month` ("2026-12-02")."""

    day: str
    month: str
    day_usd: float
    month_usd: float


#: The ledger's totals per tenant, read again (every instance's charges) when called.
SpendSource = Callable[[], Awaitable[Mapping[str, PeriodSpend]]]


#: scope, the request's cache key, what to share, seconds to keep it.
_CacheEntry = tuple[str, object, dict[str, str], float]
#: An operator's override to publish: the provider, the mode, and the value that says it once.
_Override = tuple[str, str, str]


@attrs.frozen
class Limited:
    """Why a tenant's request may not run now: which limit, and for how long (rate limits)."""

    limit: Literal["requests", "tokens", "day", "month"]
    wait_s: float = 0.0


def periods(at: float) -> tuple[str, str, float, float]:
    """The UTC day and month of the unix time `at`, and the seconds left in each."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    day = dt.datetime(moment.year, moment.month, moment.day, tzinfo=dt.UTC)
    carry, month = divmod(moment.month, 12)
    next_month = dt.datetime(moment.year + carry, month + 1, 1, tzinfo=dt.UTC)
    day_left = (day + dt.timedelta(days=1) - moment).total_seconds()
    return (
        moment.strftime("%Y-%m-%d"),
        moment.strftime("%Y-%m"),
        day_left,
        (next_month - moment).total_seconds(),
    )


class FleetState:
    """One instance's view of the fleet's shared state (see the module's docstring)."""

    def __init__(
        self,
        config: StateConfig,
        remote: StateStore | None,
        *,
        clock: Callable[[], float] = trio.current_time,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.instance = config.instance
        self._remote = remote
        self._local = MemoryStore(clock)
        self._clock = clock
        self._wall = wall
        #: Whether the shared store answers (always False without one).
        self.up = remote is not None
        #: When a call to the store failed while it was up, until one sent later is answered.
        self._suspect_since: float | None = None
        #: Instances in the last heartbeat read (this one included): the 1/N of degraded limits.
        self.fleet_size = 1
        self.instances: list[Instance] = []
        #: Per spend counter, the fleet's total as last read from the store.
        self._seen: dict[str, float] = {}
        #: Spend counted locally while degraded, to add to the store when it is back.
        self._pending: dict[str, tuple[float, float]] = {}
        self._seeded: set[str] = set()
        #: Settles whose call failed (they may have landed): sent again, under the same marker.
        self._unsettled: dict[str, tuple[list[str], float, list[float]]] = {}
        #: Per provider, the length of the fleet's run of its failures as last known here.
        self.failure_runs: dict[str, int] = {}
        self._listeners: dict[str, HoldListener] = {}
        #: The operators' overrides published or applied here (each is applied once).
        self._overrides_seen: set[str] = set()
        #: Overrides to publish, in the order the operator set them, sent by `run`.
        self._overrides_out, self._overrides_due = trio.open_memory_channel[_Override](256)
        #: Per provider, the `look_before_calling` read under way (later callers wait for it).
        self._looking: dict[str, trio.Event] = {}
        self.summary: Callable[[], object] = dict
        self.changes = 0
        #: Where the spend counters are seeded from when the store has lost them (the ledger).
        self.spend_source: SpendSource | None = None
        #: The tenants whose spend `sync` reads for `seen_spend`.
        self.tenants: tuple[str, ...] = ()
        #: Cache entries to share, sent by `offer_cache` (never blocking), put by `run`.
        self._outbox, self._outgoing = trio.open_memory_channel[_CacheEntry](256)

    @property
    def shared(self) -> bool:
        """Whether a shared store is configured at all (`[state] backend = "redis"`)."""
        return self._remote is not None

    def describe(self, *, heartbeats: bool = False) -> dict[str, Any]:
        """What `/readyz` shows (and, with `heartbeats`, the status: each instance's last
        heartbeat, its providers' breaker states and availability)."""
        described: dict[str, Any] = {
            "backend": self.config.backend,
            "instance": self.instance,
            "up": self.up,
            "fleet_size": self.fleet_size,
            "instances": [i.id for i in self.instances],
        }
        if heartbeats:
            described["heartbeats"] = {i.id: json.loads(i.summary) for i in self.instances}
            ttl = self.config.heartbeat_ttl_s
            described["last_heartbeat_s"] = {
                i.id: round(max(0.0, ttl - i.expires_in_s), 3) for i in self.instances
            }
        return described

    # -- up and down --------------------------------------------------------------------------

    async def _on(self, call: Callable[[StateStore], Awaitable[T]]) -> tuple[T, bool]:
        """`call` on the shared store while it is up, else on the local one; True when shared."""
        if self._remote is not None and self.up:
            started = self._clock()
            try:
                done = await call(self._remote), True
            except StoreUnavailable as exc:
                self._failed(exc, started)
            else:
                self._answered(started)
                return done
        return await call(self._local), False

    async def _shared(self, call: Callable[[StateStore], Awaitable[T]], away: T) -> T:
        """`call` on the shared store while it is up; `away` when it is not, or when the call
        fails (which `_failed` judges)."""
        if self._remote is None or not self.up:
            return away
        started = self._clock()
        try:
            done = await call(self._remote)
        except StoreUnavailable as exc:
            self._failed(exc, started)
            return away
        self._answered(started)
        return done

    def _answered(self, started: float) -> None:
        """A call sent at `started` was answered: a failure seen before it was a passing one."""
        if self._suspect_since is not None and started >= self._suspect_since:
            self._suspect_since = None

    def _failed(self, exc: StoreUnavailable, started: float) -> None:
        """A call sent at `started` failed. The verdict (degraded) needs a second failure, of a
        call sent after the first was seen: a trio loop that stalls (a busy machine) makes every
        call then in flight miss its timeout at once, though Redis answered in time."""
        suspect = self._suspect_since
        if not self.up:
            return
        if suspect is None:
            self._suspect_since = self._clock()
            _log.info("state_store_slow", instance=self.instance, error=str(exc))
        elif started >= suspect:
            self._degrade(exc)

    def _degrade(self, exc: StoreUnavailable) -> None:
        self._suspect_since = None
        if self.up:
            self.up = False
            self.changes += 1
            _log.warning(
                "state_store_degraded",
                instance=self.instance,
                error=str(exc),
                fleet_size=self.fleet_size,
            )

    async def _restore(self) -> None:
        assert self._remote is not None
        reconciled = len(self._pending) + len(self._unsettled)
        await self._reconcile(self._remote)
        self.up = True
        self.changes += 1
        _log.warning(
            "state_store_restored",
            instance=self.instance,
            reconciled=reconciled,
            fleet_size=self.fleet_size,
        )

    async def _reconcile(self, remote: StateStore) -> None:
        """Add the spend counted locally, and send the settles that may not have landed; to a
        store that lost its data (its counters seeded from the ledger first), only to the
        counters that were not seeded (the ledger has this instance's charges)."""
        seeded: set[str] = set()
        if self.spend_source is not None and not await self._marked(remote):
            seeded = await self._seed_spend(remote)
        for key, (amount, ttl_s) in list(self._pending.items()):
            # One at a time: if the store fails again midway, the rest wait for the next try.
            if key not in seeded:  # a seeded counter has this instance's charges already
                self._seen[key] = await remote.add(key, amount, ttl_s)
            del self._pending[key]
        for once, (keys, amount, ttls) in list(self._unsettled.items()):
            kept = [(key, ttl) for key, ttl in zip(keys, ttls, strict=True) if key not in seeded]
            if kept:
                keys_, ttls_ = [key for key, _ in kept], [ttl for _, ttl in kept]
                totals = await remote.settle(keys_, amount, ttls_, once, _SETTLED_TTL_S)
                self._seen.update(zip(keys_, totals, strict=True))
            del self._unsettled[once]
        self._seeded.clear()

    # -- the background task ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Heartbeats, the fleet's holds, and coming back from degraded, every
        `sync_interval_s`; cache entries to share as they are offered; until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._share_cache)
            nursery.start_soon(self._share_overrides)
            task_status.started()
            while self._remote is not None:
                await self.sync()
                await trio.sleep(self.config.sync_interval_s)

    async def sync(self) -> None:
        """One round: back from degraded if the store answers, heartbeat, fleet, holds."""
        remote = self._remote
        if remote is None:
            return
        started = self._clock()
        try:
            if not self.up:
                await remote.ping()
                await self._restore()
            elif self._pending or self._unsettled:  # a call failed without a verdict
                await self._reconcile(remote)
            summary = json.dumps(self.summary(), separators=(",", ":"), default=str)
            await remote.beat(self.instance, summary, self.config.heartbeat_ttl_s)
            self.instances = await remote.instances()
            self.fleet_size = max(1, len(self.instances))
            await self._read_holds(remote)
            await self._read_spend(remote)
        except StoreUnavailable as exc:
            self._failed(exc, started)
        else:
            self._answered(started)

    # -- spend seeded from the ledger ---------------------------------------------------------

    async def seed_spend(self) -> None:
        """Seed the spend counters the store lacks from `spend_source` (see the module)."""
        await self._shared(self._seed_spend, set[str]())

    async def _seed_spend(self, remote: StateStore) -> set[str]:
        """The counters set from the ledger's totals (only those that were missing)."""
        source = self.spend_source
        if source is None:
            return set()
        try:
            totals = await source()
        except Exception as exc:  # the ledger's database away: try again at the next sync
            _log.warning("state_spend_seed_failed", instance=self.instance, error=str(exc))
            return set()
        _, _, day_left, month_left = periods(self._wall())
        seeded: set[str] = set()
        for tenant, spend in totals.items():
            for key, usd, left in (
                (f"spend:{tenant}:day:{spend.day}", spend.day_usd, day_left),
                (f"spend:{tenant}:month:{spend.month}", spend.month_usd, month_left),
            ):
                if usd > 0 and await remote.seed(key, usd, left + _PERIOD_MARGIN_S):
                    seeded.add(key)
                    self._seen[key] = usd
        await remote.seed(_SEEDED, 1.0, _SEEDED_TTL_S)
        _log.info("state_spend_seeded", instance=self.instance, counters=len(seeded))
        return seeded

    async def _read_spend(self, remote: StateStore) -> None:
        """Reseed if the store lost its data; read the tenants' spend for `seen_spend`."""
        if self.spend_source is not None and not await self._marked(remote):
            await self._seed_spend(remote)
        keys = [key for tenant in self.tenants for key in self._spend_keys(tenant)[0]]
        if keys:
            self._seen.update(zip(keys, await remote.counters(keys), strict=True))

    async def _marked(self, remote: StateStore) -> bool:
        """Whether the store still holds the counters seeded from the ledger."""
        (marker,) = await remote.counters([_SEEDED])
        return marker != 0.0

    def seen_spend(self, tenant: str) -> tuple[float, float] | None:
        """`tenant`'s spend this UTC day and month across the fleet as last read (within
        `sync_interval_s`, for display), or None while the store is away."""
        if not self.up:
            return None
        keys, _ = self._spend_keys(tenant)
        return self._seen.get(keys[0], 0.0), self._seen.get(keys[1], 0.0)

    # -- rate limits --------------------------------------------------------------------------

    async def admit(
        self, tenant: str, requests_per_minute: int | None, tokens_per_minute: int | None
    ) -> Limited | None:
        """Count one request of `tenant`, or say which limit stops it (nothing counted then):
        `runtime.gateway.ratelimit.RateLimiter.admit`'s buckets, shared by the fleet."""
        if tokens_per_minute is not None:
            wait = await self._bucket(f"rate:{tenant}:tokens", tokens_per_minute, 1.0, "check")
            if wait > 0:
                return Limited("tokens", wait)
        if requests_per_minute is not None:
            wait = await self._bucket(f"rate:{tenant}:requests", requests_per_minute, 1.0, "take")
            if wait > 0:
                return Limited("requests", wait)
        return None

    async def charge_tokens(self, tenant: str, tokens: int, tokens_per_minute: int | None) -> None:
        """Charge the tokens a request of `tenant` used (the bucket may go into debt)."""
        if tokens_per_minute is not None and tokens > 0:
            await self._bucket(f"rate:{tenant}:tokens", tokens_per_minute, tokens, "charge")

    async def _bucket(
        self, key: str, per_minute: float, amount: float, mode: Literal["take", "check", "charge"]
    ) -> float:
        async def call(store: StateStore) -> float:
            share = per_minute if store is self._remote else per_minute / self.fleet_size
            return await store.bucket(key, share, amount, mode)

        wait, _ = await self._on(call)
        return wait

    # -- spend --------------------------------------------------------------------------------

    def _spend_keys(self, tenant: str) -> tuple[list[str], list[float]]:
        day, month, day_left, month_left = periods(self._wall())
        keys = [f"spend:{tenant}:day:{day}", f"spend:{tenant}:month:{month}"]
        return keys, [day_left + _PERIOD_MARGIN_S, month_left + _PERIOD_MARGIN_S]

    async def spent(self, tenant: str) -> tuple[float, float]:
        """`tenant`'s spend this UTC day and month, reservations included."""
        keys, ttls = self._spend_keys(tenant)

        async def call(store: StateStore) -> list[float]:
            if store is self._local:
                await self._seed(keys, ttls)
            return await store.counters(keys)

        values, shared = await self._on(call)
        if shared:
            self._seen.update(zip(keys, values, strict=True))
        return values[0], values[1]

    async def reserve(
        self, tenant: str, amount: float, budget_day: float | None, budget_month: float | None
    ) -> Limited | None:
        """Reserve `amount` (a request's most it may cost) against `tenant`'s budgets, unless
        one is spent already. Every admitted request saw the fleet's total below the budget,
        so the total overshoots it by at most one request's reservation (per instance, while
        degraded); `settle` with the real cost afterwards."""
        keys, ttls = self._spend_keys(tenant)
        limits = [_limit(budget_day), _limit(budget_month)]

        async def call(store: StateStore) -> int:
            if store is self._remote:
                marker = None if self.spend_source is None else _SEEDED
                index = await store.reserve(keys, limits, amount, ttls, marker)
                if index == -2:  # the store lost its data: seed first, never count from zero
                    await self._seed_spend(store)
                    index = await store.reserve(keys, limits, amount, ttls)
                return index
            await self._seed(keys, ttls)
            index = await store.reserve(keys, self._local_limits(keys, limits), amount, ttls)
            if index < 0:
                self._count_pending(keys, amount, ttls)
            return index

        index, _ = await self._on(call)
        if index < 0:
            return None
        return Limited("day" if index == 0 else "month")

    async def settle(
        self, tenant: str, reserved: float, cost: float, settle_id: str | None = None
    ) -> None:
        """Replace a reservation of `reserved` by the request's real `cost` (0.0 reserved: just
        count `cost`), once: a settle whose call failed may have landed, so it is sent again
        under the same `settle_id` (a request's id; else a fresh one), which the store applies
        once."""
        delta = cost - reserved
        if delta == 0.0:
            return
        keys, ttls = self._spend_keys(tenant)
        once = f"settled:{settle_id or uuid.uuid4().hex}"
        if self._remote is not None and self.up:
            started = self._clock()
            try:
                totals = await self._remote.settle(keys, delta, ttls, once, _SETTLED_TTL_S)
            except StoreUnavailable as exc:
                self._failed(exc, started)
                self._unsettled[once] = (keys, delta, ttls)
                await self._settle_locally(keys, delta, ttls, pending=False)
                return
            self._answered(started)
            self._seen.update(zip(keys, totals, strict=True))
            return
        await self._settle_locally(keys, delta, ttls, pending=True)

    async def _settle_locally(
        self, keys: list[str], delta: float, ttls: list[float], *, pending: bool
    ) -> None:
        await self._seed(keys, ttls)
        if pending:
            self._count_pending(keys, delta, ttls)
        for key, ttl in zip(keys, ttls, strict=True):
            await self._local.add(key, delta, ttl)

    def _local_limits(self, keys: Sequence[str], limits: Sequence[float]) -> list[float]:
        """While degraded: what the fleet had left when last seen, shared out by N."""
        local = []
        for key, limit in zip(keys, limits, strict=True):
            seen = self._seen.get(key, 0.0)
            local.append(seen + max(0.0, limit - seen) / self.fleet_size)
        return local

    async def _seed(self, keys: Sequence[str], ttls: Sequence[float]) -> None:
        """Start the local counters from the fleet's totals as last seen (set, not added to:
        a counter left from an earlier stretch on local state starts over)."""
        for key, ttl in zip(keys, ttls, strict=True):
            if key not in self._seeded:
                self._seeded.add(key)
                (left,) = await self._local.counters([key])
                await self._local.add(key, self._seen.get(key, 0.0) - left, ttl)

    def _count_pending(self, keys: Sequence[str], amount: float, ttls: Sequence[float]) -> None:
        if self._remote is None:
            return
        for key, ttl in zip(keys, ttls, strict=True):
            self._pending[key] = (self._pending.get(key, (0.0, ttl))[0] + amount, ttl)

    # -- provider holds -----------------------------------------------------------------------

    def watch(self, provider: str, listener: HoldListener) -> None:
        """Call `listener` at each sync with the holds other instances published for
        `provider` (a new incarnation of the provider's actor replaces the old listener)."""
        self._listeners[provider] = listener

    async def publish_hold(
        self, provider: str, kind: HoldKind, seconds: float, reason: str = ""
    ) -> None:
        """Tell the fleet `provider` is held out for `seconds` (never shortening a longer
        hold). While degraded nothing is published: each instance finds out for itself."""
        if seconds > 0:
            key, value = f"hold:{provider}:{kind}", f"{self.instance}|{reason}"
            await self._shared(lambda store: store.hold(key, value, seconds), None)

    def offer_override(self, provider: str, mode: str) -> None:
        """Tell the fleet an operator set `provider`'s breaker to `mode` here, from synchronous
        code: the others set theirs alike at their next sync, once, and an instance that starts
        later finds it. Published in the order they were set; nothing while degraded (the
        override stays on this instance), nor when 256 are already waiting (a warning)."""
        value = f"{self.instance}|{mode}@{uuid.uuid4().hex[:12]}"
        self._overrides_seen.add(value)
        try:
            self._overrides_out.send_nowait((provider, mode, value))
        except trio.WouldBlock:
            _log.warning("breaker_override_not_shared", provider=provider, mode=mode)

    async def _share_overrides(self) -> None:
        async for provider, mode, value in self._overrides_due:
            await self._publish_override(provider, mode, value)

    async def _publish_override(self, provider: str, mode: str, value: str) -> None:
        if mode == "reset":  # the fleet's trip goes too, or its hold would open them again
            tripped = [f"hold:{provider}:open", f"fails:{provider}", f"probe:{provider}"]
            await self._shared(lambda store: store.delete(tripped), None)
        key = f"hold:{provider}:override"
        ttl = _OVERRIDE_TTL_S if mode in _STANDING_OVERRIDES else _OVERRIDE_NEWS_TTL_S
        await self._shared(lambda store: store.put(key, value, ttl), None)

    async def look_before_calling(self, provider: str) -> None:
        """Read `provider`'s holds and run of failures now, before a call, while this instance
        knows of a run (its own failure, or the last sync's read): an instance whose failure
        made the run long enough has tripped and published its hold since, and the call would
        be one more failure. Calls at once share one read; none while the store is away."""
        if self._remote is None or not self.up or not self.failure_runs.get(provider):
            return
        looking = self._looking.get(provider)
        if looking is not None:
            await looking.wait()
            return
        self._looking[provider] = done = trio.Event()
        try:
            await self._shared(lambda store: self._read_holds(store, provider), None)
        finally:
            del self._looking[provider]
            done.set()

    async def _read_holds(self, remote: StateStore, provider: str | None = None) -> None:
        """The holds others published, and the fleet's runs of failures, per provider (or of
        `provider` alone)."""
        listeners = [
            (name, listener)
            for name, listener in self._listeners.items()
            if provider is None or name == provider
        ]
        keys = [f"hold:{name}:{kind}" for name, _ in listeners for kind in HOLD_KINDS]
        runs = [f"fails:{name}" for name, _ in listeners]
        found = await remote.holds(keys + runs)
        for (name, _), run in zip(listeners, found[len(keys) :], strict=True):
            self.failure_runs[name] = 0 if run is None else failure_run(run[0])[0]
        found = found[: len(keys)]
        for index, hold in enumerate(found):
            if hold is None:
                continue
            name, listener = listeners[index // len(HOLD_KINDS)]
            kind, seconds = HOLD_KINDS[index % len(HOLD_KINDS)], hold[1]
            owner, _, reason = hold[0].partition("|")
            if kind == "override":
                # Once per override, and whoever set it: this instance too, in an earlier life.
                if hold[0] in self._overrides_seen:
                    continue
                self._overrides_seen.add(hold[0])
                listener(kind, seconds, f"{reason.partition('@')[0]}:{owner}")
            elif owner != self.instance:
                if kind == "closed":
                    seconds = _published_ago(reason, seconds)
                listener(kind, seconds, reason)

    async def count_failure(self, provider: str, ago_s: float) -> int:
        """Count a failed call to `provider`, sent `ago_s` seconds ago, into the fleet's run of
        its consecutive failures: the run's length (0 while the store is away, when each
        instance counts only its own, in its breaker)."""
        key = f"fails:{provider}"
        run = await self._shared(lambda store: store.failure(key, ago_s, _FAILURE_RUN_TTL_S), None)
        if run is None:
            return 0
        self.failure_runs[provider] = run
        return run

    async def count_success(self, provider: str, ago_s: float) -> None:
        """A call to `provider` sent `ago_s` seconds ago succeeded: it ends the fleet's run of
        its failures unless a failed call was sent after it. Sent only while this instance
        knows of a run (its own failure, or the last sync's read): a run another instance
        began since the last sync is ended by that instance's next success, or read at the
        next sync."""
        if not self.failure_runs.get(provider):
            return
        key = f"fails:{provider}"

        async def end_run(store: StateStore) -> bool:
            await store.success(key, ago_s)
            return True

        if await self._shared(end_run, False):
            self.failure_runs[provider] = 0

    async def claim_probe(self, provider: str, seconds: float) -> bool:
        """Whether this instance may send `provider` its half-open probes now: one instance
        at a time in the fleet, for `seconds`; always, while degraded."""
        key = f"probe:{provider}"
        return await self._shared(lambda store: store.claim(key, self.instance, seconds), True)

    async def claim_recovery_probe(
        self, provider: str, interval_s: float, timeout_s: float
    ) -> bool:
        """Whether this instance may send `provider` the recovery probe of this interval (its
        probes go out `interval_s` apart, each answered or given up within `timeout_s`, while
        its breaker is open): one instance at a time in the fleet, whichever claims first;
        always, while degraded. The claim lasts as long as the probe may (its timeout, and the
        rest of the interval), and `end_recovery_probe` cuts it short when the probe ends, so
        a probe that hangs keeps the others from sending another beside it."""
        key, lease = f"recovery:{provider}", interval_s * _RECOVERY_LEASE + timeout_s
        return await self._shared(lambda store: store.claim(key, self.instance, lease), True)

    async def end_recovery_probe(self, provider: str, interval_s: float, sent_s: float) -> None:
        """The recovery probe this instance claimed ended, `sent_s` after it was sent: the
        claim lasts to `_RECOVERY_LEASE` of the interval after the sending (so that no other
        instance probes sooner, and the next probe, an interval after it, finds it over), or
        ends now if the probe took longer."""
        key, left = f"recovery:{provider}", interval_s * _RECOVERY_LEASE - sent_s
        if left > 0:
            await self._shared(lambda store: store.put(key, self.instance, left), None)
        else:
            await self._shared(lambda store: store.release(key, self.instance), False)

    async def release_probe(self, provider: str, seconds: float) -> bool:
        """This instance's half-open probes of `provider` succeeded: end its claim to them, and
        with it the fleet's open hold (a trip older than their success), and tell the others for
        `seconds` (the claim's lease, which they would have waited out), so that they close
        their breakers at their next sync. Nothing when the claim is no longer ours (it ran out
        and another instance holds it now: its probes speak for the fleet), nor while the store
        is away (each instance finds out for itself). True when the claim was ours."""
        claim, hold = f"probe:{provider}", f"hold:{provider}:open"
        released = await self._shared(
            lambda store: store.release(claim, self.instance, [hold]), False
        )
        if released:
            # Set over an earlier one (the latest news), its reason how long it is published
            # for: from that and the seconds left a reader tells how long ago the breaker
            # closed (durations only: the instances' clocks need not agree).
            key, value = f"hold:{provider}:closed", f"{self.instance}|{seconds!r}"
            await self._shared(lambda store: store.put(key, value, seconds), None)
        return released

    # -- the last-resort cache ----------------------------------------------------------------

    def offer_cache(self, scope: str, key: object, entry: dict[str, str], ttl_s: float) -> None:
        """`cache_put` in the background, from synchronous code; dropped when 256 are already
        waiting (the store is slow: the local cache still has the entry)."""
        with contextlib.suppress(trio.WouldBlock):
            self._outbox.send_nowait((scope, key, entry, ttl_s))

    async def _share_cache(self) -> None:
        async for scope, key, entry, ttl_s in self._outgoing:
            await self.cache_put(scope, key, entry, ttl_s)

    async def cache_put(self, scope: str, key: object, entry: dict[str, str], ttl_s: float) -> None:
        """Share a reply under `key` in `scope` (a tenant) for `ttl_s`; nothing while degraded
        (the local cache still has it)."""
        shared_key, value = _cache_key(scope, key), json.dumps(entry)
        await self._shared(lambda store: store.put(shared_key, value, ttl_s), None)

    async def cache_get(self, scope: str, key: object) -> dict[str, str] | None:
        """The reply another instance shared under `key` in `scope`, if any."""
        shared_key = _cache_key(scope, key)
        found = await self._shared(lambda store: store.get(shared_key), None)
        return None if found is None else dict(json.loads(found))


#: The limit of a counter with no budget (Lua's tonumber reads no "inf").
_UNLIMITED = 1e300


def _limit(budget: float | None) -> float:
    return _UNLIMITED if budget is None else budget


def _published_ago(seconds: str, left: float) -> float:
    """How long ago a hold published for `seconds` (as its reason says) with `left` seconds
    left was published; forever ago when the reason is not a duration."""
    try:
        return max(0.0, float(seconds) - left)
    except ValueError:
        return math.inf


def _cache_key(scope: str, key: object) -> str:
    """The store's key for a cache entry: the scope in clear (to find a tenant's entries),
    the request's identity hashed (it holds prompts)."""
    digest = hashlib.sha256(repr(key).encode()).hexdigest()
    return f"cache:{scope}:{digest}"


@contextlib.asynccontextmanager
async def open_fleet_state(
    config: StateConfig,
    *,
    clock: Callable[[], float] = trio.current_time,
    remote: StateStore | None = None,
) -> AsyncIterator[FleetState]:
    """The `FleetState` of `config` with its background task running while the block runs;
    with `remote`, on that store (left open) instead of the Redis at `config.url`."""
    if config.backend == "memory":
        yield FleetState(config, None, clock=clock)
        return
    if remote is not None:
        async with _running(config, remote, clock) as fleet:
            yield fleet
        return
    from actors.state.redis import open_redis_store  # coredis only when Redis is asked for

    async with open_redis_store(config) as store, _running(config, store, clock) as fleet:
        yield fleet


@contextlib.asynccontextmanager
async def _running(
    config: StateConfig, remote: StateStore, clock: Callable[[], float]
) -> AsyncIterator[FleetState]:
    async with trio.open_nursery() as nursery:
        fleet = FleetState(config, remote, clock=clock)
        await fleet.sync()
        nursery.start_soon(fleet.run)
        try:
            yield fleet
        finally:
            nursery.cancel_scope.cancel()
