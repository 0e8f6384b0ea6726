"""The spend ledger: SQLite in WAL mode behind `trio.to_thread`, schema versions applied once,
spend per tenant per UTC day and month, kept across reopening."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
import trio

from runtime.gateway.ledger import (
    MIGRATIONS,
    Charge,
    Ledger,
    LedgerFile,
    default_ledger_path,
    periods,
    seconds_left,
)


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def charge(tenant: str, cost: float, model: str = "gpt-4o") -> Charge:
    return Charge(tenant, "chatcmpl-1", model, "openai", "primary", 10, 20, cost)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_periods_and_their_ends_are_utc() -> None:
    assert periods(at("2026-12-31T23:59:30")) == ("2026-12-31", "2026-12")
    assert seconds_left(at("2026-12-31T23:59:30")) == (30.0, 30.0)  # December ends with the year
    day, month = seconds_left(at("2026-02-10T12:00:00"))
    assert day == 12 * 3600 and month == (18 * 24 + 12) * 3600


def test_the_file_is_in_wal_mode_and_at_the_latest_schema(tmp_path: Path) -> None:
    file = LedgerFile(tmp_path / "sub" / "ledger.sqlite3")
    assert file.version == len(MIGRATIONS)
    file.close()
    db = sqlite3.connect(tmp_path / "sub" / "ledger.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
    again = LedgerFile(tmp_path / "sub" / "ledger.sqlite3")  # migrations are not run twice
    assert again.version == len(MIGRATIONS)
    again.close()


def test_an_older_schema_is_migrated_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.sqlite3"
    LedgerFile(path).close()
    later = (*MIGRATIONS, "ALTER TABLE requests ADD COLUMN outcome TEXT")
    monkeypatch.setattr("runtime.gateway.ledger.MIGRATIONS", later)
    file = LedgerFile(path)
    assert file.version == len(later)
    columns = [row[1] for row in file._db.execute("PRAGMA table_info(requests)")]
    assert "outcome" in columns
    file.close()


def test_spend_is_summed_per_tenant_for_the_day_and_the_month(tmp_path: Path) -> None:
    file = LedgerFile(tmp_path / "ledger.sqlite3")
    file.record(charge("acme", 1.0), at("2026-11-30T10:00:00"))  # last month: not counted
    file.record(charge("acme", 0.25), at("2026-12-01T10:00:00"))
    file.record(charge("acme", 0.5), at("2026-12-02T09:00:00"))
    file.record(charge("acme", 0.125), at("2026-12-02T10:00:00"))
    file.record(charge("globex", 2.0), at("2026-12-02T11:00:00"))
    spend = file.spend(at("2026-12-02T12:00:00"))
    file.close()
    assert (spend["acme"].day_usd, spend["acme"].month_usd) == (0.625, 0.875)
    assert spend["acme"].requests_today == 2
    assert (spend["globex"].day_usd, spend["globex"].month_usd) == (2.0, 2.0)


async def test_the_gateway_ledger_keeps_spend_across_reopening(tmp_path: Path) -> None:
    clock = Clock(at("2026-12-02T23:00:00"))
    path = tmp_path / "ledger.sqlite3"
    ledger = await Ledger.open(path, clock)
    await ledger.record(charge("acme", 0.5))
    await ledger.record(charge("acme", 0.25))
    assert ledger.spent("acme").day_usd == 0.75
    assert ledger.spent("nobody").month_usd == 0.0
    await ledger.aclose()
    reopened = await Ledger.open(path, clock)
    assert (reopened.spent("acme").day_usd, reopened.spent("acme").requests_today) == (0.75, 2)
    clock.now = at("2026-12-03T00:00:01")  # a new day, the same month
    assert (reopened.spent("acme").day_usd, reopened.spent("acme").month_usd) == (0.0, 0.75)
    clock.now = at("2027-01-01T00:00:01")  # a new month
    assert reopened.spent("acme").month_usd == 0.0
    await reopened.aclose()


async def test_writes_from_many_tasks_are_all_kept(tmp_path: Path) -> None:
    ledger = await Ledger.open(tmp_path / "ledger.sqlite3")
    async with trio.open_nursery() as nursery:
        for index in range(50):
            nursery.start_soon(ledger.record, charge(f"t{index % 5}", 0.01))
    spend = await trio.to_thread.run_sync(ledger.file.spend, ledger.now())
    assert sorted(s.requests_today for s in spend.values()) == [10] * 5
    assert all(ledger.spent(f"t{i}").day_usd == pytest.approx(0.1) for i in range(5))
    await ledger.aclose()


def test_the_default_path_follows_xdg_state_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert default_ledger_path() == Path("/srv/state/uptax/ledger.sqlite3")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_ledger_path() == Path.home() / ".local/state/uptax/ledger.sqlite3"
