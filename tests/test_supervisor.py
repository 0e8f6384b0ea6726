"""The actor kernel: mailboxes, ask/tell, supervision strategies, intensity and escalation."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from runtime.kernel.actor import (
    Actor,
    ActorCell,
    ActorCrashed,
    AskTimeout,
    CrashRequest,
    MailboxFull,
)
from runtime.kernel.events import EventBus
from runtime.kernel.registry import Registry, UnknownActor
from runtime.kernel.supervisor import (
    ChildSpec,
    RestartChild,
    RestartType,
    Strategy,
    Supervisor,
    SupervisorEscalation,
    run_actor,
)


class Counter(Actor):
    """Counts 'inc' messages; 'boom' crashes it; 'slow' never answers."""

    kind = "counter"
    log: list[str]

    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__(name)
        self.count = 0
        self.log = log

    async def on_start(self) -> None:
        self.log.append(f"start {self.name}")

    async def on_stop(self) -> None:
        self.log.append(f"stop {self.name}")

    async def handle(self, message: Any) -> Any:
        if message == "inc":
            self.count += 1
            return self.count
        if message == "boom":
            raise RuntimeError("boom")
        if message == "slow":
            await trio.sleep_forever()
        if message == "exit":
            raise _NormalExit
        return None


class _NormalExit(Exception):
    pass


def _counter(name: str, log: list[str]) -> Any:
    return lambda: Counter(name, log)


def make_supervisor(
    names: list[str],
    log: list[str],
    *,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    restart: RestartType = RestartType.PERMANENT,
    max_restarts: int = 5,
    period_s: float = 30.0,
    registry: Registry | None = None,
    events: EventBus | None = None,
    name: str = "root",
) -> tuple[ActorCell, Registry, EventBus]:
    registry = registry or Registry()
    events = events or EventBus()
    specs = [ChildSpec(n, _counter(n, log), restart=restart, kind="counter") for n in names]
    cell = ActorCell(
        name,
        lambda: Supervisor(
            name,
            specs,
            registry=registry,
            events=events,
            strategy=strategy,
            max_restarts=max_restarts,
            period_s=period_s,
        ),
        kind="supervisor",
    )
    registry.add(cell)
    return cell, registry, events


async def wait_restarted(registry: Registry, name: str, restarts: int) -> None:
    """Wait for the supervisor's `actor_restarted` event that brings `name` to `restarts`."""
    cell = registry.cell(name)
    if cell.restarts >= restarts and cell.state == "running":
        return
    supervisor = registry.cell(cell.parent or "")
    assert supervisor.actor is not None
    events: EventBus = supervisor.actor.events  # type: ignore[attr-defined]
    with events.subscribe() as received:
        async for event in received:
            if (
                event.event == "actor_restarted"
                and event.fields["actor"] == name
                and event.fields["restarts"] >= restarts
            ):
                return


async def test_children_start_in_order_and_stop_in_reverse(autojump_clock: Any) -> None:
    log: list[str] = []
    cell, registry, _ = make_supervisor(["a", "b", "c"], log)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell)
        assert log == ["start a", "start b", "start c"]
        assert [i.state for i in registry.actors()] == ["running"] * 4
        nursery.cancel_scope.cancel()
    assert log[3:] == ["stop c", "stop b", "stop a"]


async def test_ask_tell_and_mailbox_bounds(autojump_clock: Any) -> None:
    log: list[str] = []
    cell, registry, _ = make_supervisor(["a"], log)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell)
        ref = registry.ref("a")
        assert await ref.ask("inc") == 1
        ref.tell("inc")
        assert await ref.ask("inc") == 3
        with pytest.raises(AskTimeout):
            await ref.ask("slow", timeout_s=1.0)
        # The actor is stuck in 'slow': its mailbox fills and tell refuses instead of blocking.
        with pytest.raises(MailboxFull):
            for _ in range(10_000):
                ref.tell("inc")
        assert registry.cell("a").mailbox_depth == 256
        assert not ref.try_tell("inc")
        nursery.cancel_scope.cancel()


async def test_one_for_one_restarts_only_the_crashed_child(autojump_clock: Any) -> None:
    log: list[str] = []
    cell, registry, events = make_supervisor(["a", "b"], log)
    async with trio.open_nursery() as nursery:
        with events.subscribe() as received:
            await nursery.start(run_actor, cell)
            await registry.ref("b").ask("inc")
            with pytest.raises(ActorCrashed):
                await registry.ref("a").ask("boom")
            await wait_restarted(registry, "a", 1)
            # b kept its state; a is a fresh incarnation.
            assert await registry.ref("b").ask("inc") == 2
            assert await registry.ref("a").ask("inc") == 1
            assert registry.cell("b").restarts == 0
            kinds = []
            while True:
                try:
                    kinds.append(received.receive_nowait().event)
                except trio.WouldBlock:
                    break
            assert kinds == ["actor_crashed", "actor_restarted"]
        nursery.cancel_scope.cancel()


async def test_messages_queued_during_restart_reach_the_new_incarnation(
    autojump_clock: Any,
) -> None:
    log: list[str] = []
    cell, registry, _ = make_supervisor(["a"], log)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell)
        ref = registry.ref("a")
        ref.tell("boom")
        ref.tell("inc")
        ref.tell("inc")
        assert await ref.ask("inc") == 3
        assert registry.cell("a").restarts == 1
        nursery.cancel_scope.cancel()


