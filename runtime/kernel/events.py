"""State-change events: each one is a structlog event and is fanned out to live subscribers.

Subscribers (the REPL's `watch`, scenario recorders) get events through bounded channels filled
with `send_nowait`: a slow subscriber loses events, it never slows an actor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs
import structlog
import trio

_log = structlog.get_logger("uptax")

#: The structlog levels an event can be written at.
LEVELS = ("debug", "info", "warning", "error", "critical")


@attrs.frozen
class Event:
    at: float
    event: str
    fields: dict[str, Any]


class EventBus:
    """Fans state changes out to structlog and to subscribers.

    `levels` maps an event name to the level it is logged at (one of `LEVELS`); an event not in
    it is logged at `default`. The kernel names no events of its own domain's: the application
    passes its table in.
    """

    def __init__(self, levels: Mapping[str, str] | None = None, default: str = "info") -> None:
        table = dict(levels or {})
        for name, level in [*table.items(), ("default", default)]:
            if level not in LEVELS:
                raise ValueError(f"level {level!r} of {name!r} is not one of: {', '.join(LEVELS)}")
        self._levels = table
        self._default = default
        self._subscribers: list[trio.MemorySendChannel[Event]] = []
        self.dropped = 0

    @property
    def names(self) -> tuple[str, ...]:
        """The events the level table names, sorted (empty when none was given)."""
        return tuple(sorted(self._levels))

    def level(self, event: str) -> str:
        """The level `event` is logged at."""
        return self._levels.get(event, self._default)

    def emit(self, event: str, **fields: Any) -> None:
        """Log one state change as a structlog event and hand it to subscribers."""
        getattr(_log, self.level(event))(event, **fields)
        if not self._subscribers:
            return
        item = Event(trio.current_time(), event, fields)
        for channel in self._subscribers:
            try:
                channel.send_nowait(item)
            except trio.WouldBlock:
                self.dropped += 1
            except trio.BrokenResourceError:
                pass

    @contextmanager
    def subscribe(self, buffer: int = 1000) -> Iterator[trio.MemoryReceiveChannel[Event]]:
        send, receive = trio.open_memory_channel[Event](buffer)
        self._subscribers.append(send)
        try:
            yield receive
        finally:
            self._subscribers.remove(send)
            send.close()
