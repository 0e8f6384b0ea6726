"""The shared state store: `[state]`, the memory and Redis backends, `FleetState` over them
(rate limits, spend, holds, probes, cache, heartbeats) and how it carries on without Redis.

The Redis tests run against a `redis-server` of this module's own, in real time with generous
margins; the rest in virtual time."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence

import attrs
import pytest
import structlog
import trio
import trio.testing
from redis_support import RedisServer, free_port

from actors.config import StateConfig, parse_config
from actors.errors import ConfigError
from actors.state import (
    FleetState,
    Limited,
    MemoryStore,
    PeriodSpend,
    StateStore,
    StoreUnavailable,
    open_fleet_state,
)
from actors.state.fleet import HoldKind, periods
from actors.state.redis import open_redis_store
from actors.state.store import BucketMode
from runtime.gateway.ratelimit import TokenBucket

MINIMAL = {
    "providers": [{"name": "sim", "kind": "simulated", "models": ["m"]}],
    "levels": [{"name": "primary", "providers": ["sim"]}],
}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server this test alone may stop and restart."""
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()


# -- [state] -----------------------------------------------------------------------------------


def test_state_is_memory_unless_configured() -> None:
    state = parse_config(MINIMAL).state
    assert state.backend == "memory" and state.url is None
    assert state.instance.rsplit("-", 1)[1].isdigit()  # hostname-pid


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"backend": "etcd"}, "state.backend: 'etcd' is not one of: memory, redis"),
        ({"backend": "redis"}, "url=missing"),
        ({"backend": "redis", "url": "http://x"}, "url='http://x' is not a redis://"),
        ({"command_timeout_s": 0}, "command_timeout_s=0"),
        ({"instance": " "}, "instance=' ' must not be empty"),
        ({"ttl": 1}, "state: unknown key(s) ttl"),
    ],
)
def test_state_errors_name_the_field(state: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "state": state})
    assert message in str(caught.value)


# -- the memory backend, virtual time ----------------------------------------------------------


async def test_memory_bucket_is_the_gateways_token_bucket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, rng = MemoryStore(), random.Random(7)
    reference = TokenBucket.full(60.0, trio.current_time())
    for _ in range(200):
        await trio.sleep(rng.choice([0.0, 0.1, 0.5, 2.0]))
        mode: BucketMode = rng.choice(["take", "check", "charge"])
        amount = rng.choice([1.0, 5.0, 30.0])
        now = trio.current_time()
        if mode == "take":
            expected = reference.take(amount, now)
        elif mode == "check":
            expected = reference.wait_for(amount, now)
        else:
            reference.charge(amount, now)
            expected = 0.0
        assert await store.bucket("b", 60.0, amount, mode) == pytest.approx(expected)


async def test_memory_keys_expire_and_holds_never_shorten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    await store.hold("h", "a", 5.0)
    await store.hold("h", "b", 2.0)  # shorter: ignored
    assert await store.holds(["h", "none"]) == [("a", 5.0), None]
    assert await store.claim("p", "one", 1.0)
    assert not await store.claim("p", "two", 1.0)
    await store.beat("i1", "{}", 3.0)
    await store.beat("i2", "{}", 10.0)
    assert await store.reserve(["d", "m"], [1.0, 10.0], 0.6, [60.0, 60.0]) == -1
    assert await store.reserve(["d", "m"], [1.0, 10.0], 0.6, [60.0, 60.0]) == -1
    assert await store.reserve(["d", "m"], [1.0, 10.0], 0.6, [60.0, 60.0]) == 0  # 1.2 >= 1.0
    await trio.sleep(5.0)
    assert await store.holds(["h"]) == [None]
    assert await store.claim("p", "two", 1.0)
    assert [i.id for i in await store.instances()] == ["i2"]
    assert await store.counters(["d", "m"]) == [pytest.approx(1.2), pytest.approx(1.2)]


# -- the degradation state machine, virtual time -----------------------------------------------


