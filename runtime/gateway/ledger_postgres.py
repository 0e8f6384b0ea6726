"""The spend ledger in PostgreSQL, for a fleet of gateways sharing one record of spend.

`PostgresLedger` is the `LedgerStore` behind `ledger = "postgresql://..."`: synchronous
(psycopg 3, the maintained driver), one connection behind a lock, called from a worker thread.
A batch of entries is one `INSERT ... SELECT FROM unnest(...)`, so one statement and one
transaction whatever its size; each entry's id is unique, so a batch retried after a commit
whose answer was lost is written once. Migrations are versioned in `uptax_ledger_version` and
applied at open under `pg_advisory_xact_lock`, so gateways starting together migrate once.

The connection string's password is a secret: `location` and `repr` show the URL with it
masked, it is registered with the log redaction, and errors raised from here are scrubbed.
The tables live in the connection's first schema (`?options=-csearch_path%3Dname` picks one).
"""

from __future__ import annotations

import datetime as dt
import threading
import urllib.parse
from collections.abc import Sequence
from typing import Any

import attrs
import psycopg
from psycopg.conninfo import conninfo_to_dict

from actors.secrets import register_secret
from runtime.gateway.ledger import Entry, LedgerError, Spend, periods

__all__ = ["MIGRATIONS", "PostgresLedger", "redact_url"]

#: The schema, one migration per version; `uptax_ledger_version` holds one row per version applied.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE uptax_ledger (
        id uuid PRIMARY KEY,
        at timestamptz NOT NULL,
        tenant text NOT NULL,
        request_id text NOT NULL,
        model text NOT NULL,
        provider text NOT NULL,
        level text NOT NULL,
        input_tokens integer NOT NULL,
        output_tokens integer NOT NULL,
        cost_usd double precision NOT NULL
    );
    CREATE INDEX uptax_ledger_at_tenant ON uptax_ledger (at, tenant);
    """,
)

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS uptax_ledger_version ("
    "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
)
#: One lock per schema: processes migrating different schemas do not wait for each other.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('uptax_ledger'), hashtext(current_schema()))"

_INSERT = (
    "INSERT INTO uptax_ledger (id, at, tenant, request_id, model, provider, level, "
    "input_tokens, output_tokens, cost_usd) "
    "SELECT * FROM unnest(%s::uuid[], %s::timestamptz[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::text[], %s::integer[], %s::integer[], %s::double precision[]) "
    "ON CONFLICT (id) DO NOTHING"
)
_SPEND = (
    "SELECT tenant, COALESCE(SUM(cost_usd) FILTER (WHERE at >= %(day)s AND at < %(next_day)s), 0), "
    "SUM(cost_usd), COUNT(*) FILTER (WHERE at >= %(day)s AND at < %(next_day)s) "
    "FROM uptax_ledger WHERE at >= %(month)s AND at < %(next_month)s GROUP BY tenant"
)

#: A hung server must not hold a worker thread (and a shutdown) for ever.
_CONNECT_TIMEOUT_S = 10
_STATEMENT_TIMEOUT_MS = 30_000


def redact_url(url: str) -> str:
    """`url` with its password, in the authority or as a `password=` parameter, shown as ***."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    masked = [(key, "***" if key == "password" else value) for key, value in query]
    return urllib.parse.urlunsplit(
        parts._replace(netloc=netloc, query=urllib.parse.urlencode(masked, safe="*=,"))
    )


def _bounds(at: float) -> dict[str, dt.datetime]:
    """The starts of `at`'s UTC day and month and of the next ones."""
    day, _ = periods(at)
    start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    first = start.replace(day=1)
    year, index = divmod(first.month, 12)
    return {
        "day": start,
        "next_day": start + dt.timedelta(days=1),
        "month": first,
        "next_month": first.replace(year=first.year + year, month=index + 1),
    }


class PostgresLedger:
    """The ledger tables in one PostgreSQL database; every method may be called from any
    thread (they take turns on the one connection)."""

    def __init__(self, url: str) -> None:
        self.location = redact_url(url)
        self._password = ""
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise LedgerError(f"ledger {self.location}: {exc}") from None
        self._password = str(params.get("password") or "")
        register_secret(self._password)
        self._url = url
        timeout = f"-c statement_timeout={_STATEMENT_TIMEOUT_MS}"
        self._options = f"{params.get('options') or ''} {timeout}".strip()
        self._lock = threading.Lock()
        with self._lock:
            self._db = self._connect()
            self._run(self._migrate)

    def __repr__(self) -> str:
        return f"PostgresLedger({self.location!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self._url,
                autocommit=True,  # transactions are explicit: one per batch, migration, read
                connect_timeout=_CONNECT_TIMEOUT_S,
                options=self._options,
            )
        except psycopg.Error as exc:
            raise LedgerError(f"ledger {self.location}: {self._scrub(str(exc))}") from None

    def _run(self, work: Any, *args: Any) -> Any:
        """`work(*args)` on a live connection (reconnecting after a lost one), with psycopg's
        errors turned into `LedgerError`s that carry no password."""
        if self._db.closed or self._db.broken:
            self._db = self._connect()
        try:
            return work(*args)
        except psycopg.Error as exc:
            raise LedgerError(f"ledger {self.location}: {self._scrub(str(exc))}") from None

    def _migrate(self) -> None:
        with self._db.transaction():
            self._db.execute(_LOCK)  # held to the commit: one process migrates at a time
            self._db.execute(_VERSION_TABLE)
            row = self._db.execute("SELECT COALESCE(MAX(version), 0) FROM uptax_ledger_version")
            (version,) = row.fetchone() or (0,)
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in (s for s in script.split(";") if s.strip()):
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO uptax_ledger_version (version) VALUES (%s)", (number,)
                )

    @property
    def version(self) -> int:
        with self._lock:
            row = self._run(self._query, "SELECT MAX(version) FROM uptax_ledger_version")
        return int(row[0][0])

    def record_batch(self, entries: Sequence[Entry]) -> None:
        """Write `entries` in one statement and one transaction."""
        if not entries:
            return
        rows = [
            (e.id, dt.datetime.fromtimestamp(e.at, dt.UTC), *attrs.astuple(e.charge))
            for e in entries
        ]
        columns = [list(column) for column in zip(*rows, strict=True)]  # one array per column
        with self._lock:
            self._run(self._insert, columns)

    def _insert(self, columns: list[list[Any]]) -> None:
        with self._db.transaction():
            self._db.execute(_INSERT, columns)

    def spend(self, at: float) -> dict[str, Spend]:
        """Every tenant's spend in the UTC day and month of `at`."""
        day, month = periods(at)
        with self._lock:
            rows = self._run(self._query, _SPEND, _bounds(at))
        return {
            tenant: Spend(day, month, float(day_usd), float(month_usd), int(count))
            for tenant, day_usd, month_usd, count in rows
        }

    def _query(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self._db.execute(query, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
