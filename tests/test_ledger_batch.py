"""The batch writer's size trigger against a store whose writes the test holds open: a batch is
the `size` charges that filled it, never the few that came in while the one before was being
written. (PostgreSQL's own tests check the statements; this one checks the timing they race.)"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import trio
from test_gateway_ledger import charge

from runtime.gateway.ledger import Batching, BatchWriter, Entry, Spend

#: Written only when `size` charges wait (the timer never fires in a test).
BY_SIZE = Batching(size=100, interval_s=3600)


class HeldStore:
    """A ledger store whose writes wait in their worker thread until the test lets them go."""

    location = "held"

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.writing = threading.Event()
        self.go = threading.Event()

    def record_batch(self, entries: Sequence[Entry]) -> None:
        self.writing.set()
        self.go.wait(timeout=30)
        self.batches.append(len(entries))

    def spend(self, at: float) -> dict[str, Spend]:
        return {}

    def close(self) -> None:
        pass


def add(writer: BatchWriter, count: int) -> None:
    for _ in range(count):
        writer.add(Entry(charge("acme", 0.01), 0.0))


async def written(writer: BatchWriter, batches: int) -> None:
    with trio.fail_after(30):
        while writer.batches < batches:
            await trio.lowlevel.checkpoint()


async def test_charges_added_during_a_write_wait_for_a_full_batch_of_their_own() -> None:
    store = HeldStore()
    writer = BatchWriter(store, BY_SIZE)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        add(writer, 100)
        assert await trio.to_thread.run_sync(store.writing.wait, 30)
        add(writer, 9)  # while the first batch is in the worker thread
        store.go.set()
        await written(writer, 1)
        await trio.sleep(0.5)  # room for a wrong wake to write the nine
        assert (store.batches, writer.pending) == ([100], 9)
        add(writer, 91)
        await written(writer, 2)
        assert (store.batches, writer.pending) == ([100, 100], 0)
        nursery.cancel_scope.cancel()
