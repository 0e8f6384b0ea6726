"""Recovery probes across three real `uptax serve` processes (real time, wide margins): with
`[providers.recovery]` on, a provider that is down is asked for its models listing once an
interval by the whole fleet with `[state] backend = "redis"`, once an interval by each
instance with `memory`; and no request pays for a half-open probe in either, since a failed
recovery probe keeps the breaker open until the next one. Each fleet has a fake provider server
of its own, so neither counts the other's probes. Prints what it measured (`-s`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import trio
from fleet_support import Fleet, ThreadedFakeServer, fleet_config, shared_state, traffic
from redis_support import RedisServer, free_port

#: A models listing every second while the breaker is open; the first a second after it opens.
INTERVAL_S = 1.0
#: A recovery turn lasts 0.9 of the interval from its probe's sending (`actors.state.fleet`).
TURN_S = 0.9 * INTERVAL_S


def _config(fake: ThreadedFakeServer, **sections: Any) -> dict[str, Any]:
    """`fleet_config` with models probes on and an open period longer than a probe's interval
    (the probes, not the open period's end, decide when the provider is asked again)."""
    config = fleet_config(fake.server, **sections)
    for provider in config["providers"]:
        provider["breaker"] = {"consecutive_failures": 2, "open_s": 2.0, "half_open_probes": 1}
        provider["recovery"] = {"probe": "models", "interval_s": INTERVAL_S, "timeout_s": 2.0}
    return config


@attrs.frozen
class Outage:
    """What the primary received during an outage of ~6 s: completions (requests that paid a
    failed call) and models listings (recovery probes), and how close two listings came."""

    completions: int
    listings: int
    closest_listings_s: float

    def __str__(self) -> str:
        closest = f"{self.closest_listings_s:.3f} s"
        return f"{self.completions} completions, {self.listings} probes ({closest} apart at least)"


@pytest.fixture(scope="module")
def outages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outage]]:
    """The same outage on a memory fleet and on a Redis fleet, each on its own fake server."""
    redis = RedisServer(free_port())
    redis.start()
    fakes = {backend: ThreadedFakeServer() for backend in ("memory", "redis")}
    state = shared_state(redis.url, f"recovery:{uuid.uuid4().hex[:8]}:")
    fleets = {
        "memory": Fleet(_config(fakes["memory"]), tmp_path_factory.mktemp("m")),
        "redis": Fleet(_config(fakes["redis"], state=state), tmp_path_factory.mktemp("r")),
    }
    try:
        for fleet in fleets.values():
            fleet.ready()
        yield {name: trio.run(_outage, fakes[name], fleet) for name, fleet in fleets.items()}
    finally:
        for fleet in fleets.values():
            fleet.stop()
        for fake in fakes.values():
            fake.close()
        redis.stop()


async def _outage(fake: ThreadedFakeServer, fleet: Fleet) -> Outage:
    warm = await traffic(fleet, 6, 0.02)  # every instance has answered from the primary
    assert [a.status for a in warm] == [200] * 6, warm
    fake.inject("openai", kind="outage")
    before = fake.calls("openai")
    try:
        answers = await traffic(fleet, 150, 0.04)
    finally:
        fake.heal("openai")
    assert [a.status for a in answers] == [200] * 150, answers
    received = fake.server.requests("openai")[before:]
    listings = [r.at for r in received if r.method == "GET" and r.path == "/v1/models"]
    closest = min((b - a for a, b in itertools.pairwise(listings)), default=float("inf"))
    return Outage(len(received) - len(listings), len(listings), closest)


def test_a_fleet_probes_a_provider_that_is_down_once_an_interval(
    outages: dict[str, Outage],
) -> None:
    memory, redis = outages["memory"], outages["redis"]
    print(f"\nfleet recovery probes: memory {memory}; redis {redis}")
    # Alone, each instance sends its own listing every interval: three about 40 ms apart (the
    # trips were). The fleet sends one per turn, and a turn lasts 0.9 of the interval from its
    # sending (less a busy machine's delay between sending and the server's reading).
    assert memory.closest_listings_s < TURN_S / 2, memory
    assert redis.closest_listings_s >= TURN_S / 2, redis
    assert redis.listings * 2 <= memory.listings, (memory, redis)


def test_no_request_pays_for_a_half_open_probe_while_the_recovery_probes_fail(
    outages: dict[str, Outage],
) -> None:
    memory, redis = outages["memory"], outages["redis"]
    # The completions are the runs of failures that tripped the breakers and nothing after: a
    # failed listing keeps a breaker open until the next one. Alone: a run of two on each
    # instance. The fleet: one run of two, and at most one call from an instance whose sync
    # had not brought the run yet.
    assert memory.completions >= 6, memory
    assert redis.completions <= 3, (memory, redis)
