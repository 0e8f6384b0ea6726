"""Two runtimes sharing one store in virtual time (the store in memory, standing in for Redis):
a trip on one holds the provider on the other, which ends its hold half-open as after a trip of
its own; then one instance at a time sends the half-open probes, and when they succeed the
others close at their next sync; a Retry-After and an auth failure are shared the same way; the
instances take turns at the recovery probes of a provider that is down, one per interval."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import trio
import trio.testing
from support import drain, make_config

import runtime.embed
from actors.adapters.simulated import SimulatedAdapter
from actors.breaker import CircuitBreaker
from actors.config import BreakerConfig, Config, StateConfig
from actors.faults import Fault, FaultKind
from actors.messages import BreakerState, ProviderSnapshot
from actors.provider import BreakerMode, ProviderActor
from actors.recovery import RecoveryProbes
from actors.state import FleetState, MemoryStore
from actors.state.store import StoreUnavailable
from runtime import Request
from runtime.embed import Runtime, open_runtime
from runtime.kernel.events import Event

REQUEST = Request(
    prompt="Summarise the quarterly tax report",
    complexity="moderate",
    quality="production",
    budget_usd=0.05,
    max_tokens=500,
)


@pytest.fixture
def shared_store(monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    """`[state] backend = "redis"` opens a FleetState on one MemoryStore for every runtime."""
    return share(monkeypatch, MemoryStore())


def share(
    monkeypatch: pytest.MonkeyPatch, store: MemoryStore, through: Mapping[str, Any] | None = None
) -> MemoryStore:
    """Every runtime's `[state] backend = "redis"` on `store`; the instances named in
    `through` reach it through the object given there (one that fails, say)."""

    @contextlib.asynccontextmanager
    async def open_shared(config: StateConfig) -> AsyncIterator[FleetState]:
        reached = (through or {}).get(config.instance, store)
        async with trio.open_nursery() as nursery:
            fleet = FleetState(config, reached)
            await nursery.start(fleet.run)
            yield fleet
            nursery.cancel_scope.cancel()

    monkeypatch.setattr(runtime.embed, "open_fleet_state", open_shared)
    return store


def config(instance: str, **changes: Any) -> Config:
    breaker = {"consecutive_failures": 2, "open_s": 10.0, "half_open_probes": 1}
    return make_config(
        providers={"openai": {"breaker": breaker}, "anthropic": {"breaker": breaker}},
        state={"backend": "redis", "url": "redis://unused", "instance": instance},
        **changes,
    )


#: OpenAI alone on the primary level: a request goes to it whenever its breaker lets one out.
OPENAI_FIRST = [
    {"name": "primary", "providers": ["openai"], "timeout_s": 30},
    {"name": "secondary", "providers": ["anthropic", "gemini"], "timeout_s": 45},
]


def breakers(rt: Runtime) -> dict[str, str]:
    return {p.name: p.breaker for p in rt.status().providers}


async def test_a_trip_holds_the_fleet_and_one_instance_probes(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    async with open_runtime(config("a")) as one, open_runtime(config("b")) as two:
        with one.events.subscribe() as seen_one, two.events.subscribe() as seen_two:
            for name in ("openai", "anthropic"):
                one.inject_fault(name, Fault(FaultKind.OUTAGE))
            for _ in range(2):
                await one.complete(REQUEST)
            assert breakers(one)["openai"] == "open"
            await trio.sleep(0.75)  # sync_interval_s + command_timeout_s
            assert breakers(two)["openai"] == "open"
            reply = await two.complete(REQUEST)
            assert [a.provider for a in reply.attempts] == ["gemini"]
            assert snapshot(two, "openai").breaker.trips == 0  # not a trip of its own
            await trio.sleep(10.0)  # both open periods over: one instance claims the probes
            states = sorted([breakers(one)["openai"], breakers(two)["openai"]])
            assert states == ["half_open", "open"]
            # Each says why it opened: its trip, the fleet's, the other's probe claim (at info).
            opened = [opened_reasons(seen)["openai"] for seen in (seen_one, seen_two)]
        assert sorted(reasons[0] for reasons in opened) == ["consecutive_failures", "fleet_open"]
        waits = [reason for reasons in opened for reason in reasons[1:]]
        assert waits == ["breaker_awaiting_fleet_probe"]


def opened_reasons(channel: trio.MemoryReceiveChannel[Event]) -> dict[str, list[str]]:
    """The events received so far that opened a breaker, by provider: `breaker_opened`'s
    reason, or the name of the event that is none (a wait for another instance's probe)."""
    reasons: dict[str, list[str]] = {}
    for event in drain(channel):
        if event.fields.get("new") == "open":
            reason = event.fields["reason"] if event.event == "breaker_opened" else event.event
            reasons.setdefault(event.fields["provider"], []).append(reason)
    return reasons


async def test_retry_after_and_auth_failures_are_shared(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    async with open_runtime(config("a")) as one, open_runtime(config("b")) as two:
        one.inject_fault("openai", Fault(FaultKind.RATE_LIMIT, retry_after_s=20.0))
        await one.complete(REQUEST)
        # What an instance publishes on an auth failure (`ProviderActor._hold_out`).
        await shared_store.hold("hold:anthropic:unavailable", "c|invalid x-api-key", 60.0)
        with two.events.subscribe() as seen:
            await trio.sleep(1.0)
            assert opened_reasons(seen) == {"openai": ["retry_after"], "anthropic": ["unavailable"]}
        openai, anthropic = snapshot(two, "openai"), snapshot(two, "anthropic")
        assert openai.breaker.state.value == "open" and openai.breaker.trips == 0
        assert openai.retry_after_until is not None
        assert 18.0 < openai.retry_after_until - trio.current_time() <= 19.0
        assert not anthropic.available and anthropic.reason == "invalid x-api-key"
        reply = await two.complete(REQUEST)
        assert [a.provider for a in reply.attempts] == ["gemini"]


def snapshot(rt: Runtime, provider: str) -> ProviderSnapshot:
    return rt._providers_context.last_snapshots[provider]


async def test_the_fleets_run_of_failures_trips_the_instance_that_completes_it(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    """Two failures in a row across the fleet, one on each instance (neither enough alone),
    trip the instance whose failure made the run long enough; the other holds the provider as
    after any trip of the fleet's."""
    async with open_runtime(config("a")) as one, open_runtime(config("b")) as two:
        for rt in (one, two):
            rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        await one.complete(REQUEST)
        await trio.sleep(0.01)  # the failure is counted in the background
        assert breakers(one)["openai"] == "closed"
        await two.complete(REQUEST)
        await trio.sleep(0.01)
        assert breakers(two)["openai"] == "open"
        assert snapshot(two, "openai").breaker.consecutive_failures == 1  # not its own run
        assert breakers(one)["openai"] == "closed"
        await trio.sleep(0.75)  # sync_interval_s + command_timeout_s
        assert breakers(one)["openai"] == "open" and snapshot(one, "openai").breaker.trips == 0


async def test_an_instance_that_knows_of_a_run_reads_the_fleets_trip_before_calling(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    """An instance whose failure began the fleet's run reads the holds before its next call:
    the trip another instance's failure led to stops that call at once, not at the next sync
    (its call would have been one more failure)."""
    async with open_runtime(config("a")) as one, open_runtime(config("b")) as two:
        for rt in (one, two):
            rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        await one.complete(REQUEST)
        await trio.sleep(0.01)  # the failure is counted in the background
        await two.complete(REQUEST)
        await trio.sleep(0.01)  # two trips and publishes its hold; no sync since
        assert breakers(two)["openai"] == "open" and breakers(one)["openai"] == "closed"
        reply = await one.complete(REQUEST)
        (refused,) = [a for a in reply.attempts if a.provider == "openai"]
        assert (refused.outcome, refused.detail) == ("unavailable", "openai breaker is open")
        assert breakers(one)["openai"] == "open"
        assert snapshot(one, "openai").breaker.trips == 0  # the fleet's trip, not its own


async def outage_held_by_the_fleet(one: Runtime, two: Runtime) -> tuple[Runtime, Runtime]:
    """OpenAI down, and `one`'s trip holds it on `two`; both open periods over: the instance
    that claimed the half-open probes, and the one that waits for them."""
    for rt in (one, two):
        rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
    for _ in range(2):
        await one.complete(REQUEST)
    await trio.sleep(0.75)  # sync_interval_s + command_timeout_s
    assert breakers(two)["openai"] == "open"
    await trio.sleep(10.0)
    if breakers(one)["openai"] == "half_open":
        return one, two
    return two, one


async def test_the_probes_success_closes_the_fleets_breaker_at_the_next_sync(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    """The instance that held the half-open claim sees its probe succeed: it ends the claim,
    and the instance waiting for it closes its breaker within one sync, not when the claim's
    lease (10 s, the open period) would have run out."""
    async with (
        open_runtime(config("a", levels=OPENAI_FIRST)) as one,
        open_runtime(config("b", levels=OPENAI_FIRST)) as two,
    ):
        probing, waiting = await outage_held_by_the_fleet(one, two)
        assert breakers(waiting)["openai"] == "open"
        # Either instance may have won the claim: the one that tripped first, or the other.
        trips = snapshot(waiting, "openai").breaker.trips
        for rt in (one, two):
            rt.heal("openai")
        reply = await probing.complete(REQUEST)
        assert [a.provider for a in reply.attempts] == ["openai"]  # the probe, answered
        await trio.sleep(0.01)  # the claim is released in the background
        assert breakers(probing)["openai"] == "closed"
        assert await shared_store.holds(["probe:openai"]) == [None]
        await trio.sleep(0.75)
        assert breakers(waiting)["openai"] == "closed"
        assert snapshot(waiting, "openai").breaker.trips == trips  # closed by the news alone
        reply = await waiting.complete(REQUEST)
        assert [a.provider for a in reply.attempts] == ["openai"]


async def test_a_failed_probe_keeps_the_claim_and_the_fleet_open(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    """A probe that fails trips the probing instance again: its claim stays until its lease
    ends, nobody closes, and the instance waiting for it stays open."""
    async with (
        open_runtime(config("a", levels=OPENAI_FIRST)) as one,
        open_runtime(config("b", levels=OPENAI_FIRST)) as two,
    ):
        probing, waiting = await outage_held_by_the_fleet(one, two)
        await probing.complete(REQUEST)
        await trio.sleep(0.75)
        assert breakers(probing)["openai"] == "open"
        assert breakers(waiting)["openai"] == "open"
        [claim] = await shared_store.holds(["probe:openai"])
        assert claim is not None and claim[0] == probing.config.state.instance


def test_a_fleets_close_is_older_news_than_a_trip_learnt_since() -> None:
    """A breaker closes on the fleet's news only when it learnt of no trip after the probes
    succeeded, and never out of a Retry-After hold alone (that ends closed by itself)."""
    now = [100.0]
    breaker = CircuitBreaker(
        BreakerConfig(consecutive_failures=1, open_s=10.0), clock=lambda: now[0]
    )
    breaker.on_failure(0.1)  # a trip of its own, at 100
    breaker.close_for_fleet(99.0)
    assert breaker.snapshot().state is BreakerState.OPEN
    now[0] = 101.0
    breaker.hold_open_as_tripped(120.0)  # the fleet's hold, read at 101
    breaker.close_for_fleet(100.5)
    assert breaker.snapshot().state is BreakerState.OPEN
    breaker.close_for_fleet(101.0)
    assert breaker.snapshot().state is BreakerState.CLOSED and breaker.consecutive_failures == 0
    breaker.hold_open_until(130.0)  # a Retry-After
    breaker.close_for_fleet(102.0)
    assert breaker.snapshot().state is BreakerState.OPEN


class SlowClaims(MemoryStore):
    """A shared store that answers a claim 0.2 s late, as a slow Redis would."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = trio.Event()

    async def claim(self, key: str, owner: str, seconds: float) -> bool:
        self.asked.set()
        await trio.sleep(0.2)
        return await super().claim(key, owner, seconds)


async def test_a_claim_answered_after_the_breaker_left_half_open_holds_nothing_open(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer to a claim (another instance holds it) that comes after the breaker closed
    meanwhile (an operator's reset, here) leaves it closed: the wait for the other's probes
    belonged to the half-open period that is over."""
    store = SlowClaims()
    share(monkeypatch, store)
    async with open_runtime(config("a", levels=OPENAI_FIRST)) as one:
        one.inject_fault("openai", Fault(FaultKind.OUTAGE))
        for _ in range(2):
            await one.complete(REQUEST)
        await store.put("probe:openai", "b", 60.0)  # another instance probes
        with trio.fail_after(15.0):
            await store.asked.wait()  # the open period's end: half-open, claiming
        assert breakers(one)["openai"] == "half_open"
        one.heal("openai")
        one.set_breaker("openai", "reset")
        await trio.sleep(0.3)  # the claim is answered (b holds it)
        live = one.provider_snapshot("openai")
        assert live is not None and live.breaker.state is BreakerState.CLOSED
        reply = await one.complete(REQUEST)
        assert [a.provider for a in reply.attempts] == ["openai"]


async def test_an_operators_override_through_one_instance_holds_on_every_instance(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    """A breaker forced open through one instance is forced open on the others at their next
    sync (an operator behind a load balancer reaches one instance, and means the provider);
    handed back to traffic through another, it is back everywhere."""
    async with (
        open_runtime(config("a", levels=OPENAI_FIRST)) as one,
        open_runtime(config("b", levels=OPENAI_FIRST)) as two,
    ):
        with two.events.subscribe() as seen:
            one.set_breaker("openai", "open")
            await trio.sleep(0.75)  # sync_interval_s + command_timeout_s
            assert breakers(two)["openai"] == "forced_open"
            reply = await two.complete(REQUEST)
            assert "openai" not in [a.provider for a in reply.attempts]
            heard = [e.fields for e in drain(seen) if e.event == "breaker_override_from_fleet"]
        assert heard == [{"provider": "openai", "mode": "open", "instance": "a"}]
        two.set_breaker("openai", "auto")
        await trio.sleep(0.75)
        assert breakers(one)["openai"] == breakers(two)["openai"] == "closed"
        reply = await one.complete(REQUEST)
        assert [a.provider for a in reply.attempts] == ["openai"]


@pytest.mark.parametrize("last", ["close", "open"])
async def test_overrides_set_one_after_the_other_reach_the_fleet_in_that_order(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore, last: BreakerMode
) -> None:
    """The last override an operator set is the fleet's, on the instance it was set through
    too (which does not take back an older one it reads before its own has landed)."""
    first: BreakerMode = "open" if last == "close" else "close"
    async with (
        open_runtime(config("a", levels=OPENAI_FIRST)) as one,
        open_runtime(config("b", levels=OPENAI_FIRST)) as two,
    ):
        two.set_breaker("openai", "disable")
        await trio.sleep(0.75)
        one.set_breaker("openai", first)
        one.set_breaker("openai", last)
        await trio.sleep(0.75)
        expected = {"open": "forced_open", "close": "forced_closed"}[last]
        assert breakers(one)["openai"] == breakers(two)["openai"] == expected


async def test_an_override_is_applied_once_not_at_every_sync(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    """A reset read again at each sync would undo every trip after it: each instance applies
    an override once."""
    async with (
        open_runtime(config("a", levels=OPENAI_FIRST)) as one,
        open_runtime(config("b", levels=OPENAI_FIRST)) as two,
    ):
        two.set_breaker("openai", "reset")
        await trio.sleep(0.75)
        one.inject_fault("openai", Fault(FaultKind.OUTAGE))
        for _ in range(2):
            await one.complete(REQUEST)
        await trio.sleep(3.0)  # six syncs
        assert breakers(one)["openai"] == breakers(two)["openai"] == "open"
        two.set_breaker("openai", "reset")  # the same mode again is news again
        await trio.sleep(0.75)
        assert breakers(one)["openai"] == breakers(two)["openai"] == "closed"


async def test_a_standing_override_reaches_an_instance_that_starts_later(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    """An instance that starts after the override, a new one or the one it was set through
    restarted, finds it at its first syncs; one that ends an override changes nothing there."""
    async with open_runtime(config("a", levels=OPENAI_FIRST)) as one:
        one.set_breaker("openai", "disable")
        one.set_breaker("anthropic", "reset")
        await trio.sleep(0.1)
    for instance in ("c", "a"):
        async with open_runtime(config(instance, levels=OPENAI_FIRST)) as later:
            await trio.sleep(0.75)
            assert breakers(later)["openai"] == "disabled"
            assert breakers(later)["anthropic"] == "closed"


class Reachable:
    """The shared store as one instance reaches it: every call fails while `down`."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailable("connection refused")
            return await method(*args, **kwargs)

        return call


async def test_an_override_set_while_the_store_is_away_stays_on_its_instance(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut off from the fleet, an instance still obeys its operator, and tells nobody: the
    others would not know when it came back whether the override still holds."""
    store = MemoryStore()
    reachable = Reachable(store)
    share(monkeypatch, store, {"a": reachable})
    async with (
        open_runtime(config("a", levels=OPENAI_FIRST)) as one,
        open_runtime(config("b", levels=OPENAI_FIRST)) as two,
    ):
        reachable.down = True
        await trio.sleep(1.5)  # two syncs fail: degraded
        assert one.fleet is not None and not one.fleet.up
        one.set_breaker("openai", "open")
        await trio.sleep(1.0)
        reachable.down = False
        await trio.sleep(1.0)  # restored
        assert one.fleet.up
        assert (breakers(one)["openai"], breakers(two)["openai"]) == ("forced_open", "closed")


def probing_config(instance: str) -> Config:
    """OpenAI first, watched by a models probe every second while its breaker is open."""
    breaker = {"consecutive_failures": 2, "open_s": 10.0, "half_open_probes": 1}
    recovery = {"probe": "models", "interval_s": 1.0, "timeout_s": 3.0}
    return make_config(
        providers={"openai": {"breaker": breaker, "recovery": recovery, "latency_jitter": 0}},
        state={"backend": "redis", "url": "redis://unused", "instance": instance},
        levels=OPENAI_FIRST,
    )


def recovery_probes(rt: Runtime) -> RecoveryProbes:
    actor = rt.registry.cell("openai").actor
    assert isinstance(actor, ProviderActor) and actor.recovery is not None
    return actor.recovery


async def probe_times(fleet: list[Runtime], seconds: float) -> list[float]:
    """When the fleet's instances sent their recovery probes in the next `seconds`."""
    sent: list[float] = []

    async def watch(rt: Runtime) -> None:
        with rt.events.subscribe() as events:
            async for event in events:
                if event.event == "recovery_probe":
                    sent.append(event.at)

    async with trio.open_nursery() as nursery:
        for rt in fleet:
            nursery.start_soon(watch, rt)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return sorted(sent)


@contextlib.asynccontextmanager
async def three_instances() -> AsyncIterator[list[Runtime]]:
    async with (
        open_runtime(probing_config("a")) as one,
        open_runtime(probing_config("b")) as two,
        open_runtime(probing_config("c")) as three,
    ):
        yield [one, two, three]


async def openai_down_and_held(fleet: list[Runtime]) -> None:
    """OpenAI down on every instance; the first one's trip holds it on the others."""
    for rt in fleet:
        rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
    for _ in range(2):
        await fleet[0].complete(REQUEST)
    await trio.sleep(0.75)  # sync_interval_s + command_timeout_s
    assert [breakers(rt)["openai"] for rt in fleet] == ["open"] * 3


async def test_a_fleet_sends_one_recovery_probe_per_interval(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    """Three instances hold a provider that is down open: the fleet probes it once a second
    (whichever instance takes the turn), not once a second per instance; the probes' failures
    keep the prober open without a trip."""
    async with three_instances() as fleet:
        await openai_down_and_held(fleet)
        sent = await probe_times(fleet, 8.0)  # within the open period (10 s)
        assert 7 <= len(sent) <= 9
        assert min(b - a for a, b in itertools.pairwise(sent)) >= 0.9
        assert sum(recovery_probes(rt).probes for rt in fleet) == len(sent)
        assert [breakers(rt)["openai"] for rt in fleet] == ["open"] * 3
        assert sum(snapshot(rt, "openai").breaker.trips for rt in fleet) == 1


async def test_a_probe_that_hangs_keeps_the_fleets_turn_until_its_timeout(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    """A provider that accepts calls and never answers: each probe hangs until its timeout
    (3 s), and no other instance sends one beside it; the fleet's probes go out one at a time,
    as one instance's would."""
    async with three_instances() as fleet:
        await openai_down_and_held(fleet)
        for rt in fleet:
            rt.heal("openai")
            rt.inject_fault("openai", Fault(FaultKind.HANG))
        sent = await probe_times(fleet, 9.0)  # the events come as each probe ends
        assert 2 <= len(sent) <= 3
        assert min(b - a for a, b in itertools.pairwise(sent)) >= 3.0


async def first_half_open(fleet: list[Runtime]) -> tuple[Runtime, str]:
    """The first instance whose OpenAI breaker turns half-open, and why."""
    found: list[tuple[Runtime, str]] = []

    async def watch(rt: Runtime, cancel_scope: trio.CancelScope) -> None:
        with rt.events.subscribe() as events:
            async for event in events:
                if event.event == "breaker_half_open" and event.fields["provider"] == "openai":
                    found.append((rt, event.fields["reason"]))
                    cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for rt in fleet:
            nursery.start_soon(watch, rt, nursery.cancel_scope)
    return found[0]


async def test_a_probe_that_finds_the_provider_back_closes_the_whole_fleet(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    """The instance whose probe finds the provider answering again turns half-open, a real
    call confirms, and the others, which sent no probe of their own, close at their next
    sync: long before the open period."""
    async with three_instances() as fleet:
        await openai_down_and_held(fleet)
        await trio.sleep(2.0)  # two probes fail
        for rt in fleet:
            rt.heal("openai")
        with trio.fail_after(1.5):  # the next probe (within an interval), and its answer
            probing, reason = await first_half_open(fleet)
        assert reason == "recovery_probe"
        assert sorted(breakers(rt)["openai"] for rt in fleet) == ["half_open", "open", "open"]
        reply = await probing.complete(REQUEST)
        assert [a.provider for a in reply.attempts] == ["openai"]  # the half-open call
        assert breakers(probing)["openai"] == "closed"
        await trio.sleep(0.75)  # sync_interval_s + command_timeout_s
        assert [breakers(rt)["openai"] for rt in fleet] == ["closed"] * 3
        assert [recovery_probes(rt).probes > 0 for rt in fleet] == [rt is probing for rt in fleet]
        for rt in fleet:
            reply = await rt.complete(REQUEST)
            assert [a.provider for a in reply.attempts] == ["openai"]


def calls_reaching(rt: Runtime, provider: str) -> int:
    actor = rt.registry.cell(provider).actor
    assert isinstance(actor, ProviderActor) and isinstance(actor.adapter, SimulatedAdapter)
    return actor.adapter.backend.calls


async def test_the_fleet_stays_open_while_the_probes_fail(
    autojump_clock: trio.testing.MockClock, shared_store: MemoryStore
) -> None:
    """A failed probe keeps every instance open until the next one, as it keeps the prober's
    breaker: past the open period (10 s), with traffic on every instance, no half-open call
    reaches the provider that is still down, and nobody trips again."""
    async with three_instances() as fleet:
        await openai_down_and_held(fleet)
        calls = sum(calls_reaching(rt, "openai") for rt in fleet)
        for _ in range(50):
            for rt in fleet:
                await rt.complete(REQUEST)
            await trio.sleep(0.5)
        assert sum(calls_reaching(rt, "openai") for rt in fleet) == calls
        assert [breakers(rt)["openai"] for rt in fleet] == ["open"] * 3
        assert sum(snapshot(rt, "openai").breaker.trips for rt in fleet) == 1
