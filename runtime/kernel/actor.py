"""Actors: named tasks with bounded mailboxes, addressed through refs that survive restarts.

An `ActorCell` is the stable half of an actor: its name, its mailbox and its counters. Each
(re)start creates a fresh `Actor` incarnation from the cell's factory and runs it inside the cell;
messages queued while an incarnation restarts are handled by the next one, the way a registered
name in OTP outlives the process behind it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

import attrs
import trio

T = TypeVar("T")


class ActorError(Exception):
    """Base of the kernel's own errors."""


class MailboxFull(ActorError):
    """`tell`/`ask` found the mailbox full: the actor is overloaded, the sender must not wait."""


class ActorNotRunning(ActorError):
    """The actor has no live incarnation (starting, restarting or stopped)."""


class ActorCrashed(ActorError):
    """The actor crashed while handling this `ask`; its supervisor will restart it."""


class AskTimeout(ActorError, TimeoutError):
    """No reply within the `ask` deadline."""


class UnknownMessage(ActorError):
    """An actor received a message it has no handler for."""


class Crash(Exception):
    """Raised inside an actor on purpose (chaos testing): an abnormal exit like any other."""


@attrs.frozen
class CrashRequest:
    """Asks an actor to crash itself; handled by every actor."""

    reason: str = "crash requested"


class _ReplySlot(Generic[T]):
    """A one-shot reply: set once by the actor, awaited once by the asker."""

    __slots__ = ("_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def set(self, value: Any) -> None:
        if not self._event.is_set():
            self._value = value
            self._event.set()

    def fail(self, error: BaseException) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()

    async def wait(self) -> Any:
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value


@attrs.frozen
class Envelope:
    message: Any
    reply: _ReplySlot[Any] | None = None


class Actor:
    """One incarnation of an actor. Subclasses implement `handle` and may override the hooks.

    Background work of the incarnation (timers, heartbeats) runs in `self.nursery`, so it dies
    with the incarnation and is restarted with it.
    """

    kind: ClassVar[str] = "actor"

    def __init__(self, name: str) -> None:
        self.name = name
        self._nursery: trio.Nursery | None = None

    @property
    def nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise ActorNotRunning(self.name)
        return self._nursery

    async def on_start(self) -> None:
        """Set up before the actor is reported started. An exception here is a crash."""

    async def on_stop(self) -> None:
        """Release resources; runs shielded within the supervisor's shutdown grace."""

    async def handle(self, message: Any) -> Any:
        raise UnknownMessage(f"{self.name} cannot handle {type(message).__name__}")

    def snapshot(self) -> Any:
        """A frozen view of the actor's state; the default says only who it is."""
        return ActorIdentity(self.name, self.kind)

    async def run(
        self,
        cell: ActorCell,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The message loop. A handler exception crashes the incarnation (OTP semantics)."""
        receive = cell.receive
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self.on_start()
                task_status.started()
                async for envelope in receive:
                    cell.last_message_at = trio.current_time()
                    message = envelope.message
                    try:
                        if isinstance(message, CrashRequest):
                            raise Crash(message.reason)
                        result = await self.handle(message)
                    except Exception as exc:
                        if envelope.reply is not None:
                            envelope.reply.fail(ActorCrashed(f"{self.name} crashed: {exc!r}"))
                        raise
                    if envelope.reply is not None:
                        envelope.reply.set(result)
            finally:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(cell.shutdown_grace_s):
                        await self.on_stop()
                nursery.cancel_scope.cancel()


@attrs.frozen
class ActorIdentity:
    name: str
    kind: str


class ActorCell:
    """The stable address of an actor: mailbox, counters and the live incarnation, if any."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], Actor],
        *,
        kind: str | None = None,
        mailbox_size: int = 256,
        parent: str | None = None,
        shutdown_grace_s: float = 5.0,
    ) -> None:
        self.name = name
        self.factory = factory
        self.kind = kind or "actor"
        self.parent = parent
        self.shutdown_grace_s = shutdown_grace_s
        self.send, self.receive = trio.open_memory_channel[Envelope](mailbox_size)
        self.actor: Actor | None = None
        self.state = "new"
        self.restarts = 0
        self.started_at: float | None = None
        self.last_message_at: float | None = None
        self.ref = ActorRef(self)

    @property
    def mailbox_depth(self) -> int:
        return self.send.statistics().current_buffer_used


class ActorRef:
    """How others address an actor: never blocks the sender forever."""

    __slots__ = ("_cell",)

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def mailbox_depth(self) -> int:
        return self._cell.mailbox_depth

    def current(self) -> Actor:
        """The live incarnation, for synchronous reads of its state."""
        actor = self._cell.actor
        if actor is None or self._cell.state != "running":
            raise ActorNotRunning(f"{self._cell.name} is {self._cell.state}")
        return actor

    def tell(self, message: Any) -> None:
        """Queue a message; raises `MailboxFull` instead of waiting."""
        try:
            self._cell.send.send_nowait(Envelope(message))
        except trio.WouldBlock:
            raise MailboxFull(f"{self._cell.name}: mailbox full") from None

    def try_tell(self, message: Any) -> bool:
        """Queue a message if there is room; for messages that may be dropped (heartbeats)."""
        try:
            self._cell.send.send_nowait(Envelope(message))
        except trio.WouldBlock:
            return False
        return True

    async def ask(self, message: Any, *, timeout_s: float = 5.0) -> Any:
        """Request/reply with a deadline; `AskTimeout`, `MailboxFull` or `ActorCrashed` if not."""
        slot: _ReplySlot[Any] = _ReplySlot()
        try:
            self._cell.send.send_nowait(Envelope(message, slot))
        except trio.WouldBlock:
            raise MailboxFull(f"{self._cell.name}: mailbox full") from None
        with trio.move_on_after(timeout_s if timeout_s is not None else math.inf):
            return await slot.wait()
        raise AskTimeout(f"{self._cell.name}: no reply within {timeout_s}s")

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.name} {self._cell.state}>"
