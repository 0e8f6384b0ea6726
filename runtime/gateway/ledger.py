"""The spend ledger: every tenant request's model, provider, tokens and cost in SQLite, so
budgets hold across restarts.

`LedgerFile` is the database, synchronous (the `uptax tenants` command uses it as is): WAL
mode, one connection behind a lock, schema versions in `PRAGMA user_version`, each migration
applied once at open. `Ledger` is the gateway's view: the same file through
`trio.to_thread.run_sync`, so no write ever blocks the event loop, plus each tenant's spend for
the current UTC day and month kept in memory, read on every request without a query. Days and
months are UTC. One gateway process per ledger file: another process's spend is seen only
when the file is opened again.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import trio

__all__ = ["MIGRATIONS", "Charge", "Ledger", "LedgerFile", "Spend", "default_ledger_path"]

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
        day, month = periods(at)
        with self._lock:
            self._db.execute(
                "INSERT INTO requests (at, day, month, tenant, request_id, model, provider, "
                "level, input_tokens, output_tokens, cost_usd) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (at, day, month, *attrs.astuple(charge)),
            )

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


class Ledger:
    """The gateway's ledger: writes off the event loop, the current spend in memory."""

    def __init__(self, file: LedgerFile, clock: Callable[[], float] = time.time) -> None:
        self.file = file
        self._clock = clock
        self._spend: dict[str, Spend] = {}
        self._period = ("", "")

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], clock: Callable[[], float] = time.time
    ) -> Ledger:
        """Open (creating and migrating) the file at `path` and load this period's spend."""
        file = await trio.to_thread.run_sync(LedgerFile, path)
        ledger = cls(file, clock)
        now = clock()
        ledger._spend = await trio.to_thread.run_sync(file.spend, now)
        ledger._period = periods(now)
        return ledger

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.file.close)

    def now(self) -> float:
        return self._clock()

    def spent(self, tenant: str) -> Spend:
        """`tenant`'s spend this UTC day and month (what was recorded through this ledger)."""
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

    async def record(self, charge: Charge) -> None:
        """Add `charge` to its tenant's spend now, and to the file."""
        at = self._clock()
        was = self.spent(charge.tenant)
        self._spend[charge.tenant] = attrs.evolve(
            was,
            day_usd=was.day_usd + charge.cost_usd,
            month_usd=was.month_usd + charge.cost_usd,
            requests_today=was.requests_today + 1,
        )
        await trio.to_thread.run_sync(self.file.record, charge, at)
