"""The registry of live actors: one place to find any actor by name and see how it is doing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from runtime.kernel.actor import ActorCell, ActorRef


@attrs.frozen
class ActorInfo:
    name: str
    kind: str
    state: str
    restarts: int
    mailbox_depth: int
    #: trio time of the last message the actor took from its mailbox, if any.
    last_message_at: float | None
    started_at: float | None
    parent: str | None


class UnknownActor(KeyError):
    """No actor by that name; `.known` lists the names there are."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"no actor {self.name!r}; actors: {', '.join(self.known) or '(none)'}"


class Registry:
    def __init__(self) -> None:
        self._cells: dict[str, ActorCell] = {}

    def add(self, cell: ActorCell) -> None:
        if cell.name in self._cells and self._cells[cell.name] is not cell:
            raise ValueError(f"an actor named {cell.name!r} is already registered")
        self._cells[cell.name] = cell

    def cell(self, name: str) -> ActorCell:
        try:
            return self._cells[name]
        except KeyError:
            raise UnknownActor(name, sorted(self._cells)) from None

    def ref(self, name: str) -> ActorRef:
        return self.cell(name).ref

    def snapshot(self, name: str) -> Any:
        cell = self.cell(name)
        if cell.actor is None:
            return info(cell)
        return cell.actor.snapshot()

    def __iter__(self) -> Iterator[ActorCell]:
        return iter(list(self._cells.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._cells

    def actors(self) -> list[ActorInfo]:
        return [info(cell) for cell in self._cells.values()]


def info(cell: ActorCell) -> ActorInfo:
    return ActorInfo(
        name=cell.name,
        kind=cell.kind,
        state=cell.state,
        restarts=cell.restarts,
        mailbox_depth=cell.mailbox_depth,
        last_message_at=cell.last_message_at,
        started_at=cell.started_at,
        parent=cell.parent,
    )
