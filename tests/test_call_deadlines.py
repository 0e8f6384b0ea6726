"""A call's deadline: a timeout is booked against the provider and reported to the cascade the
same way whether the provider's own deadline or an enclosing scope with the same deadline (the
level's) ends the call, in every strategy, and for streams."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from support import make_config

import runtime
from actors.errors import FailureKind, ProviderError
from actors.faults import Fault, FaultKind
from actors.messages import Attempt, Completion, Request
from actors.provider import ProviderActor
from runtime.embed import Runtime, open_runtime
from runtime.kernel.events import Event

REQUEST = runtime.Request(prompt="Summarise the quarterly tax report", deadline_s=100)
TIMEOUT_S = 2.0


def _actor(rt: Runtime, name: str) -> ProviderActor:
    actor = rt.registry.cell(name).actor
    assert isinstance(actor, ProviderActor)
    return actor


def _config(strategy: str, **level: Any) -> Any:
    """Two primaries whose breakers trip on one failure, then gemini answering."""
    breaker = {"consecutive_failures": 1, "minimum_calls": 100}
    return make_config(
        providers={"openai": {"breaker": breaker}, "anthropic": {"breaker": breaker}},
        levels=[
            {
                "name": "primary",
                "providers": ["openai", "anthropic"],
                "timeout_s": TIMEOUT_S,
                "strategy": strategy,
                "hedge_after_s": 0.5,
                "brownout": "off",
                **level,
            },
            {"name": "secondary", "providers": ["gemini"], "timeout_s": 45},
        ],
    )


def _outcomes(attempts: tuple[Attempt, ...]) -> list[tuple[str, str, float, str]]:
    return [(a.provider, a.outcome, round(a.latency_ms, 3), a.detail) for a in attempts]


def _booked(rt: Runtime, name: str) -> tuple[str, int, int, float, float, str]:
    """What the provider booked: health status, consecutive failures, breaker calls and failure
    rate, latency (a timeout's joins the samples), breaker state."""
    status = {p.name: p for p in rt.status().providers}[name]
    snapshot = _actor(rt, name).snapshot()
    return (
        snapshot.status.value,
        snapshot.consecutive_failures,
        snapshot.breaker.calls_in_window,
        snapshot.breaker.failure_rate,
        round(snapshot.latency_ms, 3),
        status.breaker,
    )


def _named(events: list[Event], *names: str) -> list[tuple[str, str, str]]:
    return [
        (e.event, e.fields["provider"], e.fields.get("reason", e.fields.get("new", "")))
        for e in events
        if e.event in names
    ]


async def _hung_request(rt: Runtime) -> tuple[runtime.Reply, list[Event]]:
    """A request while both primaries hang, and the events it caused."""
    rt.inject_fault("openai", Fault(FaultKind.HANG))
    rt.inject_fault("anthropic", Fault(FaultKind.HANG))
    events: list[Event] = []
    with rt.events.subscribe() as channel:
        reply = await rt.complete(REQUEST)
        while True:
            try:
                events.append(channel.receive_nowait())
            except trio.WouldBlock:
                break
    assert reply.provider == "gemini"
    return reply, events


#: A hung primary that timed out: one slow failure booked, which trips its breaker.
HUNG_BOOKED = ("healthy", 1, 1, 1.0, TIMEOUT_S * 1000.0, "open")


def _trip(name: str) -> tuple[str, str, str]:
    return ("breaker_opened", name, "consecutive_failures")


async def test_sequential_books_a_level_timeout_against_the_hung_candidate(
    autojump_clock: Any,
) -> None:
    async with open_runtime(_config("sequential")) as rt:
        reply, events = await _hung_request(rt)
        # The level's whole budget went to the first candidate; the second was never asked.
        assert _outcomes(reply.attempts)[0] == ("openai", "timeout", 2000.0, "")
        assert [a.provider for a in reply.attempts] == ["openai", "gemini"]
        assert _booked(rt, "openai") == HUNG_BOOKED
        assert _booked(rt, "anthropic")[1:3] == (0, 0)
        assert _named(events, "breaker_opened") == [_trip("openai")]


@pytest.mark.parametrize("strategy", ["race", "hedge"])
async def test_side_by_side_calls_all_book_the_level_timeout(
    autojump_clock: Any, strategy: str
) -> None:
    async with open_runtime(_config(strategy)) as rt:
        reply, events = await _hung_request(rt)
        late = 2000.0 - (500.0 if strategy == "hedge" else 0.0)
        assert sorted(_outcomes(reply.attempts)[:2]) == [
            ("anthropic", "timeout", late, ""),
            ("openai", "timeout", 2000.0, ""),
        ]
        assert _booked(rt, "openai") == HUNG_BOOKED
        assert _booked(rt, "anthropic") == (*HUNG_BOOKED[:4], late, "open")
        assert sorted(_named(events, "breaker_opened")) == [_trip("anthropic"), _trip("openai")]


async def test_an_attempt_timeout_is_the_providers_own(autojump_clock: Any) -> None:
    """An attempt deadline before the level's: the provider's own deadline ends the call, and
    its timeout (with its message) moves the level on to the next candidate."""
    async with open_runtime(_config("sequential", attempt_timeout_s=0.5)) as rt:
        rt.inject_fault("openai", Fault(FaultKind.HANG))
        reply = await rt.complete(REQUEST)
        assert reply.provider == "anthropic"
        assert _outcomes(reply.attempts)[0] == (
            "openai",
            "timeout",
            500.0,
            "openai did not answer within its deadline",
        )
        assert _booked(rt, "openai") == ("healthy", 1, 1, 1.0, 500.0, "open")


async def test_a_stream_books_its_timeout(autojump_clock: Any) -> None:
    """Streams pass their deadline down rather than running in the level's scope."""
    async with open_runtime(_config("sequential")) as rt:
        rt.inject_fault("openai", Fault(FaultKind.HANG))
        async with rt.stream(REQUEST) as chunks:
            async for _ in chunks:
                pass
        assert chunks.reply is not None
        assert _outcomes(chunks.reply.attempts)[0] == (
            "openai",
            "timeout",
            2000.0,
            "openai first chunk timed out",
        )
        assert _booked(rt, "openai") == HUNG_BOOKED


# -- the provider's deadline, called directly ---------------------------------------------------


async def _hang(request: Request, model: str) -> Completion:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


@pytest.fixture
async def hung() -> Any:
    """The openai actor of a running runtime, its adapter hanging."""
    async with open_runtime(_config("sequential")) as rt:
        actor = _actor(rt, "openai")
        actor.adapter.complete = _hang  # type: ignore[method-assign,union-attr]
        yield actor


def _books(actor: ProviderActor) -> tuple[int, int, float]:
    snapshot = actor.snapshot()
    return (snapshot.consecutive_failures, snapshot.breaker.calls_in_window, snapshot.latency_ms)


async def test_a_call_outside_any_scope_times_out_at_its_deadline(
    autojump_clock: Any, hung: ProviderActor
) -> None:
    start = trio.current_time()
    with pytest.raises(ProviderError) as caught:
        await hung.complete(REQUEST, "gpt-4o", deadline=start + 1.0)
    assert caught.value.kind is FailureKind.TIMEOUT
    assert trio.current_time() - start == 1.0
    assert _books(hung) == (1, 1, 1000.0)
    assert hung.bulkhead.borrowed_tokens == 0


@pytest.mark.parametrize("outer_s", [5.0, 1.0 + 1e-9])
async def test_a_later_enclosing_deadline_leaves_the_call_its_own(
    autojump_clock: Any, hung: ProviderActor, outer_s: float
) -> None:
    start = trio.current_time()
    with trio.move_on_at(start + outer_s) as outer, pytest.raises(ProviderError) as caught:
        await hung.complete(REQUEST, "gpt-4o", deadline=start + 1.0)
    assert caught.value.kind is FailureKind.TIMEOUT and not outer.cancelled_caught
    assert trio.current_time() - start == 1.0
    assert _books(hung) == (1, 1, 1000.0)


async def test_a_shield_hides_an_earlier_enclosing_deadline(
    autojump_clock: Any, hung: ProviderActor
) -> None:
    start = trio.current_time()
    shield = trio.CancelScope(shield=True)
    with trio.move_on_at(start + 0.5), shield, pytest.raises(ProviderError) as caught:
        await hung.complete(REQUEST, "gpt-4o", deadline=start + 1.0)
    assert caught.value.kind is FailureKind.TIMEOUT
    assert trio.current_time() - start == 1.0
    assert _books(hung) == (1, 1, 1000.0)


@pytest.mark.parametrize(
    ("outer_s", "books"),
    [
        # The same deadline: the enclosing scope catches it, and it is still a timeout.
        (1.0, (1, 1, 1000.0)),
        # An earlier one: a cancellation, not a timeout; nothing booked.
        (0.5, (0, 0, 0.0)),
    ],
)
async def test_an_enclosing_scope_ends_the_call_at_its_deadline(
    autojump_clock: Any, hung: ProviderActor, outer_s: float, books: tuple[int, int, float]
) -> None:
    start = trio.current_time()
    with trio.move_on_at(start + outer_s) as outer:
        await hung.complete(REQUEST, "gpt-4o", deadline=start + 1.0)
    assert outer.cancelled_caught
    assert trio.current_time() - start == outer_s
    assert _books(hung) == books
    assert hung.bulkhead.borrowed_tokens == 0
