"""The spend ledger in PostgreSQL (the machine's server, as in CI): migrations applied once even
when processes start together, spend summed per UTC day and month, charges written one
statement per batch and all of them at close, a killed connection retried without losing any,
budgets rebuilt from the database at open and on refresh, the gateway refusing a spent budget
across a restart, and the password nowhere to be seen. Each test works in a schema of its own,
dropped after it."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import structlog
import trio
from structlog.testing import capture_logs
from test_gateway_ledger import at, charge
from test_gateway_tenants import GLOBEX_KEY, _budget_refused, ask, tenants_config

import runtime
from runtime.gateway import open_gateway, tenants_cli
from runtime.gateway.ledger import (
    Batching,
    BatchWriter,
    Entry,
    Ledger,
    LedgerError,
    Spend,
    open_ledger,
    open_store,
)
from runtime.gateway.policy import open_access
from runtime.gateway.server import main as server_main
from runtime.gateway.tenants import MASTER_KEY_ENV

psycopg = pytest.importorskip("psycopg")

SERVERS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")
PASSWORD = "pw-Zq8sUperSecret"
#: Never written by a size trigger or a timer (the tests run on trio's real clock: a virtual
#: one would jump while a worker thread waits): only what the test asks for, and the close. A
#: failed write is retried after 1 ms.
BY_HAND = Batching(size=100, interval_s=3600, backoff_s=0.001)


@pytest.fixture(scope="module")
def server() -> str:
    """The URL of the machine's PostgreSQL (user postgres, else root), or a skip saying why."""
    errors = []
    for url in SERVERS:
        try:
            psycopg.connect(url, connect_timeout=3).close()
        except psycopg.Error as exc:
            errors.append(f"{url}: {exc}")
        else:
            return url
    pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({'; '.join(errors)})")


