"""`uptax tenants list|spend|add-key`: the gateway's tenants as configured, what they have spent
(from the ledger), and a new API key with the SHA-256 digest to paste into the config.

Keys are never stored: `add-key` prints the key once, for the tenant, and its digest, for the
config. `list` shows how many keys a tenant has, never a digest or an environment value.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from actors.config import Config, TenantConfig, load_config
from actors.errors import ConfigError
from runtime.demo import default_config_path
from runtime.gateway.ledger import (
    LedgerError,
    Spend,
    default_ledger_path,
    is_postgres_url,
    open_store,
    periods,
)
from runtime.gateway.tenants import new_key

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "uptax tenants") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Manage the gateway's tenants, their keys and their spend."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("list", "the configured tenants and their policies"),
        ("spend", "each tenant's spend today and this month (UTC), from the ledger"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--config", help="config file (default: the shipped demo config)")
        if name == "spend":
            command.add_argument(
                "--ledger",
                help="ledger file or postgresql:// URL (default: [gateway] ledger)",
            )
    add_key = commands.add_parser("add-key", help="print a new API key and its SHA-256 digest")
    add_key.add_argument("tenant", help="the tenant the key is for (for the config snippet)")
    return parser


def _limits(tenant: TenantConfig) -> str:
    parts = []
    for label, value, unit in (
        ("day", tenant.budget_usd_per_day, "$"),
        ("month", tenant.budget_usd_per_month, "$"),
        ("request", tenant.max_budget_usd_per_request, "$"),
        ("rpm", tenant.requests_per_minute, ""),
        ("tpm", tenant.tokens_per_minute, ""),
    ):
        if value is not None:
            parts.append(f"{label}={unit}{value:g}")
    return " ".join(parts) or "-"


def list_tenants(config: Config, out: TextIO) -> None:
    if not config.tenants:
        out.write("no tenants configured: the gateway takes UPTAX_MASTER_KEY, or on loopback no "
                  "key at all\n")
        return
    out.write(f"{'tenant':<20} {'keys':<16} {'limits':<44} models / levels\n")
    for tenant in config.tenants:
        keys = f"{len(tenant.api_key_sha256)} digest(s)"
        if tenant.api_key_env:
            keys += f" +${tenant.api_key_env}"
        models = ", ".join(tenant.models) or "all"
        levels = ", ".join(tenant.levels) or "all"
        if not tenant.last_resort:
            levels += " (no last resort)"
        out.write(f"{tenant.name:<20} {keys:<16} {_limits(tenant):<44} {models} / {levels}\n")


def show_spend(config: Config, location: str, out: TextIO, now: float) -> int:
    """The spend table from the ledger at `location` (an SQLite path or a PostgreSQL URL)."""
    if not is_postgres_url(location) and not Path(location).exists():
        out.write(f"no ledger at {location} yet: nothing has been spent\n")
        return 0
    try:
        ledger = open_store(location)
        try:
            spend = ledger.spend(now)
        finally:
            ledger.close()
    except LedgerError as exc:  # its message names the ledger without a password
        print(f"uptax tenants: {exc}", file=sys.stderr)
        return 1
    day, month = periods(now)
    budgets = {t.name: t for t in config.tenants}
    names = [t.name for t in config.tenants] + sorted(set(spend) - set(budgets))
    out.write(f"ledger {ledger.location}, UTC day {day}, month {month}\n")
    out.write(f"{'tenant':<20} {'requests today':>14} {'today USD':>18} {'month USD':>18}\n")
    for name in names:
        row = spend.get(name, Spend(day, month))
        tenant = budgets.get(name)
        day_budget = _of(tenant.budget_usd_per_day if tenant else None)
        month_budget = _of(tenant.budget_usd_per_month if tenant else None)
        out.write(
            f"{name:<20} {row.requests_today:>14} {row.day_usd:>9.4f}{day_budget:<9} "
            f"{row.month_usd:>9.4f}{month_budget:<9}\n"
        )
    return 0


def _of(budget: float | None) -> str:
    return "" if budget is None else f" / {budget:g}"


def add_key(tenant: str, out: TextIO) -> None:
    key, digest = new_key()
    out.write(
        f"key:    {key}\n"
        f"sha256: {digest}\n\n"
        "Give the key to the tenant: it is shown once and stored nowhere. Add the digest to\n"
        f'the tenant\'s table in the config ([[tenants]] name = "{tenant}"):\n\n'
        f'api_key_sha256 = ["{digest}"]\n'
    )


def main(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(list(argv))
    if args.command == "add-key":
        add_key(args.tenant, out)
        return 0
    try:
        config = load_config(args.config or default_config_path())
    except ConfigError as exc:
        print(f"uptax tenants: {exc}", file=sys.stderr)
        return 2
    if args.command == "list":
        list_tenants(config, out)
        return 0
    location = str(args.ledger or config.gateway.ledger or default_ledger_path())
    return show_spend(config, location, out, time.time())


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
