"""The provider actor: one per configured provider, owner of its health, breaker and adapter.

Calls do not queue through the mailbox. A call runs in the *caller's* task (the cascade's level
nursery), so the level's cancel scope bounds it and a timed-out level leaves nothing behind; the
actor's part is admission (availability, Retry-After, breaker, bulkhead) and bookkeeping, both
synchronous, so in trio they are atomic with respect to every other task. A call first waits for
a bulkhead slot (no later than its deadline) and is admitted only once it holds one, when it
really goes out: a breaker permit taken before the wait would let calls queued while the breaker
was closed or open reach the provider once it is half-open. The mailbox carries
control messages (operator breaker commands, crash requests); the actor's own task publishes a
heartbeat to the router on a period, whenever its state changes, and when an open breaker is due
to turn half-open. Another of its tasks probes the provider while its breaker is open
(`actors.recovery`), where its config asks for it. In a fleet (`actors.state`) its trips,
Retry-After holds and auth or billing failures are published for the other instances, and
theirs held here, without counting as trips of its own; its recovery probes take turns with
the other instances' (one per interval from the whole fleet), a failed one holding the fleet
open until the next.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Literal, cast, get_args

import attrs
import trio

from actors.adapters.base import ADAPTER_KINDS, Adapter, AdapterContext
from actors.breaker import CircuitBreaker
from actors.concurrency import AdaptiveLimit, Bulkhead
from actors.config import ProviderConfig
from actors.errors import FailureKind, ProviderError
from actors.health import HealthTracker
from actors.messages import (
    BreakerSnapshot,
    BreakerState,
    Completion,
    ProviderSnapshot,
    Request,
    StreamDone,
    StreamEvent,
)
from actors.recovery import PROBE_REQUEST, RecoveryProbes, completion_cost
from actors.state.fleet import FleetState, HoldKind
from runtime.kernel.actor import Actor, ActorRef
from runtime.kernel.events import EventBus

BreakerMode = Literal["open", "close", "reset", "auto", "disable"]
BREAKER_MODES: frozenset[str] = frozenset(get_args(BreakerMode))

#: How long an auth failure keeps a provider out before one call may try the key again.
AUTH_RETRY_S = 60.0
#: How long a billing failure (a spent account) keeps a provider out before one call tries
#: again: an account is topped up by a person, so asking every minute would only add noise.
BILLING_RETRY_S = 300.0
#: The failures that hold a provider out (unavailable, with the reason), and for how long.
HELD_OUT_FOR = {FailureKind.AUTH: AUTH_RETRY_S, FailureKind.BILLING: BILLING_RETRY_S}
#: The breaker transitions that are trips of this instance's own (shared with the fleet).
_TRIPS = frozenset(
    {
        "failure_rate",
        "consecutive_failures",
        "fleet_consecutive_failures",
        "slow_call_rate",
        "probe_failed",
        "probe_slow",
    }
)
#: Retry-After assumed when a 429 names none.
DEFAULT_RETRY_AFTER_S = 1.0


class ProviderContext:
    """What every provider actor of one runtime shares: its router, bus and state store."""

    def __init__(
        self,
        *,
        adapters: AdapterContext,
        events: EventBus,
        router: Callable[[], ActorRef | None],
        heartbeat_interval_s: float,
        restarts: Callable[[str], int],
        latency_stale_s: float = 30.0,
        fleet: FleetState | None = None,
    ) -> None:
        self.adapters = adapters
        self.events = events
        self.router = router
        self.heartbeat_interval_s = heartbeat_interval_s
        self.latency_stale_s = latency_stale_s
        self.restarts = restarts
        self.last_snapshots: dict[str, ProviderSnapshot] = {}
        #: The state a fleet of instances shares (`[state] backend = "redis"`), or None.
        self.fleet = fleet


class ProviderActor(Actor):
    kind = "provider"

    def __init__(self, config: ProviderConfig, context: ProviderContext) -> None:
        super().__init__(config.name)
        self.config = config
        self.context = context
        self.breaker = CircuitBreaker(config.breaker, on_transition=self._on_breaker_transition)
        self.health = HealthTracker(latency_stale_s=context.latency_stale_s)
        self.adapter: Adapter | None = None
        #: The learned limit on calls in flight (`max_in_flight="auto"`), else None.
        self.concurrency: AdaptiveLimit | None = None
        if config.max_in_flight == "auto":
            self.concurrency = AdaptiveLimit(
                config.max_in_flight_min,
                config.max_in_flight_max,
                on_change=self._on_limit_change,
            )
            self.bulkhead = Bulkhead(self.concurrency.limit)
        else:
            self.bulkhead = Bulkhead(config.max_in_flight)
        self.retry_after_until: float | None = None
        self.unavailable_until: float | None = None
        #: In a fleet: this instance holds the claim to send the half-open probes.
        self._probe_claimed = False
        self._dirty = trio.Event()
        #: p95 latency as of the last heartbeat (0 before any call).
        self.latency_p95_s = 0.0
        #: The calls in flight (for the age of the oldest).
        self._calls: set[_Call] = set()
        #: The admission of the latest admitted call: the next one admitted in the same breaker
        #: period shares it.
        self._admitted = _Admission(admitted=True, period=-1)
        self.recovery: RecoveryProbes | None = None
        probe = config.recovery_probe
        if probe != "off":
            self.recovery = RecoveryProbes(
                config.name,
                probe,
                config.recovery,
                breaker=self.breaker,
                events=context.events,
                call=self._probe_models if probe == "models" else self._probe_completion,
                may_probe=self._may_probe,
                gate=self._recovery_turn,
                gate_ended=self._recovery_turn_over,
                on_still_down=self._share_still_down,
            )
        self._restore(context.last_snapshots.get(config.name))

    # -- lifecycle ------------------------------------------------------------------------

    def _restore(self, snapshot: ProviderSnapshot | None) -> None:
        """Rebuild from the previous incarnation's last snapshot: a crash of ours does not make
        a failing provider look healthy again."""
        if snapshot is None:
            return
        self.breaker.restore(snapshot.breaker)
        self.health.restore(
            consecutive_failures=snapshot.consecutive_failures,
            quota_remaining=snapshot.quota_remaining,
            last_check=snapshot.last_check,
            # An auth failure is re-tried by a fresh incarnation; a missing key is found again.
            available=True,
            reason="",
        )
        self.retry_after_until = snapshot.retry_after_until
        if self.recovery is not None:
            self.recovery.probes = snapshot.recovery_probes
            self.recovery.cost_usd = snapshot.probe_cost_usd

    async def on_start(self) -> None:
        factory = ADAPTER_KINDS.get(self.config.kind)
        if factory is None:
            raise ValueError(f"no adapter for provider kind {self.config.kind!r}")
        self.adapter = factory(self.config, self.context.adapters)
        reason = getattr(self.adapter, "unavailable_reason", None)
        if reason:
            self.health.mark_unavailable(reason)
            self.context.events.emit("provider_unavailable", provider=self.name, reason=reason)
        self.nursery.start_soon(self._heartbeats)
        if self.context.fleet is not None:
            self.context.fleet.watch(self.name, self._on_fleet_hold)
            self.breaker.probe_gate = self._holds_probe_claim
            if self.breaker.state is BreakerState.HALF_OPEN:  # restored half-open: claim again
                self.nursery.start_soon(self._claim_probes, self.context.fleet)
        if self.recovery is not None:
            self.nursery.start_soon(self.recovery.run)
        self._publish()

    async def on_stop(self) -> None:
        self.context.last_snapshots[self.name] = self.snapshot()
        if self.adapter is not None:
            await self.adapter.aclose()
            self.context.events.emit("provider_client_closed", provider=self.name)

    async def _heartbeats(self) -> None:
        interval = self.context.heartbeat_interval_s
        while True:
            deadline = trio.current_time() + interval
            open_until = self.breaker.open_until
            if open_until is not None:
                deadline = min(deadline, open_until)
            with trio.move_on_at(deadline):
                await self._dirty.wait()
            self._dirty = trio.Event()
            self._publish()

    def _publish(self) -> None:
        snapshot = self.snapshot()
        # Kept for the cascade's hedging, which must not sort latencies per request.
        self.latency_p95_s = snapshot.latency_p95_ms / 1000.0
        self.context.last_snapshots[self.name] = snapshot
        router = self.context.router()
        if router is not None:
            router.try_tell(snapshot)  # a full router drops a heartbeat, never blocks us

    def _changed(self) -> None:
        self._dirty.set()

    def _on_breaker_transition(self, old: BreakerState, new: BreakerState, reason: str) -> None:
        event = {
            BreakerState.OPEN: "breaker_opened",
            BreakerState.HALF_OPEN: "breaker_half_open",
            BreakerState.CLOSED: "breaker_closed",
        }.get(new, "breaker_overridden")
        if reason == "fleet_probing":
            # Open again while another instance probes: routine in a fleet, not news.
            event = "breaker_awaiting_fleet_probe"
        self.context.events.emit(
            event, provider=self.name, old=old.value, new=new.value, reason=reason
        )
        if self.recovery is not None:
            self.recovery.changed()
        self._changed()
        self._share_transition(new, reason)

    # -- the fleet (`actors.state`) ---------------------------------------------------------

    def _share(self, kind: HoldKind, until: float | None, reason: str) -> None:
        """Tell the other instances of the fleet about a hold of ours (in the background)."""
        fleet = self.context.fleet
        if fleet is not None and until is not None and self._nursery is not None:
            seconds = until - trio.current_time()
            self.nursery.start_soon(fleet.publish_hold, self.name, kind, seconds, reason)

    def _share_transition(self, new: BreakerState, reason: str) -> None:
        """A trip of ours opens the breaker fleet-wide; a half-open period is probed by one
        instance at a time, whose probes' success closes the breaker fleet-wide."""
        fleet = self.context.fleet
        if fleet is None or self._nursery is None:
            return
        if new is BreakerState.OPEN and reason in _TRIPS:
            self._share("open", self.breaker.open_until, reason)
        elif new is BreakerState.HALF_OPEN and reason in ("open_elapsed", "recovery_probe"):
            self._probe_claimed = False
            self.nursery.start_soon(self._claim_probes, fleet)
        elif new is BreakerState.CLOSED and reason == "probes_succeeded" and self._probe_claimed:
            self._probe_claimed = False
            lease_s = self.config.breaker.open_s
            self.nursery.start_soon(fleet.release_probe, self.name, lease_s)

    def _holds_probe_claim(self) -> bool:
        """The breaker's `probe_gate`: no half-open probe goes out before the claim is ours."""
        return self._probe_claimed

    async def _claim_probes(self, fleet: FleetState) -> None:
        """Probe once the fleet's claim is ours; another instance probing already: stay open
        for as long as its claim may last."""
        lease_s = self.config.breaker.open_s
        claimed = await fleet.claim_probe(self.name, lease_s)
        if self.breaker.state is not BreakerState.HALF_OPEN:
            return  # closed or opened while the store answered: nothing to probe now
        if claimed:
            self._probe_claimed = True
            self.breaker.probe_gate_opened()
            self._changed()
        else:
            self.breaker.hold_open_until(trio.current_time() + lease_s, "fleet_probing")

    def _share_outcome(self, admission: _Admission, elapsed_s: float, success: bool) -> None:
        """In a fleet: count an admitted call in the fleet's run of this provider's failures;
        the instance whose failure makes the run long enough trips (and publishes the hold)."""
        fleet = self.context.fleet
        if (
            fleet is None
            or not fleet.up
            or not admission.admitted
            or self._nursery is None
            or self.config.breaker.consecutive_failures <= 0
        ):
            return
        if not success:
            self.nursery.start_soon(self._count_fleet_failure, fleet, elapsed_s)
        elif fleet.failure_runs.get(self.name):
            self.nursery.start_soon(fleet.count_success, self.name, elapsed_s)

    async def _count_fleet_failure(self, fleet: FleetState, elapsed_s: float) -> None:
        if (
            await fleet.count_failure(self.name, elapsed_s)
            >= self.config.breaker.consecutive_failures
        ):
            self.breaker.trip_for_fleet()

    async def _look_before_calling(self, *, panic: bool) -> None:
        """In a fleet, with the breaker closed and a run of failures going: take the holds
        another instance published since the last sync before calling (its trip may be one)."""
        fleet = self.context.fleet
        if fleet is not None and not panic and self.breaker.state is BreakerState.CLOSED:
            await fleet.look_before_calling(self.name)

    def _on_fleet_hold(self, kind: HoldKind, seconds: float, reason: str) -> None:
        """Another instance holds this provider out for `seconds`: so do we, without counting
        a trip of our own (nor publishing it back). Its half-open probes succeeded `seconds`
        ago ("closed"): our breaker closes too, unless we learnt of a trip since. An operator
        overrode its breaker ("override"): so is ours."""
        if kind == "closed":
            self.breaker.close_for_fleet(trio.current_time() - seconds)
            return
        if kind == "override":
            self._apply_fleet_override(reason)
            return
        until = trio.current_time() + seconds
        if kind == "retry_after" and until > (self.retry_after_until or 0.0):
            self.retry_after_until = until
        elif kind == "unavailable" and until > (self.unavailable_until or 0.0):
            self.unavailable_until = until
            self.health.mark_unavailable(reason or f"{self.name} is unavailable (fleet)")
        if kind == "open":
            self.breaker.hold_open_as_tripped(until)
        else:
            self.breaker.hold_open_until(until, kind)
        self._changed()

    def _apply_fleet_override(self, reason: str) -> None:
        """`reason` is "MODE:INSTANCE": the override an operator set through that instance."""
        mode, _, origin = reason.partition(":")
        if mode not in BREAKER_MODES:
            return  # not one of ours (a newer version's mode): the breaker stays as it is
        self.context.events.emit(
            "breaker_override_from_fleet", provider=self.name, mode=mode, instance=origin
        )
        self._override_breaker(cast(BreakerMode, mode))

    def _on_limit_change(self, old: int, new: int, reason: str) -> None:
        """The learned limit moved: resize the bulkhead (calls out beyond a cut finish; no new
        one goes out until the calls in flight are under it) and say so."""
        self.bulkhead.total_tokens = new
        # A cut to half or less is news; the small steps of the search are not.
        event = "concurrency_limit_cut" if new * 2 <= old else "concurrency_limit_changed"
        self.context.events.emit(event, provider=self.name, old=old, new=new, reason=reason)
        self._changed()

    # -- recovery probes ------------------------------------------------------------------

    def _may_probe(self) -> bool:
        """Whether a recovery probe may ask the provider now: it runs, it is not held out (no
        key, auth or billing failure), and no Retry-After it sent is still running."""
        retry_after = self.retry_after_until
        return (
            self.adapter is not None
            and self.health.available
            and (retry_after is None or trio.current_time() >= retry_after)
        )

    async def _recovery_turn(self) -> bool:
        """In a fleet: whether this instance's turn it is to send the recovery probe of this
        interval (one instance per interval probes a provider that is down)."""
        fleet, settings = self.context.fleet, self.config.recovery
        if fleet is None:
            return True
        return await fleet.claim_recovery_probe(self.name, settings.interval_s, settings.timeout_s)

    async def _recovery_turn_over(self, started: float) -> None:
        """In a fleet: the probe this instance sent at `started` has ended; its turn lasts
        until another may send the next one (`FleetState.end_recovery_probe`)."""
        fleet = self.context.fleet
        if fleet is not None:
            sent_s = trio.current_time() - started
            await fleet.end_recovery_probe(self.name, self.config.recovery.interval_s, sent_s)

    def _share_still_down(self, hold_s: float) -> None:
        """In a fleet: a probe of ours found the provider still down and keeps our breaker open
        for `hold_s`; the others, whose turn it was not, hold theirs as long (else their open
        periods would end and let a half-open call reach the provider)."""
        self._share("open", trio.current_time() + hold_s, "recovery_probe")

    async def _probe_models(self) -> float:
        probe = getattr(self.adapter, "probe_models", None)
        if probe is None:
            raise ProviderError(FailureKind.UNSUPPORTED, f"{self.name} lists no models")
        await probe()
        return 0.0

    async def _probe_completion(self) -> float:
        assert self.adapter is not None
        model = self.config.models[0]
        completion = await self.adapter.complete(PROBE_REQUEST, model)
        # Priced as the cascade prices replies, by the model that answered; a dated id the
        # table lacks is priced as the model asked for.
        config = self.context.adapters.config
        price = config.models.get(completion.model) or config.model_info(model)
        return completion_cost(completion, price)

    # -- operator commands ----------------------------------------------------------------

    def set_breaker(self, mode: BreakerMode) -> BreakerSnapshot:
        """An operator's override of the breaker; in a fleet, every instance's (`actors.state`):
        the breaker is the provider's, not this process's."""
        snapshot = self._override_breaker(mode)
        if self.context.fleet is not None:
            self.context.fleet.offer_override(self.name, mode)
        return snapshot

    def _override_breaker(self, mode: BreakerMode) -> BreakerSnapshot:
        if mode == "open":
            self.breaker.force_open()
        elif mode == "close":
            self.breaker.force_closed()
        elif mode == "disable":
            self.breaker.disable()
        elif mode == "reset":
            self.breaker.reset()
        elif mode == "auto":
            self.breaker.auto()
        else:
            raise ValueError(
                f"breaker mode {mode!r} is not one of open, close, reset, auto, disable"
            )
        return self.breaker.snapshot()

    # -- calls ----------------------------------------------------------------------------

    @property
    def unavailable_reason(self) -> str:
        return self.health.snapshot().reason or f"{self.name} is unavailable"

    def _refusal(
        self, *, panic: bool, now: float | None = None, ask_breaker: bool = True
    ) -> ProviderError | None:
        """Why a call may not go out now (`now`: the clock's time, when the caller has it),
        if it may not; changes nothing. `ask_breaker=False` leaves the breaker out, for a
        caller that asks it for a permit next."""
        if self.adapter is None:
            return ProviderError(FailureKind.UNAVAILABLE, f"{self.name} is not running")
        if now is None:
            now = trio.current_time()
        if self.unavailable_until is not None:
            if now < self.unavailable_until:
                return ProviderError(FailureKind.UNAVAILABLE, self.unavailable_reason)
        elif not self.health.available:
            return ProviderError(FailureKind.UNAVAILABLE, self.unavailable_reason)
        if self.retry_after_until is not None and now < self.retry_after_until and not panic:
            return ProviderError(
                FailureKind.RATE_LIMITED,
                f"{self.name} asked to wait until t={self.retry_after_until:.1f}",
                retry_after_s=self.retry_after_until - now,
            )
        if ask_breaker and not self.breaker.would_admit(panic=panic, now=now):
            return self._breaker_refusal()
        return None

    def _breaker_refusal(self) -> ProviderError:
        return ProviderError(
            FailureKind.UNAVAILABLE, f"{self.name} breaker is {self.breaker.state}"
        )

    def _admit(self, *, panic: bool, now: float) -> _Admission:
        """Let one call out `now`, when it really goes out (it holds a bulkhead slot): raise
        `ProviderError(UNAVAILABLE | RATE_LIMITED)` unless it may. A panic call passes an open
        breaker without a permit, holding a half-open probe place while it is out. The
        breaker is asked once, for the permit: what it refuses is refused as `_refusal` would."""
        refusal = self._refusal(panic=panic, now=now, ask_breaker=False)
        if refusal is not None:
            raise refusal
        breaker = self.breaker
        period = breaker.acquire(now)
        if period is not None:
            admission = self._admitted
            if admission.period != period:
                admission = self._admitted = _Admission(admitted=True, period=period)
        elif panic and breaker.try_panic():
            admission = _Admission(admitted=False, period=breaker.period)
        else:
            raise self._breaker_refusal()
        if self.unavailable_until is not None:
            # The wait after an auth or billing failure is over: let one call try again.
            self.unavailable_until = None
            self.health.mark_available()
        return admission

    @contextlib.asynccontextmanager
    async def _slot(self, deadline: float, *, panic: bool) -> AsyncIterator[None]:
        """Hold a bulkhead slot (`_take_slot`) for as long as the block runs."""
        await self._take_slot(deadline, panic=panic)
        try:
            yield
        finally:
            self.bulkhead.release()

    async def _take_slot(self, deadline: float, *, panic: bool) -> None:
        """Take a bulkhead slot, waiting for one no later than `deadline`; the caller releases
        it. What would be refused anyway is refused before the wait; a call that never got a
        slot never went out, so it is not booked against the provider. A panic call first
        waits, within `deadline`, for a half-open breaker to have room for it."""
        if self.context.fleet is not None:
            await self._look_before_calling(panic=panic)
        if not panic:
            # The common case, a free slot: a cancel point, no scope, and no schedule point of
            # its own (trio's limiters yield here too): the call that follows yields, as every
            # adapter's does (I/O, a sleep, or the last resort's checkpoint), and one pass of
            # trio's loop fewer is a tenth of a request's cost in-process.
            await trio.lowlevel.checkpoint_if_cancelled()
            refusal = self._refusal(panic=False)
            if refusal is not None:
                raise refusal
            try:
                self.bulkhead.acquire_nowait()
            except trio.WouldBlock:
                pass
            else:
                return
            if self.concurrency is not None:
                await self._wait_within_limit(deadline, self.concurrency)
                return
        await self._wait_for_slot(deadline, panic=panic)

    async def _wait_within_limit(self, deadline: float, limit: AdaptiveLimit) -> None:
        """A learned limit is no queue: a call finding it used up waits for a slot a short while
        (`AdaptiveLimit.patience_s`), then goes to the next candidate."""
        limit.saturated()
        with trio.move_on_at(min(deadline, trio.current_time() + limit.patience_s)) as scope:
            await self._wait_for_slot(deadline, panic=False)
        if scope.cancelled_caught:
            raise ProviderError(
                FailureKind.UNAVAILABLE, f"{self.name} is at its concurrency limit ({limit.limit})"
            )

    async def _wait_for_slot(self, deadline: float, *, panic: bool) -> None:
        """Wait for a slot (a panic call: and for a half-open breaker's room) until `deadline`."""
        with trio.move_on_at(deadline) as scope:
            while True:
                if panic:
                    await self.breaker.wait_for_room()
                refusal = self._refusal(panic=panic)
                if refusal is not None:
                    raise refusal
                await self.bulkhead.acquire()
                if not panic or self.breaker.would_admit(panic=True):
                    return
                # Other panic calls took the half-open room while this one queued: wait again.
                self.bulkhead.release()
        if scope.cancelled_caught:
            raise ProviderError(
                FailureKind.TIMEOUT,
                f"{self.name} had no free slot (max_in_flight={self.config.max_in_flight}) "
                "before the deadline",
            )

    async def complete(
        self,
        request: Request,
        model: str,
        *,
        deadline: float,
        panic: bool = False,
        scoped: bool = False,
    ) -> Completion:
        """One call, bounded by `deadline` (trio time): a timeout is a classified failure.

        `scoped`: the caller runs the call inside a cancel scope of its own whose deadline is
        `deadline` or earlier (the cascade's level scope), and the call opens none: a scope of
        ours with the same deadline would never catch the cancellation (trio lets the
        outermost cancelled scope catch it), and the call's end at its deadline is booked as
        its timeout all the same. The slot is taken and released here rather than through
        `_slot`: this is every request's path, and a generator-based context manager costs
        more than the call."""
        await self._take_slot(deadline, panic=panic)
        try:
            call = self._begin_call(panic=panic)
            outcome: ProviderError | Completion | None = None
            try:
                if scoped:
                    outcome = await call.adapter.complete(request, model)
                else:
                    with trio.move_on_at(deadline) as scope:
                        outcome = await call.adapter.complete(request, model)
                    if scope.cancelled_caught:
                        outcome = self._timeout()
            except ProviderError as error:
                outcome = error
            except Exception as error:
                outcome = self._adapter_failed(error)
            except trio.Cancelled:
                # An enclosing scope with the same deadline (the level's) caught the
                # cancellation, not ours or we have none: it is still this call's timeout.
                if trio.current_time() >= deadline:
                    outcome = self._timeout()
                raise
            finally:
                self._end_call(call, outcome)
        finally:
            self.bulkhead.release()
        if isinstance(outcome, ProviderError):
            raise outcome
        assert outcome is not None
        return outcome

    @contextlib.asynccontextmanager
    async def open_stream(
        self,
        request: Request,
        model: str,
        *,
        deadline: float,
        first_chunk_deadline: float | None = None,
        panic: bool = False,
    ) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        """A stream of events from one call. Time to the first event (the wait for a slot
        included) is bounded by `first_chunk_deadline`, the whole stream by `deadline`; a
        failure at any point is recorded against the provider once."""
        first = deadline if first_chunk_deadline is None else min(deadline, first_chunk_deadline)
        async with self._slot(first, panic=panic):
            call = self._begin_call(panic=panic)
            recorder = _StreamRecord()
            try:
                async with contextlib.AsyncExitStack() as stack:
                    events = call.adapter.stream(request, model)
                    stack.push_async_callback(_aclose, events)
                    bounded = _bounded_stream(
                        self.name,
                        events,
                        deadline,
                        first_chunk_deadline,
                        recorder,
                        self._adapter_failed,
                    )
                    stack.push_async_callback(bounded.aclose)
                    yield bounded
            except ProviderError as error:
                recorder.outcome = error
                raise
            finally:
                self._end_call(call, recorder.outcome)

    def _begin_call(self, *, panic: bool) -> _Call:
        """Admit a call that goes out now and register it as in flight."""
        start = trio.current_time()
        admission = self._admit(panic=panic, now=start)
        adapter = self.adapter
        assert adapter is not None  # `_admit` refuses a call to an actor not running
        call = _Call(adapter, admission, start)
        self._calls.add(call)
        return call

    def _end_call(self, call: _Call, outcome: ProviderError | Completion | None) -> None:
        self._calls.remove(call)
        now = trio.current_time()
        elapsed = now - call.start
        self._record(outcome, elapsed, call.admission, now=now)
        if self.concurrency is not None:
            _teach(self.concurrency, outcome, elapsed, call.start)

    def _adapter_failed(self, error: Exception) -> ProviderError:
        """An adapter raised something it should have classified (a bug, or a reply shape no
        one foresaw): one provider's surprise must not fail a request others can answer."""
        self.context.events.emit(
            "adapter_error", provider=self.name, error=type(error).__name__, detail=str(error)[:200]
        )
        return ProviderError(
            FailureKind.MALFORMED, f"{self.name} adapter failed: {type(error).__name__}: {error}"
        )

    def _timeout(self) -> ProviderError:
        return ProviderError(FailureKind.TIMEOUT, f"{self.name} did not answer within its deadline")

    def _record(
        self,
        outcome: ProviderError | Completion | None,
        elapsed_s: float,
        admission: _Admission,
        *,
        now: float,
    ) -> None:
        """Book one call's end (at `now`, the clock's time) into breaker and health. `None` =
        cancelled from outside."""
        health = self.health
        before = health.status
        if isinstance(outcome, Completion):
            self._book_breaker(admission, elapsed_s, success=True, now=now)
            after = health.record_success(elapsed_s, now=now)
            if outcome.quota_remaining is not None:
                health.set_quota(outcome.quota_remaining)
        else:
            if isinstance(outcome, ProviderError):
                self._record_failure(outcome, elapsed_s, admission, now=now)
            else:
                self._book_breaker(admission, elapsed_s, success=None)
            after = health.status
        if after is not before:
            self.context.events.emit(
                "provider_health_changed", provider=self.name, old=before.value, new=after.value
            )
            self._changed()

    def _book_breaker(
        self,
        admission: _Admission,
        elapsed_s: float,
        *,
        success: bool | None,
        now: float | None = None,
    ) -> None:
        """Tell the breaker how a call ended: True success, False a failure that counts against
        the provider, None an end that says nothing about it."""
        breaker = self.breaker
        if not admission.admitted:
            breaker.end_panic(elapsed_s, success=success is True)
        elif success is None:
            breaker.on_ignored(period=admission.period)
        elif success:
            breaker.on_success(elapsed_s, period=admission.period, now=now)
        else:
            breaker.on_failure(elapsed_s, period=admission.period, now=now)
        if success is not None and self.context.fleet is not None:
            self._share_outcome(admission, elapsed_s, success)

    def _record_failure(
        self, error: ProviderError, elapsed_s: float, admission: _Admission, *, now: float
    ) -> None:
        """Only `BREAKER_FAILURES` count against the breaker and in the error rate and the run
        of consecutive failures: those are the provider's ill health. A model that cannot take a
        parameter (UNSUPPORTED), an empty reply (EMPTY_REPLY) or a refusal (REFUSED) say nothing
        about it, and neither count nor hold it out. A rate limit holds it out until its
        Retry-After; an auth or billing failure holds it out (unavailable, with the reason)
        until one call may try again."""
        if error.quota_remaining is not None:
            self.health.set_quota(error.quota_remaining)
        if error.counts_against_breaker:
            self._book_breaker(admission, elapsed_s, success=False, now=now)
            # A timeout says the provider is slow; a fast error would flatter its latency.
            latency = elapsed_s if error.kind is FailureKind.TIMEOUT else None
            self.health.record_failure(latency, now=now)
            return
        self._book_breaker(admission, elapsed_s, success=None)
        if error.kind is FailureKind.RATE_LIMITED:
            self._hold_for_retry_after(error)
        elif error.kind in HELD_OUT_FOR:
            self._hold_out(error)

    def _hold_for_retry_after(self, error: ProviderError) -> None:
        now = trio.current_time()
        wait = error.retry_after_s if error.retry_after_s is not None else DEFAULT_RETRY_AFTER_S
        until = now + wait
        if self.retry_after_until is None or until > self.retry_after_until:
            self.retry_after_until = until
            self.context.events.emit(
                "provider_rate_limited", provider=self.name, retry_after_s=round(wait, 3)
            )
        self.breaker.hold_open_until(until)
        self._changed()
        self._share("retry_after", until, "retry_after")

    def _hold_out(self, error: ProviderError) -> None:
        """An auth or billing failure: unavailable, with the reason, for `HELD_OUT_FOR[kind]`."""
        wait = HELD_OUT_FOR[error.kind]
        self.unavailable_until = trio.current_time() + wait
        self.health.mark_unavailable(error.message)
        event = (
            "provider_auth_failed" if error.kind is FailureKind.AUTH else "provider_billing_failed"
        )
        self.context.events.emit(event, provider=self.name, reason=error.message, retry_in_s=wait)
        self._changed()
        self._share("unavailable", self.unavailable_until, error.message)

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> ProviderSnapshot:
        health = self.health.snapshot()
        now = health.at
        retry_after = self.retry_after_until
        if retry_after is not None and retry_after <= now:
            retry_after = None
        available = health.available or (
            self.unavailable_until is not None and now >= self.unavailable_until
        )
        return ProviderSnapshot(
            provider=self.name,
            kind=self.config.kind,
            models=self.config.models,
            at=now,
            status=health.status,
            breaker=self.breaker.snapshot(),
            latency_ms=health.latency_ms,
            latency_p50_ms=health.latency_p50_ms,
            latency_p95_ms=health.latency_p95_ms,
            error_rate=health.error_rate,
            quota_remaining=health.quota_remaining,
            consecutive_failures=health.consecutive_failures,
            last_check=health.last_check,
            available=available,
            reason=health.reason,
            retry_after_until=retry_after,
            calls_in_flight=self.bulkhead.borrowed_tokens,
            oldest_call_s=now - min(call.start for call in self._calls) if self._calls else 0.0,
            restarts=self.context.restarts(self.name),
            recovery_probes=self.recovery.probes if self.recovery is not None else 0,
            probe_cost_usd=self.recovery.cost_usd if self.recovery is not None else 0.0,
            concurrency_limit=int(self.bulkhead.total_tokens),
            concurrency_bounds=None if self.concurrency is None else self.concurrency.bounds,
        )