class FlakyStore(MemoryStore):
    """A shared store that can be switched off: every call then raises `StoreUnavailable`."""

    down = False

    def __getattribute__(self, name: str) -> object:
        found = super().__getattribute__(name)
        if not name.startswith("_") and callable(found) and object.__getattribute__(self, "down"):

            async def fail(*args: object, **kwargs: object) -> None:
                raise StoreUnavailable("switched off")

            return fail
        return found


@pytest.mark.usefixtures("log_output")  # state_store_slow is an info event
async def test_degraded_instance_takes_its_share_and_reconciles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared = FlakyStore()
    fleet = [
        FleetState(StateConfig(instance=f"i{n}"), shared, wall=lambda: 1.8e9) for n in range(4)
    ]
    for member in fleet:
        await member.sync()
    one = fleet[0]
    await one.sync()
    assert one.fleet_size == 4
    assert await one.reserve("acme", 0.1, 1.0, None) is None
    await one.settle("acme", 0.1, 0.25)
    assert await one.spent("acme") == (0.25, 0.25)
    shared.down = True
    with structlog.testing.capture_logs() as logs:
        # 1/4 of 40 requests a minute, 1/4 of what was left of the $1 day.
        admitted = [await one.admit("acme", 40, None) is None for _ in range(12)]
        reserved = [await one.reserve("acme", 0.0625, 1.0, None) is None for _ in range(5)]
        await one.sync()  # still down: no second warning
    assert admitted.count(True) == 10
    assert reserved == [True] * 3 + [False] * 2  # below 0.25 + 0.75 / 4 = 0.4375
    assert [e["event"] for e in logs] == ["state_store_slow", "state_store_degraded"]
    assert not one.up
    shared.down = False
    with structlog.testing.capture_logs() as logs:
        await one.sync()
    assert [e["event"] for e in logs] == ["state_store_restored"]
    assert await shared.counters(one._spend_keys("acme")[0]) == [0.4375, 0.4375]


class StallingStore(MemoryStore):
    """A shared store whose calls, while `stalled`, end as `RedisStore`'s do past their timeout
    (0.3 s later, `StoreUnavailable`): what every call in flight meets when the trio loop itself
    stalls, or Redis is slow."""

    stalled = False

    async def bucket(self, key: str, per_minute: float, amount: float, mode: BucketMode) -> float:
        if self.stalled:
            await trio.sleep(0.3)
            raise StoreUnavailable("no answer within 0.25 s")
        return await super().bucket(key, per_minute, amount, mode)


