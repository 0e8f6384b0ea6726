"""OTP-style supervision on trio: ordered start, restart strategies, restart intensity, escalation.

A `Supervisor` is itself an actor, so supervisors nest. Each child runs in its own *shielded*
cancel scope: the supervisor, not trio's cancellation cascade, decides the order in which children
stop (reverse start order, each within its shutdown grace) and which children a restart takes down
(one_for_one: the crashed one; one_for_all: all; rest_for_one: it and those started after it).
More than `max_restarts` restarts within `period_s` and the supervisor stops its children and
fails itself with `SupervisorEscalation`, handing the problem to its parent.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from runtime.kernel.actor import Actor, ActorCell
from runtime.kernel.events import EventBus
from runtime.kernel.registry import Registry, info


class Strategy(enum.StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class RestartType(enum.StrEnum):
    #: Always restarted.
    PERMANENT = "permanent"
    #: Restarted only after an abnormal exit (an exception).
    TRANSIENT = "transient"
    #: Never restarted.
    TEMPORARY = "temporary"


class SupervisorEscalation(Exception):
    """Restart intensity exceeded: the supervisor gave up and failed itself."""

    def __init__(self, supervisor: str, child: str, restarts: int, period_s: float) -> None:
        super().__init__(
            f"{supervisor}: {restarts} restarts within {period_s}s (last: {child}); escalating"
        )
        self.supervisor = supervisor
        self.child = child


@attrs.frozen
class ChildSpec:
    name: str
    factory: Callable[[], Actor]
    restart: RestartType = RestartType.PERMANENT
    kind: str = "actor"
    mailbox_size: int = 256


@attrs.frozen
class RestartChild:
    """Ask a supervisor to stop and start one child (an operator's restart)."""

    name: str


@attrs.frozen
class SupervisorSnapshot:
    name: str
    kind: str
    strategy: str
    children: tuple[str, ...]
    restarts_in_period: int
    max_restarts: int
    period_s: float


class _Exit:
    __slots__ = ("cell", "error")

    def __init__(self, cell: ActorCell, error: BaseException | None) -> None:
        self.cell = cell
        self.error = error


class _Child:
    """A running child: its cell plus the scope and event the supervisor controls it through."""

    __slots__ = ("cell", "done", "scope", "spec", "stopping")

    def __init__(self, spec: ChildSpec, cell: ActorCell) -> None:
        self.spec = spec
        self.cell = cell
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.stopping = False


class Supervisor(Actor):
    kind = "supervisor"

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec],
        *,
        registry: Registry,
        events: EventBus,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 5,
        period_s: float = 30.0,
        shutdown_grace_s: float = 5.0,
    ) -> None:
        super().__init__(name)
        self.specs = list(children)
        self.registry = registry
        self.events = events
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.period_s = period_s
        self.shutdown_grace_s = shutdown_grace_s
        self._children: dict[str, _Child] = {}
        self._cells: dict[str, ActorCell] = {}
        self._restart_times: deque[float] = deque()
        self._exits_send, self._exits = trio.open_memory_channel[_Exit](float("inf"))
        self._lock = trio.Lock()

    def snapshot(self) -> SupervisorSnapshot:
        return SupervisorSnapshot(
            name=self.name,
            kind=self.kind,
            strategy=self.strategy.value,
            children=tuple(spec.name for spec in self.specs),
            restarts_in_period=len(self._restart_times),
            max_restarts=self.max_restarts,
            period_s=self.period_s,
        )

    def cell_for(self, spec: ChildSpec) -> ActorCell:
        """The child's cell, created once and kept across restarts (its mailbox survives)."""
        cell = self._cells.get(spec.name)
        if cell is None and spec.name in self.registry:
            # A restarted supervisor takes its children's cells back from the registry.
            existing = self.registry.cell(spec.name)
            if existing.parent == self.name:
                cell = self._cells[spec.name] = existing
        if cell is None:
            cell = ActorCell(
                spec.name,
                spec.factory,
                kind=spec.kind,
                mailbox_size=spec.mailbox_size,
                parent=self.name,
                shutdown_grace_s=self.shutdown_grace_s,
            )
            self._cells[spec.name] = cell
            self.registry.add(cell)
        return cell

    async def run(
        self,
        cell: ActorCell,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    for spec in self.specs:
                        await self._start(spec)
                    task_status.started()
                    nursery.start_soon(self._serve_mailbox, cell)
                    async for exit_ in self._exits:
                        async with self._lock:
                            await self._on_exit(exit_)
                finally:
                    with trio.CancelScope(shield=True):
                        await self._stop_all()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            escalation, rest = group.split(SupervisorEscalation)
            if escalation is not None and rest is None:
                raise _unwrap(escalation) from None
            raise
        finally:
            for child_cell in self._cells.values():
                child_cell.state = "stopped"

    async def _serve_mailbox(self, cell: ActorCell) -> None:
        async for envelope in cell.receive:
            cell.last_message_at = trio.current_time()
            message = envelope.message
            try:
                if isinstance(message, RestartChild):
                    async with self._lock:
                        await self._restart_on_request(message.name)
                    result: Any = None
                else:
                    result = await self.handle(message)
            except Exception as exc:
                if envelope.reply is not None:
                    envelope.reply.fail(exc)
                continue
            if envelope.reply is not None:
                envelope.reply.set(result)

    # -- starting and stopping -------------------------------------------------------------

    async def _start(self, spec: ChildSpec) -> None:
        cell = self.cell_for(spec)
        child = _Child(spec, cell)
        self._children[spec.name] = child
        cell.state = "starting"
        await self.nursery.start(self._run_child, child)

    async def _run_child(
        self, child: _Child, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        cell = child.cell
        status = _Started(cell, task_status)
        error: BaseException | None = None
        try:
            with trio.CancelScope(shield=True) as scope:
                child.scope = scope
                actor = cell.factory()
                cell.actor = actor
                await actor.run(cell, task_status=status)
        except Exception as exc:
            error = _unwrap(exc)
        finally:
            cell.actor = None
            cell.state = "stopped" if child.stopping else ("crashed" if error else "exited")
            child.done.set()
            if not child.stopping:
                self._exits_send.send_nowait(_Exit(cell, error))
            if not status.reported:
                task_status.started()

    async def _stop(self, child: _Child) -> None:
        child.stopping = True
        child.cell.state = "stopping"
        if child.scope is not None:
            child.scope.cancel()
        await child.done.wait()

    async def _stop_all(self) -> None:
        for spec in reversed(self.specs):
            child = self._children.get(spec.name)
            if child is not None and not child.done.is_set():
                await self._stop(child)

    # -- restarts --------------------------------------------------------------------------

    async def _on_exit(self, exit_: _Exit) -> None:
        child = self._children.get(exit_.cell.name)
        if child is None or child.cell is not exit_.cell or child.stopping:
            return
        spec = child.spec
        abnormal = exit_.error is not None
        if abnormal:
            self.events.emit(
                "actor_crashed",
                actor=spec.name,
                supervisor=self.name,
                error=type(exit_.error).__name__,
                detail=str(exit_.error)[:200],
            )
        if spec.restart is RestartType.TEMPORARY or (
            spec.restart is RestartType.TRANSIENT and not abnormal
        ):
            self.events.emit("actor_exited", actor=spec.name, supervisor=self.name)
            return
        self._count_restart(spec.name)
        await self._restart_children(self._restart_set(spec), reason="crash" if abnormal else "exit")

    def _count_restart(self, child: str) -> None:
        now = trio.current_time()
        window = self._restart_times
        while window and window[0] <= now - self.period_s:
            window.popleft()
        if len(window) >= self.max_restarts:
            self.events.emit(
                "supervisor_escalated",
                supervisor=self.name,
                child=child,
                restarts=len(window) + 1,
                period_s=self.period_s,
            )
            raise SupervisorEscalation(self.name, child, len(window) + 1, self.period_s)
        window.append(now)

    def _restart_set(self, crashed: ChildSpec) -> list[ChildSpec]:
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [crashed]
        if self.strategy is Strategy.ONE_FOR_ALL:
            return list(self.specs)
        index = next(i for i, spec in enumerate(self.specs) if spec.name == crashed.name)
        return self.specs[index:]

    async def _restart_children(self, victims: list[ChildSpec], *, reason: str) -> None:
        """Stop the victims in reverse start order, then start them again in start order."""
        for victim in reversed(victims):
            child = self._children[victim.name]
            if not child.done.is_set():
                await self._stop(child)
        for victim in victims:
            cell = self._children[victim.name].cell
            cell.restarts += 1
            await self._start(victim)
            self.events.emit(
                "actor_restarted",
                actor=victim.name,
                supervisor=self.name,
                reason=reason,
                restarts=cell.restarts,
            )

    async def _restart_on_request(self, name: str) -> None:
        spec = next((s for s in self.specs if s.name == name), None)
        if spec is None:
            raise KeyError(name)
        await self._restart_children(self._restart_set(spec), reason="operator")


class _Started:
    """The task status an actor reports its start to: marks its cell running, then lets the
    starter go on. `reported` tells a starter whose actor failed before starting that it must
    still release whoever waits on it."""

    def __init__(self, cell: ActorCell, task_status: trio.TaskStatus[None]) -> None:
        self._cell = cell
        self._task_status = task_status
        self.reported = False

    def started(self, value: None = None) -> None:
        self.reported = True
        self._cell.state = "running"
        self._cell.started_at = trio.current_time()
        self._task_status.started()


def _unwrap(error: BaseException) -> BaseException:
    """The one real error inside the exception groups an actor's own nursery wraps it in."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def run_actor(
    cell: ActorCell, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a top-level cell (the root supervisor) outside any supervisor."""
    actor = cell.factory()
    cell.actor = actor
    cell.state = "starting"
    try:
        await actor.run(cell, task_status=_Started(cell, task_status))
    except Exception:
        cell.state = "crashed"
        raise
    finally:
        cell.actor = None
        if cell.state != "crashed":
            cell.state = "stopped"


__all__ = [
    "ChildSpec",
    "RestartChild",
    "RestartType",
    "Strategy",
    "Supervisor",
    "SupervisorEscalation",
    "SupervisorSnapshot",
    "info",
    "run_actor",
]
