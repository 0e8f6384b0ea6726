"""State-change events: each one is a structlog event and is fanned out to live subscribers.

Subscribers (the REPL's `watch`, scenario recorders) get events through bounded channels filled
with `send_nowait`: a slow subscriber loses events, it never slows an actor.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import structlog
import trio

_log = structlog.get_logger("uptax")


@attrs.frozen
class Event:
    at: float
    event: str
    fields: dict[str, Any]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[trio.MemorySendChannel[Event]] = []
        self.dropped = 0

    def emit(self, event: str, **fields: Any) -> None:
        """Log one state change as a structlog event and hand it to subscribers."""
        _log.info(event, **fields)
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
