"""Charges written in batches, off the event loop, retried until the store takes them.

A request's charge is queued in memory (`add` never waits) and written with the next batch: as
soon as `Batching.size` are waiting, else every `Batching.interval_s`, and all of them at
close. A batch is one call of the store's `record_batch` in a worker thread, behind a limiter
of its own, so at most one thread per ledger is ever busy with the database. A failed write is
logged (warning) and retried with exponential backoff, the batch kept at the head of the queue;
the request that made the charge was answered long before. The queue is bounded: past
`Batching.max_pending`, new charges still count in the gateway's in-memory spend (budgets hold)
but are not written, counted in `dropped` and logged as an error once per overflow.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import attrs
import structlog
import trio

if TYPE_CHECKING:  # ledger.py imports this module
    from runtime.gateway.ledger import Entry, LedgerStore

__all__ = ["BatchWriter", "Batching"]

_log = structlog.get_logger("runtime.gateway.ledger")

T = TypeVar("T")


@attrs.frozen
class Batching:
    """How charges are grouped and retried on their way to the store."""

    size: int = 500
    interval_s: float = 0.2
    max_pending: int = 100_000
    backoff_s: float = 0.1
    max_backoff_s: float = 10.0
    #: At close, how long the last charges may keep retrying before they are given up (logged).
    close_timeout_s: float = 15.0


class BatchWriter:
    """The queue of charges not yet in `store`, and the task that writes them."""

    def __init__(self, store: LedgerStore, batching: Batching = Batching()) -> None:
        self.store = store
        self.batching = batching
        self.dropped = 0
        self.batches = 0
        self._pending: collections.deque[Entry] = collections.deque()
        self._limiter = trio.CapacityLimiter(1)
        self._io = trio.Lock()  # a write, or a read with its snapshot of the queue
        self._full = trio.Event()
        self._failures = 0
        self._overflowing = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, entry: Entry) -> None:
        """Queue `entry` (never blocks; past `max_pending` it is dropped, see the module)."""
        if len(self._pending) >= self.batching.max_pending:
            if not self._overflowing:
                self._overflowing = True
                _log.error(
                    "ledger_queue_full", ledger=self.store.location, pending=len(self._pending)
                )
            self.dropped += 1
            return
        if self._overflowing:
            self._overflowing = False
            _log.warning("ledger_queue_accepting", ledger=self.store.location, dropped=self.dropped)
        self._pending.append(entry)
        if len(self._pending) >= self.batching.size:
            self._full.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write batches until cancelled (then `drain` writes what is left)."""
        task_status.started()
        while True:
            with trio.move_on_after(self.batching.interval_s):
                await self._full.wait()
            while self._pending:
                await self._write_or_back_off()
                if len(self._pending) < self.batching.size:
                    break
            # Reset only now: `add` counts the batch in flight among the pending, so it set the
            # event while that batch was being written, and a wake on it would write the few
            # charges that came after it as a batch of their own.
            self._full = trio.Event()

    async def flush(self) -> None:
        """Write every queued charge now, retrying until they are written."""
        while self._pending:
            await self._write_or_back_off()

    async def drain(self) -> None:
        """Write every queued charge, retrying for up to `close_timeout_s` (shielded, so a
        cancelled shutdown still writes them); what is left after is logged as lost."""
        with trio.CancelScope(shield=True), trio.move_on_after(self.batching.close_timeout_s):
            await self.flush()
        if self._pending:
            _log.error(
                "ledger_charges_lost", ledger=self.store.location, pending=len(self._pending)
            )

    async def snapshot(self, read: Callable[[], T]) -> tuple[T, list[Entry]]:
        """`read()`'s result from the worker thread, with the charges it could not have seen
        (those still queued when it ran: no batch is written while it runs)."""
        async with self._io:
            result = await trio.to_thread.run_sync(read, limiter=self._limiter)
            return result, list(self._pending)

    async def _write_or_back_off(self) -> None:
        """Write the next batch; on failure, log it and wait out the backoff (the batch stays
        at the head of the queue for the next attempt)."""
        try:
            written = await self._write_batch()
        except Exception as exc:
            self._failures += 1
            wait = min(
                self.batching.backoff_s * 2 ** (self._failures - 1), self.batching.max_backoff_s
            )
            _log.warning(
                "ledger_write_failed",
                ledger=self.store.location,
                pending=len(self._pending),
                attempt=self._failures,
                retry_in_s=round(wait, 3),
                error=str(exc),
            )
            await trio.sleep(wait)
            return
        if written and self._failures:
            _log.info(
                "ledger_write_recovered", ledger=self.store.location, attempts=self._failures + 1
            )
            self._failures = 0

    async def _write_batch(self) -> int:
        """How many charges the next batch wrote. The batch is taken under the lock, so a
        `flush` running alongside the writer's own loop never writes a charge twice."""
        async with self._io:
            batch = list(itertools.islice(self._pending, self.batching.size))
            if not batch:
                return 0
            await trio.to_thread.run_sync(self.store.record_batch, batch, limiter=self._limiter)
            for _ in batch:
                self._pending.popleft()
        self.batches += 1
        return len(batch)
