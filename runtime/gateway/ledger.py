"""The spend ledger: every tenant request's model, provider, tokens and cost, so budgets hold
across restarts.

A `LedgerStore` is the database, synchronous (the `uptax tenants` command uses it as is), with
two backends picked by `open_store` from the location: `LedgerFile`, an SQLite file (the
single-instance default: WAL mode, one connection behind a lock, schema versions in `PRAGMA
user_version`, each migration applied once at open), and `PostgresLedger` for a
`postgresql://` URL (`ledger_postgres.py`, shared by a fleet). `Ledger` is the gateway's view:
the store through `trio.to_thread.run_sync`, so no write ever blocks the event loop, plus each
tenant's spend for the current UTC day and month kept in memory, read on every request without
a query. Into SQLite each charge is written as it is made; into PostgreSQL in batches
(`ledger_batch.py`). Days and months are UTC. Another process's spend is seen when the totals
are read again: at open, or by `Ledger.refresh`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeGuard

import attrs
import trio

from runtime.gateway.ledger_batch import Batching, BatchWriter

__all__ = [
    "MIGRATIONS",
    "Batching",
    "Charge",
    "Entry",
    "Ledger",
    "LedgerError",
    "LedgerFile",
    "LedgerStore",
    "Spend",
    "default_ledger_path",
    "is_postgres_url",
    "open_ledger",
    "open_store",
]

#: The schema, one migration per version (`PRAGMA user_version` is how many are applied).
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        day TEXT NOT NULL,
        month TEXT NOT NULL,
        tenant TEXT NOT NULL,
        request_id TEXT NOT NULL,
        model TEXT NOT NULL,
        provider TEXT NOT NULL,
        level TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL
    );
    CREATE INDEX requests_tenant_day ON requests (tenant, day);
    CREATE INDEX requests_tenant_month ON requests (tenant, month);
    """,
)


def default_ledger_path() -> Path:
    """`$XDG_STATE_HOME/uptax/ledger.sqlite3`, or under `~/.local/state` (kept across
    restarts and upgrades, wherever the gateway is started from)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "uptax" / "ledger.sqlite3"


@attrs.frozen
class Charge:
    """One answered request, as the ledger records it."""

    tenant: str
    request_id: str
    model: str
    provider: str
    level: str
    input_tokens: int
    output_tokens: int
    cost_usd: float


@attrs.frozen
class Entry:
    """A charge at the unix time it was made, with an id that makes writing it twice (a retry
    after a lost commit) write it once."""

    charge: Charge
    at: float
    id: str = attrs.field(factory=lambda: str(uuid.uuid4()))


class LedgerError(Exception):
    """The ledger's database failed; the message names it without its password."""


class LedgerStore(Protocol):
    """Where charges are kept: any backend, every method callable from any thread."""

    #: Where it is, safe to show (a path, or a URL with its password masked).
    location: str

    def record_batch(self, entries: Sequence[Entry]) -> None:
        """Write `entries`, all or none."""

    def spend(self, at: float) -> dict[str, Spend]:
        """Every tenant's spend in the UTC day and month of `at`."""

    def close(self) -> None: ...


@attrs.frozen
class Spend:
    """A tenant's spend in USD in the UTC day and month of `day`/`month` ("2026-12-02")."""

    day: str
    month: str
    day_usd: float = 0.0
    month_usd: float = 0.0
    requests_today: int = 0


def periods(at: float) -> tuple[str, str]:
    """The UTC day and month of the unix time `at`: ("2026-12-02", "2026-12")."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m")


def seconds_left(at: float) -> tuple[float, float]:
    """Seconds from `at` to the end of its UTC day and of its UTC month."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    midnight = dt.datetime(moment.year, moment.month, moment.day, tzinfo=dt.UTC)
    next_day = midnight + dt.timedelta(days=1)
    year, month = divmod(moment.month, 12)  # month 12 -> next year's January
    next_month = dt.datetime(moment.year + year, month + 1, 1, tzinfo=dt.UTC)
    return (next_day - moment).total_seconds(), (next_month - moment).total_seconds()