def _teach(limit: AdaptiveLimit, outcome: object, elapsed_s: float, started_at: float) -> None:
    """What a call's end tells the learned limit: a reply's or a timeout's latency, a 429."""
    if isinstance(outcome, Completion):
        limit.on_latency(elapsed_s)
    elif isinstance(outcome, ProviderError):
        if outcome.kind is FailureKind.RATE_LIMITED:
            limit.on_rate_limited(started_at)
        elif outcome.kind is FailureKind.TIMEOUT:
            limit.on_latency(elapsed_s)


@attrs.frozen
class _Admission:
    """How a call was let out: with a breaker permit (taken in breaker `period`), or as a panic
    call past an open breaker."""

    admitted: bool
    period: int


class _Call:
    """A call that went out: its adapter, admission and start (trio time). One of the calls
    in flight, by identity."""

    __slots__ = ("adapter", "admission", "start")

    def __init__(self, adapter: Adapter, admission: _Admission, start: float) -> None:
        self.adapter = adapter
        self.admission = admission
        self.start = start


class _StreamRecord:
    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome: ProviderError | Completion | None = None


async def _aclose(events: AsyncIterator[StreamEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def _bounded_stream(
    provider: str,
    events: AsyncIterator[StreamEvent],
    deadline: float,
    first_chunk_deadline: float | None,
    record: _StreamRecord,
    adapter_failed: Callable[[Exception], ProviderError],
) -> AsyncGenerator[StreamEvent, None]:
    """Pass events through, turning a missed deadline into a classified timeout."""
    first = True
    while True:
        limit = (
            deadline
            if not first or first_chunk_deadline is None
            else min(deadline, first_chunk_deadline)
        )
        with trio.move_on_at(limit) as scope:
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                error = ProviderError(
                    FailureKind.MALFORMED, f"{provider} stream ended without a final event"
                )
                record.outcome = error
                raise error from None
            except ProviderError as error:
                record.outcome = error
                raise
            except Exception as error:
                failure = adapter_failed(error)
                record.outcome = failure
                raise failure from None
        if scope.cancelled_caught:
            what = "first chunk" if first else "stream"
            timeout = ProviderError(FailureKind.TIMEOUT, f"{provider} {what} timed out")
            record.outcome = timeout
            raise timeout
        first = False
        if isinstance(event, StreamDone):
            record.outcome = event.completion
            yield event
            return
        yield event