@contextlib.contextmanager
def fresh_schema(server: str, prefix: str) -> Iterator[str]:
    """`server`'s URL with its tables in a fresh schema, dropped at the end."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{server}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(server, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def url(server: str) -> Iterator[str]:
    """A URL whose tables land in a fresh schema, dropped after the test."""
    with fresh_schema(server, "uptax_test") as location:
        yield location


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as db:
        return db.execute(sql).fetchall()


def with_password(url: str) -> str:
    """`url` with a password (trust auth lets it connect all the same)."""
    return url.replace("://postgres@", f"://postgres:{PASSWORD}@").replace(
        "://root@", f"://root:{PASSWORD}@"
    )


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- migrations --------------------------------------------------------------------------------


def test_migrations_are_applied_once_and_versioned(url: str) -> None:
    from runtime.gateway.ledger_postgres import MIGRATIONS, PostgresLedger

    PostgresLedger(url).close()
    again = PostgresLedger(url)
    assert again.version == len(MIGRATIONS)
    again.close()
    assert query(url, "SELECT version FROM uptax_ledger_version") == [(1,)]


def test_an_older_schema_is_migrated_at_open(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.gateway import ledger_postgres

    ledger_postgres.PostgresLedger(url).close()
    later = (*ledger_postgres.MIGRATIONS, "ALTER TABLE uptax_ledger ADD COLUMN outcome text")
    monkeypatch.setattr(ledger_postgres, "MIGRATIONS", later)
    ledger_postgres.PostgresLedger(url).close()
    assert query(url, "SELECT version FROM uptax_ledger_version ORDER BY 1") == [(1,), (2,)]
    columns = query(
        url,
        "SELECT column_name FROM information_schema.columns WHERE "
        "table_name = 'uptax_ledger' AND table_schema = current_schema()",
    )
    assert ("outcome",) in columns


def test_processes_starting_together_migrate_once(url: str) -> None:
    """Four connections open at once (threads: each its own session, as processes would be):
    the advisory lock lets one migrate, the others find the schema done."""
    from runtime.gateway.ledger_postgres import PostgresLedger

    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def open_one() -> None:
        start.wait()
        try:
            PostgresLedger(url).close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert query(url, "SELECT version FROM uptax_ledger_version") == [(1,)]


# -- the store ----------------------------------------------------------------------------------


def test_spend_is_summed_per_tenant_for_the_day_and_the_month(url: str) -> None:
    store = open_store(url)
    entries = [
        Entry(charge("acme", 1.0), at("2026-11-30T10:00:00")),  # last month: not counted
        Entry(charge("acme", 0.25), at("2026-12-01T10:00:00")),
        Entry(charge("acme", 0.5), at("2026-12-02T09:00:00")),
        Entry(charge("acme", 0.125), at("2026-12-02T10:00:00")),
        Entry(charge("globex", 2.0), at("2026-12-02T11:00:00")),
        Entry(charge("globex", 4.0), at("2027-01-01T00:00:00")),  # next month: not counted
    ]
    store.record_batch(entries)
    store.record_batch(entries[1:3])  # a retried batch: its rows are already there
    spend = store.spend(at("2026-12-02T12:00:00"))
    store.close()
    assert spend["acme"] == Spend("2026-12-02", "2026-12", 0.625, 0.875, 2)
    assert spend["globex"] == Spend("2026-12-02", "2026-12", 2.0, 2.0, 1)
    rows = query(
        url,
        "SELECT tenant, model, provider, level, input_tokens, output_tokens, "
        "cost_usd, at FROM uptax_ledger WHERE cost_usd = 0.125",
    )
    noon = dt.datetime(2026, 12, 2, 10, tzinfo=dt.UTC)
    assert rows == [("acme", "gpt-4o", "openai", "primary", 10, 20, 0.125, noon)]


# -- batches ------------------------------------------------------------------------------------


def transactions(url: str) -> list[int]:
    """Rows per writing transaction (rows written together share their `xmin`)."""
    return sorted(n for (n,) in query(url, "SELECT count(*) FROM uptax_ledger GROUP BY xmin"))


async def test_a_full_batch_is_written_at_once_in_one_statement(url: str) -> None:
    store = await trio.to_thread.run_sync(open_store, url)
    writer = BatchWriter(store, BY_HAND)
    ledger = Ledger(store, writer=writer)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for index in range(250):
            await ledger.record(charge(f"t{index % 5}", 0.01))
        with trio.fail_after(30):
            while writer.batches < 2:  # the size trigger, not a timer: BY_HAND has none
                await trio.lowlevel.checkpoint()
        assert writer.pending == 50
        assert transactions(url) == [100, 100]
        nursery.cancel_scope.cancel()
    await ledger.aclose()  # the close writes the rest
    assert writer.batches == 3
    assert transactions(url) == [50, 100, 100]


async def test_charges_left_in_the_queue_are_written_at_close(url: str) -> None:
    with trio.CancelScope() as shutdown:
        async with open_ledger(url, batching=BY_HAND) as ledger:
            for _ in range(7):
                await ledger.record(charge("acme", 0.5))
            assert ledger.writer is not None and ledger.writer.pending == 7
            assert query(url, "SELECT count(*) FROM uptax_ledger") == [(0,)]
            shutdown.cancel()  # a cancelled shutdown: the close is shielded, and writes them
            await trio.sleep_forever()
    assert transactions(url) == [7]


@pytest.mark.usefixtures("log_output")  # ledger_write_recovered is an info event
async def test_a_killed_connection_is_retried_without_losing_a_charge(url: str) -> None:
    async with open_ledger(url, batching=BY_HAND) as ledger:
        for _ in range(3):
            await ledger.record(charge("acme", 0.25))
        await ledger.flush()
        pid = ledger.store._db.info.backend_pid  # type: ignore[attr-defined]
        assert query(url, f"SELECT pg_terminate_backend({pid})") == [(True,)]
        for _ in range(4):
            await ledger.record(charge("acme", 0.25))
        with capture_logs() as logs:
            await ledger.flush()
    failed = [e for e in logs if e["event"] == "ledger_write_failed"]
    assert len(failed) == 1 and failed[0]["log_level"] == "warning"
    assert failed[0]["attempt"] == 1 and failed[0]["pending"] == 4
    assert [e["event"] for e in logs][-1] == "ledger_write_recovered"
    assert transactions(url) == [3, 4]


async def test_a_full_queue_drops_from_the_record_but_not_from_the_budget(url: str) -> None:
    async with open_ledger(url, batching=attrs.evolve(BY_HAND, max_pending=3)) as ledger:
        with capture_logs() as logs:
            for _ in range(5):
                await ledger.record(charge("acme", 1.0))
        assert ledger.spent("acme").day_usd == 5.0
        assert ledger.writer is not None and ledger.writer.dropped == 2
    assert [e["event"] for e in logs] == ["ledger_queue_full"]
    assert query(url, "SELECT count(*) FROM uptax_ledger") == [(3,)]


# -- budgets from the database ------------------------------------------------------------------


async def test_budgets_are_rebuilt_at_open_and_on_refresh(url: str) -> None:
    clock = Clock(at("2026-12-02T23:00:00"))
    async with open_ledger(url, clock, BY_HAND) as one:
        await one.record(charge("acme", 0.5))
        await one.record(charge("acme", 0.25))
    async with open_ledger(url, clock, BY_HAND) as one, open_ledger(url, clock, BY_HAND) as two:
        assert (two.spent("acme").day_usd, two.spent("acme").requests_today) == (0.75, 2)
        await one.record(charge("acme", 1.0))
        await one.refresh()  # still queued: counted once, from the queue
        assert one.spent("acme").day_usd == 1.75
        await two.refresh()  # not written yet: another instance cannot see it
        assert two.spent("acme").day_usd == 0.75
        await one.flush()
        await one.refresh()
        await two.refresh()
        assert one.spent("acme").day_usd == two.spent("acme").day_usd == 1.75
        clock.now = at("2026-12-03T00:00:01")  # a new day, the same month
        await two.refresh()
        assert (two.spent("acme").day_usd, two.spent("acme").month_usd) == (0.0, 1.75)


async def test_a_failed_refresh_keeps_the_totals_and_the_next_one_reconnects(url: str) -> None:
    async with open_ledger(url, batching=BY_HAND) as ledger:
        await ledger.record(charge("acme", 0.5))
        await ledger.flush()
        pid = ledger.store._db.info.backend_pid  # type: ignore[attr-defined]
        query(url, f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(LedgerError, match="terminating connection"):
            await ledger.refresh()
        assert ledger.spent("acme").day_usd == 0.5
        with psycopg.connect(url, autocommit=True) as db:  # the total as another instance made it
            db.execute("UPDATE uptax_ledger SET cost_usd = 0.75")
        await ledger.refresh()
        assert ledger.spent("acme").day_usd == 0.75


async def test_the_gateway_refuses_a_spent_budget_across_a_restart(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    config = tenants_config(url, budget_usd_per_day=0.000001)
    async with open_gateway(config) as server:
        first = await ask(server)
        assert float(first.headers["x-uptax-cost-usd"]) > 0.000001
        await _budget_refused(server)
        await ask(server, GLOBEX_KEY)
    assert dict(query(url, "SELECT tenant, count(*) FROM uptax_ledger GROUP BY 1")) == {
        "acme": 1,
        "globex": 1,
    }
    async with open_gateway(config) as server:  # a new instance: the spend read from PostgreSQL
        await _budget_refused(server)
    async with open_access(config, "127.0.0.1") as access:
        assert access.ledger is not None
        assert access.ledger.spent("acme").requests_today == 1


def test_tenants_spend_reads_postgres(url: str) -> None:
    store = open_store(url)
    store.record_batch([Entry(charge("acme", 0.5), dt.datetime.now(dt.UTC).timestamp())])
    store.close()
    out = io.StringIO()
    assert tenants_cli.main(["spend", "--ledger", with_password(url)], out) == 0
    lines = out.getvalue().splitlines()
    assert PASSWORD not in out.getvalue() and "postgres" in lines[0]
    assert [line.split()[:3] for line in lines if line.startswith("acme")] == [
        ["acme", "1", "0.5000"]
    ]


# -- the password -------------------------------------------------------------------------------


async def test_the_password_is_never_shown(url: str, log_output: io.StringIO) -> None:
    secret_url = with_password(url)
    async with open_ledger(secret_url, batching=BY_HAND) as ledger:
        assert PASSWORD not in repr(ledger.store) and PASSWORD not in ledger.store.location
        assert ":***@" in ledger.store.location
        structlog.get_logger("test").warning("ledger_opened", url=secret_url)
        pid = ledger.store._db.info.backend_pid  # type: ignore[attr-defined]
        query(url, f"SELECT pg_terminate_backend({pid})")
        await ledger.record(charge("acme", 0.5))
        await ledger.flush()  # a failed write logged on the way (with the URL)
    unreachable = secret_url.replace(":5432/", ":1/")
    with pytest.raises(LedgerError) as refused:
        open_store(unreachable)
    text = log_output.getvalue()
    assert "ledger_write_failed" in text and "ledger_opened" in text
    assert PASSWORD not in text and PASSWORD not in str(refused.value)
    assert "***" in str(refused.value)
    query_password = f"{url}&password={PASSWORD}"
    with pytest.raises(LedgerError) as wrong_port:
        open_store(query_password.replace(":5432/", ":1/"))
    assert PASSWORD not in str(wrong_port.value)


def test_a_url_is_shown_without_its_password() -> None:
    from runtime.gateway.ledger_postgres import redact_url

    assert redact_url("postgres://u:p%40ss@db:5432/x?password=p2&sslmode=require") == (
        "postgres://u:***@db:5432/x?password=***&sslmode=require"
    )
    assert redact_url("postgresql://u@db/x") == "postgresql://u@db/x"


async def test_an_sqlite_location_still_opens_sqlite(tmp_path: Any, url: str) -> None:
    with pytest.raises(LedgerError, match="open_ledger"):
        await Ledger.open(url)  # no file named after the URL
    async with open_ledger(tmp_path / "ledger.sqlite3") as ledger:
        assert ledger.writer is None
        await ledger.record(charge("acme", 0.5))
    assert open_store(tmp_path / "ledger.sqlite3").spend(ledger.now())["acme"].day_usd == 0.5


def test_serve_says_when_the_ledger_is_unreachable(
    url: str, tmp_path: Any, capsys: pytest.CaptureFixture[str], own_logging: None
) -> None:
    demo = (Path(runtime.__file__).parent / "data" / "demo.toml").read_text()
    unreachable = with_password(url).replace(":5432/", ":1/")
    config = tmp_path / "uptax.toml"
    config.write_text(f'{demo}\n[gateway]\nledger = "{unreachable}"\n')
    assert server_main(["--config", str(config), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("uptax serve: ledger postgresql://postgres:***@") or err.startswith(
        "uptax serve: ledger postgresql://root:***@"
    )
    assert PASSWORD not in err