@pytest.mark.usefixtures("log_output")  # state_store_slow is an info event
async def test_a_stall_is_no_verdict_two_slow_calls_in_a_row_are(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Calls that miss their timeout together (all sent before the first failure was seen)
    leave the store up; a call sent after a failure that fails too marks it degraded."""
    store = StallingStore()
    fleet = FleetState(StateConfig(instance="a"), store)
    store.stalled = True
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(fleet.admit, "acme", 600, None)
            await trio.sleep(0.1)
            store.stalled = False  # the loop is back before they learn they timed out
    assert fleet.up and [e["event"] for e in logs] == ["state_store_slow"]
    assert await fleet.admit("acme", 600, None) is None  # answered by the store
    store.stalled = True
    with structlog.testing.capture_logs() as logs:
        assert await fleet.admit("acme", 600, None) is None  # from local state
        assert fleet.up
        assert await fleet.admit("acme", 600, None) is None
    assert not fleet.up
    assert [e["event"] for e in logs] == ["state_store_slow", "state_store_degraded"]


class LostAnswers(MemoryStore):
    """A shared store that applies a settle, then, while `losing`, loses its answer (a timeout
    after Redis ran the script)."""

    losing = False

    async def settle(
        self,
        keys: Sequence[str],
        amount: float,
        ttl_s: Sequence[float],
        once: str,
        once_ttl_s: float,
    ) -> list[float]:
        values = await super().settle(keys, amount, ttl_s, once, once_ttl_s)
        if self.losing:
            raise StoreUnavailable("no answer within 0.25 s")
        return values


async def test_a_settle_whose_answer_was_lost_counts_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = LostAnswers()
    fleet = FleetState(StateConfig(instance="a"), store, wall=lambda: 1.8e9)
    keys, _ = fleet._spend_keys("acme")
    assert await fleet.reserve("acme", 0.1, 1.0, None) is None
    store.losing = True
    await fleet.settle("acme", 0.1, 0.25, "req-1")  # landed; this instance cannot know
    store.losing = False
    await fleet.sync()  # sent again, under the same marker
    assert await store.counters(keys) == [pytest.approx(0.25), pytest.approx(0.25)]
    await fleet.settle("acme", 0.1, 0.25, "req-1")  # a settle repeated is applied once
    assert await store.counters(keys) == [pytest.approx(0.25), pytest.approx(0.25)]


async def test_spend_counters_lost_by_the_store_are_seeded_from_the_ledger(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A store that lost its data (a restarted Redis) gets its spend counters back from the
    ledger, only where missing, before any reservation counts from zero; a counter seeded at a
    restoration takes none of this instance's pending local spend (the ledger has it)."""
    shared = FlakyStore()
    ledger = {"acme": 0.75}
    fleet = FleetState(StateConfig(instance="i0"), shared, wall=lambda: 1.8e9)
    day, month, _, _ = periods(1.8e9)

    async def totals() -> dict[str, PeriodSpend]:
        return {name: PeriodSpend(day, month, usd, usd) for name, usd in ledger.items()}

    fleet.spend_source = totals
    await fleet.seed_spend()
    assert await fleet.spent("acme") == (0.75, 0.75)
    await fleet.seed_spend()  # set only if missing: the counters are left as they are
    assert await fleet.reserve("acme", 0.25, 1.0, None) is None
    shared._values.clear()  # the store restarted empty
    ledger["acme"] = 1.0  # the reserved request answered for 0.25, in the ledger
    assert await fleet.reserve("acme", 0.25, 1.0, None) == Limited("day")  # seeded first
    shared._values.clear()
    shared.down = True
    await fleet.settle("acme", 0.0, 0.5)  # counted locally, and in the ledger
    ledger["acme"] = 1.5
    shared.down = False
    await fleet.sync()
    assert fleet.up and await shared.counters(fleet._spend_keys("acme")[0]) == [1.5, 1.5]


# -- Redis -------------------------------------------------------------------------------------


async def test_redis_store_operations(redis_server: RedisServer) -> None:
    async with open_redis_store(redis_server.config("a")) as store:
        assert await store.bucket("b", 60.0, 50.0, "take") == 0.0
        assert await store.bucket("b", 60.0, 20.0, "check") == pytest.approx(10.0, abs=0.1)
        await store.bucket("b", 60.0, 20.0, "charge")
        assert await store.bucket("b", 60.0, 1.0, "check") == pytest.approx(11.0, abs=0.1)
        assert await store.add("c", 0.25, 60.0) == 0.25
        assert await store.reserve(["c", "d"], [0.3, 1e300], 0.1, [60.0, 60.0]) == -1
        assert await store.reserve(["c", "d"], [0.3, 1e300], 0.1, [60.0, 60.0]) == 0
        assert await store.counters(["c", "d", "e"]) == [pytest.approx(0.35), 0.1, 0.0]
        await store.hold("h", "x|why", 5.0)
        await store.hold("h", "y|why", 1.0)
        held, missing = await store.holds(["h", "none"])
        assert held is not None and held[0] == "x|why" and 4.0 < held[1] <= 5.0
        assert missing is None
        assert await store.claim("p", "a", 5.0) and not await store.claim("p", "b", 5.0)
        await store.put("k", "v", 5.0)
        assert await store.get("k") == "v" and await store.get("none") is None
        await store.put("gone", "v", 5.0)
        await store.delete(["gone", "none"])
        assert await store.get("gone") is None and await store.get("k") == "v"
        await store.beat("a", '{"p": 1}', 5.0)
        [instance] = await store.instances()
        assert (instance.id, instance.summary) == ("a", '{"p": 1}')
        await settles_count_once_and_runs_of_failures_end(store)
        await claims_end_only_by_their_owner(store)


async def test_memory_settles_and_runs_of_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await settles_count_once_and_runs_of_failures_end(MemoryStore())


async def test_memory_claims_end_only_by_their_owner(
    autojump_clock: trio.testing.MockClock,
) -> None:
    await claims_end_only_by_their_owner(MemoryStore())


async def claims_end_only_by_their_owner(store: StateStore) -> None:
    """What both backends do: a claim is released, with the keys named, only by its owner; an
    owner whose claim ran out and was taken by another releases nothing."""
    await store.hold("hold", "a|failure_rate", 60.0)
    assert await store.claim("claim", "a", 60.0)
    assert not await store.release("claim", "b", ["hold"])
    assert [found is not None for found in await store.holds(["claim", "hold"])] == [True, True]
    assert await store.release("claim", "a", ["hold"])
    assert await store.holds(["claim", "hold"]) == [None, None]
    assert not await store.release("claim", "a")
    assert await store.claim("claim", "a", 0.05)
    await trio.sleep(0.15)  # a's claim ran out
    assert await store.claim("claim", "b", 60.0)
    assert not await store.release("claim", "a")
    assert not await store.claim("claim", "a", 60.0)  # still b's


async def settles_count_once_and_runs_of_failures_end(store: StateStore) -> None:
    """What both backends do: a settle sent twice under one marker counts once; a run of
    failures is ended only by a success sent no earlier than its latest failure."""
    keys, ttls = ["s:day", "s:month"], [60.0, 60.0]
    assert await store.settle(keys, 0.5, ttls, "settled:r1", 60.0) == [0.5, 0.5]
    assert await store.settle(keys, 0.5, ttls, "settled:r1", 60.0) == [0.5, 0.5]
    assert await store.settle(keys, -0.25, ttls, "settled:r2", 60.0) == [0.25, 0.25]
    assert await store.failure("f", 0.0, 60.0) == 1
    assert await store.failure("f", 0.0, 60.0) == 2
    await store.success("f", 5.0)  # sent before the latest failure: older news
    assert await store.failure("f", 0.0, 60.0) == 3
    await store.success("f", 0.0)
    assert await store.failure("f", 0.0, 60.0) == 1


async def test_rate_limit_holds_fleet_wide_within_5_percent(redis_server: RedisServer) -> None:
    """Two instances, eight clients each, hammering one tenant's 600 requests a minute."""
    config = redis_server.config("a")
    admitted = 0
    async with (
        open_fleet_state(config) as one,
        open_fleet_state(attrs.evolve(config, instance="b")) as two,
    ):

        async def client(fleet: FleetState) -> None:
            nonlocal admitted
            for _ in range(60):
                if await fleet.admit("acme", 600, None) is None:
                    admitted += 1

        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for fleet in [one, two] * 8:
                nursery.start_soon(client, fleet)
        elapsed = time.monotonic() - started
    allowed = 600 + 600 / 60.0 * elapsed  # a full bucket, and what refilled meanwhile
    assert 600 <= admitted <= allowed * 1.05, (admitted, allowed)


async def test_spend_stays_within_one_reservation_of_the_budget(
    redis_server: RedisServer,
) -> None:
    config = redis_server.config("a")
    rng = random.Random(3)
    async with (
        open_fleet_state(config) as one,
        open_fleet_state(attrs.evolve(config, instance="b")) as two,
    ):

        async def client(fleet: FleetState) -> None:
            while await fleet.reserve("acme", 0.1, 2.0, 10.0) is None:
                await trio.sleep(rng.random() * 0.005)  # the call, in flight
                await fleet.settle("acme", 0.1, rng.uniform(0.02, 0.1))

        async with trio.open_nursery() as nursery:
            for fleet in [one, two] * 5:
                nursery.start_soon(client, fleet)
        day, month = await one.spent("acme")
        assert 2.0 <= day <= 2.0 + 0.1 and month == day
        assert await two.reserve("acme", 0.1, 2.0, 10.0) == Limited("day")


async def test_holds_probes_cache_and_heartbeats_cross_instances(
    redis_server: RedisServer,
) -> None:
    config = redis_server.config("a", sync_interval_s=0.2)
    seen: list[tuple[str, HoldKind, float, str]] = []
    arrived = trio.Event()
    async with (
        open_fleet_state(config) as one,
        open_fleet_state(attrs.evolve(config, instance="b")) as two,
    ):
        one.watch("openai", lambda kind, left, why: seen.append(("a", kind, left, why)))

        def heard(kind: HoldKind, left: float, why: str) -> None:
            seen.append(("b", kind, left, why))
            arrived.set()

        two.watch("openai", heard)
        await one.publish_hold("openai", "open", 5.0, "failure_rate")
        with trio.fail_after(1.0):  # the other instance stops calling within one second
            await arrived.wait()
        [(who, kind, left, why)] = seen[:1]
        assert (who, kind, why) == ("b", "open", "failure_rate") and 3.0 < left <= 5.0
        assert await one.claim_probe("openai", 2.0)
        assert not await two.claim_probe("openai", 2.0)
        await one.cache_put("acme", ("hi",), {"text": "hello", "model": "m"}, 60.0)
        assert await two.cache_get("acme", ("hi",)) == {"text": "hello", "model": "m"}
        assert await two.cache_get("other", ("hi",)) is None
        await one.sync()
        await two.sync()
        assert sorted(i.id for i in two.instances) == ["a", "b"] and two.fleet_size == 2
        assert two.describe()["up"] is True


async def test_probes_that_succeed_end_the_claim_and_tell_the_fleet(
    redis_server: RedisServer,
) -> None:
    """The instance whose half-open probes succeeded ends its claim and the fleet's open hold
    (another may claim at once), and the others hear that its breaker closed, and when, at
    their next sync; an instance whose claim ran out releases nothing and tells nobody."""
    config = redis_server.config("a")
    heard: list[tuple[HoldKind, float, str]] = []
    async with (
        open_fleet_state(config) as one,
        open_fleet_state(attrs.evolve(config, instance="b")) as two,
    ):
        two.watch("openai", lambda kind, seconds, why: heard.append((kind, seconds, why)))
        await one.publish_hold("openai", "open", 30.0, "consecutive_failures")
        assert await one.claim_probe("openai", 5.0)
        assert not await two.claim_probe("openai", 5.0)
        assert await one.release_probe("openai", 5.0)
        assert await two.claim_probe("openai", 0.2)
        heard.clear()  # what a background sync read before
        await two.sync()
        assert heard and all(kind == "closed" and 0.0 <= ago < 1.0 for kind, ago, _ in heard)
        await trio.sleep(0.4)  # two's claim ran out
        assert await one.claim_probe("openai", 5.0)
        assert not await two.release_probe("openai", 5.0)
        assert not await two.claim_probe("openai", 5.0)  # still one's


async def test_redis_stopped_paused_and_restarted(own_redis: RedisServer) -> None:
    config = own_redis.config("a", command_timeout_s=0.3)
    async with open_fleet_state(config) as fleet:
        assert await fleet.admit("acme", 600, None) is None and fleet.up
        own_redis.command("CLIENT", "PAUSE", "1000", "ALL")
        started = time.monotonic()
        assert await fleet.admit("acme", 600, None) is None  # answered from local state
        assert fleet.up  # one slow call may be this loop's stall: no verdict yet
        assert await fleet.admit("acme", 600, None) is None  # a second one, sent after it
        assert time.monotonic() - started < 0.9 and not fleet.up
        await trio.sleep(1.5)  # the pause is over
        await fleet.sync()
        assert fleet.up
        # The answers the pause held back are not taken for those of later calls.
        await fleet.cache_put("acme", "k", {"text": "t"}, 60.0)
        assert await fleet.cache_get("acme", "k") == {"text": "t"}
        assert await fleet.spent("acme") == (0.0, 0.0)
        own_redis.stop()
        await fleet.settle("acme", 0.0, 0.5)  # counted locally, sent again when it is back
        assert await fleet.admit("acme", 600, None) is None
        assert not fleet.up
        own_redis.start()
        await fleet.sync()
        assert fleet.up
        assert await fleet.spent("acme") == (pytest.approx(0.5), pytest.approx(0.5))


async def test_a_claim_taken_by_another_is_not_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An instance whose probes succeeded after its claim ran out and another instance claimed
    leaves that claim, and the fleet's holds, alone and publishes nothing; while the store is
    away nothing is released either (each instance finds out for itself)."""
    shared = FlakyStore()
    one = FleetState(StateConfig(instance="a"), shared)
    two = FleetState(StateConfig(instance="b"), shared)
    await one.publish_hold("openai", "open", 60.0, "consecutive_failures")
    assert await one.claim_probe("openai", 5.0)
    await trio.sleep(6.0)
    assert await two.claim_probe("openai", 5.0)
    assert not await one.release_probe("openai", 5.0)
    holds = await shared.holds(["probe:openai", "hold:openai:open", "hold:openai:closed"])
    assert [None if found is None else found[0] for found in holds] == [
        "b",
        "a|consecutive_failures",
        None,
    ]
    shared.down = True
    assert not await two.release_probe("openai", 5.0)
    shared.down = False
    assert (await shared.holds(["probe:openai"]))[0] is not None


async def test_the_recovery_probe_is_one_instances_turn_at_a_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The recovery probe's claim is its own (the half-open probes' is another) and lasts as
    long as the probe may (0.9 of an interval and its timeout): a probe that hangs keeps the
    turn; one that ended keeps it to 0.9 of the interval from its sending, or gives it up at
    once if it took longer; while the store is away every instance probes on its own."""
    shared = FlakyStore()
    one = FleetState(StateConfig(instance="a"), shared)
    two = FleetState(StateConfig(instance="b"), shared)
    assert await one.claim_recovery_probe("openai", 1.0, 3.0)
    assert await two.claim_probe("openai", 5.0)
    await trio.sleep(3.5)  # one's probe is still out, until its timeout (3.9 s)
    assert not await two.claim_recovery_probe("openai", 1.0, 3.0)
    await one.end_recovery_probe("openai", 1.0, 3.5)  # longer than the interval: over now
    assert await two.claim_recovery_probe("openai", 1.0, 3.0)
    await trio.sleep(0.5)
    await two.end_recovery_probe("openai", 1.0, 0.5)  # the turn lasts 0.4 s more
    await trio.sleep(0.3)
    assert not await one.claim_recovery_probe("openai", 1.0, 3.0)
    await trio.sleep(0.2)  # two's next probe is due: the turn is over, anyone's
    assert await one.claim_recovery_probe("openai", 1.0, 3.0)
    shared.down = True
    assert await one.claim_recovery_probe("openai", 1.0, 3.0)
    assert await two.claim_recovery_probe("openai", 1.0, 3.0)


async def test_redis_recovery_probe_claims(redis_server: RedisServer) -> None:
    """The recovery probe's claim on Redis: one instance's while its probe may be out, apart
    from the half-open probes' claim, cut short when the probe ends."""
    config = redis_server.config("a")
    async with (
        open_fleet_state(config) as one,
        open_fleet_state(attrs.evolve(config, instance="b")) as two,
    ):
        assert await one.claim_recovery_probe("openai", 1.0, 5.0)
        assert not await two.claim_recovery_probe("openai", 1.0, 5.0)
        assert await two.claim_probe("openai", 5.0)
        await one.end_recovery_probe("openai", 1.0, 0.3)  # the turn lasts 0.6 s more
        assert not await two.claim_recovery_probe("openai", 1.0, 5.0)
        await trio.sleep(1.0)
        assert await two.claim_recovery_probe("openai", 1.0, 5.0)
        assert not await one.claim_recovery_probe("openai", 1.0, 5.0)
        await two.end_recovery_probe("openai", 1.0, 2.0)  # took longer: over at once
        assert await one.claim_recovery_probe("openai", 1.0, 5.0)


async def test_a_second_stretch_on_local_state_starts_from_the_fleets_totals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The local counters are set from the fleet's totals each time the store goes away, not
    added to what an earlier stretch left in them."""
    shared = FlakyStore()
    fleet = FleetState(StateConfig(instance="i0"), shared, wall=lambda: 1.8e9)
    await fleet.settle("acme", 0.0, 0.25)
    for _ in range(2):
        shared.down = True
        assert await fleet.spent("acme") == (0.25, 0.25)
        assert await fleet.spent("acme") == (0.25, 0.25)
        shared.down = False
        await fleet.sync()
        assert fleet.up