class LedgerFile:
    """The SQLite file itself; every method may be called from any thread."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            statements = [s for s in script.split(";") if s.strip()]
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def record(self, charge: Charge, at: float) -> None:
        self.record_batch([Entry(charge, at)])

    def record_batch(self, entries: Sequence[Entry]) -> None:
        rows = [(e.at, *periods(e.at), *attrs.astuple(e.charge)) for e in entries]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO requests (at, day, month, tenant, request_id, model, provider, "
                    "level, input_tokens, output_tokens, cost_usd) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def spend(self, at: float) -> dict[str, Spend]:
        """Every tenant's spend in the UTC day and month of `at`."""
        day, month = periods(at)
        with self._lock:
            rows = self._db.execute(
                "SELECT tenant, SUM(CASE WHEN day = ? THEN cost_usd ELSE 0 END), SUM(cost_usd), "
                "SUM(day = ?) FROM requests WHERE month = ? GROUP BY tenant",
                (day, day, month),
            ).fetchall()
        return {
            tenant: Spend(day, month, float(day_usd), float(month_usd), int(count))
            for tenant, day_usd, month_usd, count in rows
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()


def is_postgres_url(location: str | os.PathLike[str]) -> TypeGuard[str]:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_store(location: str | os.PathLike[str]) -> LedgerStore:
    """The store at `location`: PostgreSQL for a `postgresql://` (or `postgres://`) URL, else
    the SQLite file at that path (created and migrated)."""
    if is_postgres_url(location):
        try:
            from runtime.gateway.ledger_postgres import PostgresLedger
        except ImportError as exc:  # psycopg is an optional dependency
            raise LedgerError(
                f"a PostgreSQL ledger needs psycopg ({exc}): pip install 'uptax-fallback[fleet]'"
            ) from None
        return PostgresLedger(location)
    return LedgerFile(location)


class Ledger:
    """The gateway's ledger: writes off the event loop, the current spend in memory."""

    def __init__(
        self,
        store: LedgerStore,
        clock: Callable[[], float] = time.time,
        writer: BatchWriter | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self._clock = clock
        self._spend: dict[str, Spend] = {}
        self._period = ("", "")

    @property
    def file(self) -> LedgerStore:
        """The store (named for the SQLite file it was first)."""
        return self.store

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], clock: Callable[[], float] = time.time
    ) -> Ledger:
        """Open (creating and migrating) the SQLite file at `path` and load this period's
        spend; each charge is written as it is recorded. (`open_ledger` opens any backend.)"""
        if is_postgres_url(path):  # not a file name: its batch writer needs `open_ledger`'s task
            raise LedgerError("a PostgreSQL ledger is opened with open_ledger(), not Ledger.open()")
        file = await trio.to_thread.run_sync(LedgerFile, path)
        ledger = cls(file, clock)
        await ledger.refresh()
        return ledger

    async def aclose(self) -> None:
        """Write what is queued, then close the store."""
        if self.writer is not None:
            await self.writer.drain()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self.store.close)

    def now(self) -> float:
        return self._clock()

    async def flush(self) -> None:
        """Write what is queued now (a no-op for SQLite, written as it goes)."""
        if self.writer is not None:
            await self.writer.flush()

    async def refresh(self) -> None:
        """Read this period's spend again from the store: what every process sharing it has
        recorded, plus what this one has queued and not yet written. A store that cannot be
        read raises `LedgerError` and leaves the totals as they were."""
        now = self._clock()
        if self.writer is None:
            spend = await trio.to_thread.run_sync(self.store.spend, now)
            queued: list[Entry] = []
        else:
            spend, queued = await self.writer.snapshot(lambda: self.store.spend(now))
        self._spend = spend
        self._period = periods(now)
        for entry in queued:
            if periods(entry.at) == self._period:
                self._add(entry.charge)

    def spent(self, tenant: str) -> Spend:
        """`tenant`'s spend this UTC day and month (what was recorded through this ledger, and
        what the store held when it was last read)."""
        day, month = self._roll()
        spend = self._spend.get(tenant)
        if spend is None:
            return Spend(day, month)
        return spend

    def _roll(self) -> tuple[str, str]:
        """The current period; past midnight or a month's end the totals start again."""
        day, month = periods(self._clock())
        if (day, month) != self._period:
            self._spend = {
                tenant: Spend(day, month, 0.0, spend.month_usd if spend.month == month else 0.0)
                for tenant, spend in self._spend.items()
            }
            self._period = (day, month)
        return day, month

    def _add(self, charge: Charge) -> None:
        was = self.spent(charge.tenant)
        self._spend[charge.tenant] = attrs.evolve(
            was,
            day_usd=was.day_usd + charge.cost_usd,
            month_usd=was.month_usd + charge.cost_usd,
            requests_today=was.requests_today + 1,
        )

    async def record(self, charge: Charge) -> None:
        """Add `charge` to its tenant's spend now, and to the store: at once into SQLite (its
        failure raised), with the next batch into PostgreSQL (retried there, never raised)."""
        entry = Entry(charge, self._clock())
        self._add(charge)
        if self.writer is not None:
            self.writer.add(entry)
            await trio.lowlevel.checkpoint()
            return
        await trio.to_thread.run_sync(self.store.record_batch, [entry])


@contextlib.asynccontextmanager
async def open_ledger(
    location: str | os.PathLike[str],
    clock: Callable[[], float] = time.time,
    batching: Batching | None = None,
) -> AsyncIterator[Ledger]:
    """The ledger at `location` (an SQLite path or a `postgresql://` URL), open while the block
    runs, this period's spend loaded. PostgreSQL gets a batch writer, running in the block's
    nursery; whatever it still holds at the end is written before the store closes."""
    store = await trio.to_thread.run_sync(open_store, location)
    batched = not isinstance(store, LedgerFile)
    writer = BatchWriter(store, batching or Batching()) if batched else None
    ledger = Ledger(store, clock, writer)
    try:
        await ledger.refresh()
        async with trio.open_nursery() as nursery:
            if writer is not None:
                await nursery.start(writer.run)
            try:
                yield ledger
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await ledger.aclose()