async def test_one_for_all_restarts_every_child(autojump_clock: Any) -> None:
    log: list[str] = []
    cell, registry, _ = make_supervisor(["a", "b", "c"], log, strategy=Strategy.ONE_FOR_ALL)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell)
        log.clear()
        registry.ref("b").tell(CrashRequest())
        await wait_restarted(registry, "c", 1)
        assert [registry.cell(n).restarts for n in "abc"] == [1, 1, 1]
        assert log == ["stop b", "stop c", "stop a", "start a", "start b", "start c"]
        nursery.cancel_scope.cancel()


async def test_rest_for_one_restarts_the_child_and_those_after_it(autojump_clock: Any) -> None:
    log: list[str] = []
    cell, registry, _ = make_supervisor(["a", "b", "c"], log, strategy=Strategy.REST_FOR_ONE)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell)
        registry.ref("b").tell(CrashRequest())
        await wait_restarted(registry, "c", 1)
        assert [registry.cell(n).restarts for n in "abc"] == [0, 1, 1]
        nursery.cancel_scope.cancel()


async def test_transient_and_temporary_children(autojump_clock: Any) -> None:
    log: list[str] = []
    cell, registry, events = make_supervisor(["t"], log, restart=RestartType.TEMPORARY)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell)
        with events.subscribe() as received:
            registry.ref("t").tell("boom")
            assert (await received.receive()).event == "actor_crashed"
            assert (await received.receive()).event == "actor_exited"
        await trio.sleep(1)
        assert registry.cell("t").state == "crashed"
        assert registry.cell("t").restarts == 0
        nursery.cancel_scope.cancel()

    log = []
    cell, registry, _ = make_supervisor(["t"], log, restart=RestartType.TRANSIENT)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell)
        registry.ref("t").tell("boom")
        await wait_restarted(registry, "t", 1)
        nursery.cancel_scope.cancel()


async def test_escalates_past_restart_intensity(autojump_clock: Any) -> None:
    log: list[str] = []
    cell, registry, events = make_supervisor(["a", "b"], log, max_restarts=3, period_s=10)
    with events.subscribe() as received, pytest.RaisesGroup(SupervisorEscalation):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_actor, cell)
            for restarts in range(1, 4):
                registry.ref("a").tell("boom")
                await wait_restarted(registry, "a", restarts)
            log.clear()
            registry.ref("a").tell("boom")
            await trio.sleep_forever()
    # The supervisor stopped its remaining children before failing.
    assert log == ["stop a", "stop b"]
    assert registry.cell("root").state == "crashed"
    names = [event.event for event in _drain(received)]
    assert names[-1] == "supervisor_escalated"


async def test_restarts_spread_over_time_do_not_escalate(autojump_clock: Any) -> None:
    log: list[str] = []
    cell, registry, _ = make_supervisor(["a"], log, max_restarts=2, period_s=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell)
        for restarts in range(1, 8):
            registry.ref("a").tell("boom")
            await wait_restarted(registry, "a", restarts)
            await trio.sleep(6)
        assert registry.cell("root").state == "running"
        nursery.cancel_scope.cancel()


async def test_nested_supervisor_escalation_is_contained_by_parent(autojump_clock: Any) -> None:
    log: list[str] = []
    registry = Registry()
    events = EventBus()
    inner_specs = [ChildSpec("w", lambda: Counter("w", log), kind="counter")]
    root_specs = [
        ChildSpec(
            "inner",
            lambda: Supervisor(
                "inner", inner_specs, registry=registry, events=events, max_restarts=1, period_s=5
            ),
            kind="supervisor",
        ),
        ChildSpec("other", lambda: Counter("other", log), kind="counter"),
    ]
    cell = ActorCell(
        "root",
        lambda: Supervisor("root", root_specs, registry=registry, events=events),
        kind="supervisor",
    )
    registry.add(cell)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell)
        await registry.ref("other").ask("inc")
        registry.ref("w").tell("boom")
        await wait_restarted(registry, "w", 1)
        registry.ref("w").tell("boom")  # second crash within 5 s: inner escalates
        await wait_restarted(registry, "inner", 1)
        assert registry.cell("root").state == "running"
        assert await registry.ref("other").ask("inc") == 2  # untouched sibling
        nursery.cancel_scope.cancel()


async def test_operator_restart_of_one_child(autojump_clock: Any) -> None:
    log: list[str] = []
    cell, registry, _ = make_supervisor(["a", "b"], log)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell)
        await registry.ref("a").ask("inc")
        await registry.ref("root").ask(RestartChild("a"))
        assert registry.cell("a").restarts == 1
        assert await registry.ref("a").ask("inc") == 1
        with pytest.raises(KeyError):
            await registry.ref("root").ask(RestartChild("zzz"))
        nursery.cancel_scope.cancel()


async def test_unknown_actor_lists_known_names() -> None:
    registry = Registry()
    _, registry, _ = make_supervisor(["a", "b"], [], registry=registry)
    with pytest.raises(UnknownActor) as info:
        registry.cell("x")
    assert "actors: root" in str(info.value)


async def test_shutdown_grace_bounds_a_hanging_on_stop(autojump_clock: Any) -> None:
    class Stubborn(Actor):
        async def on_stop(self) -> None:
            await trio.sleep_forever()

    registry, events = Registry(), EventBus()
    cell = ActorCell(
        "root",
        lambda: Supervisor(
            "root",
            [ChildSpec("s", lambda: Stubborn("s"))],
            registry=registry,
            events=events,
            shutdown_grace_s=2.0,
        ),
    )
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_actor, cell)
        nursery.cancel_scope.cancel()
    assert trio.current_time() - start == pytest.approx(2.0)


def _drain(channel: trio.MemoryReceiveChannel[Any]) -> list[Any]:
    items = []
    while True:
        try:
            items.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items
