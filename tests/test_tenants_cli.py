"""`uptax tenants list|spend|add-key`, and the `[[tenants]]` config they read."""

from __future__ import annotations

import copy
import hashlib
import io
import re
import time
from pathlib import Path
from typing import Any

import pytest
from support import BASE

from actors.config import load_config, parse_config
from actors.errors import ConfigError
from runtime import cli
from runtime.gateway import tenants_cli
from runtime.gateway.ledger import Charge, LedgerFile
from runtime.gateway.tenants import Authenticator

DIGEST = hashlib.sha256(b"sk-acme").hexdigest()
CONFIG = f"""
[gateway]
ledger = "unused.sqlite3"

[[providers]]
name = "openai"
kind = "simulated"
models = ["gpt-4o"]

[[providers]]
name = "cache"
kind = "cache"

[[levels]]
name = "primary"
providers = ["openai"]

[[levels]]
name = "last_resort"
providers = ["cache"]

[[tenants]]
name = "acme"
api_key_sha256 = ["{DIGEST}"]
budget_usd_per_day = 5
budget_usd_per_month = 100
requests_per_minute = 60
models = ["uptax/auto", "gpt-4o"]
levels = ["primary"]
last_resort = false

[[tenants]]
name = "globex"
api_key_env = "GLOBEX_KEY"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "uptax.toml"
    path.write_text(CONFIG)
    return path


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = tenants_cli.main(list(argv), out)
    return code, out.getvalue()


def test_add_key_prints_a_key_and_the_digest_to_paste(tmp_path: Path) -> None:
    code, text = run("add-key", "acme")
    assert code == 0
    key = re.search(r"^key:\s+(\S+)$", text, re.M)
    digest = re.search(r'^api_key_sha256 = \["([0-9a-f]{64})"\]$', text, re.M)
    assert key and digest and hashlib.sha256(key[1].encode()).hexdigest() == digest[1]
    data: dict[str, Any] = copy.deepcopy(BASE)
    data["tenants"] = [{"name": "acme", "api_key_sha256": [digest[1]]}]
    authenticator = Authenticator.from_config(parse_config(data), "127.0.0.1", {})
    assert authenticator.authenticate({"authorization": f"Bearer {key[1]}"}).name == "acme"
    assert run("add-key", "acme")[1] != text  # a new key each time


def test_list_shows_the_policies_and_never_a_digest(config_file: Path) -> None:
    code, text = run("list", "--config", str(config_file))
    assert code == 0
    acme = next(line for line in text.splitlines() if line.startswith("acme"))
    for part in ("1 digest(s)", "day=$5", "month=$100", "rpm=60", "uptax/auto, gpt-4o"):
        assert part in acme
    assert "primary (no last resort)" in acme
    globex = next(line for line in text.splitlines() if line.startswith("globex"))
    assert "+$GLOBEX_KEY" in globex and "all / all" in globex
    assert DIGEST not in text


def test_list_without_tenants_says_how_the_gateway_is_reached() -> None:
    code, text = run("list")  # the demo config
    assert code == 0 and "UPTAX_MASTER_KEY" in text


def test_spend_reads_the_ledger(config_file: Path, tmp_path: Path) -> None:
    ledger_path = tmp_path / "ledger.sqlite3"
    code, text = run("spend", "--config", str(config_file), "--ledger", str(ledger_path))
    assert code == 0 and "no ledger" in text
    ledger = LedgerFile(ledger_path)
    now = time.time()
    for tenant, cost in (("acme", 1.25), ("acme", 0.5), ("initech", 0.01)):
        ledger.record(Charge(tenant, "r", "gpt-4o", "openai", "primary", 1, 2, cost), now)
    ledger.close()
    code, text = run("spend", "--config", str(config_file), "--ledger", str(ledger_path))
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:]}
    assert rows["acme"][:2] == ["2", "1.7500"] and "/ 5" in " ".join(rows["acme"])
    assert rows["globex"][:2] == ["0", "0.0000"]
    assert rows["initech"][:2] == ["1", "0.0100"]  # in the ledger, no longer configured


def test_the_command_is_registered_and_a_bad_config_is_exit_2(tmp_path: Path) -> None:
    assert "tenants" in cli.COMMANDS and "tenants list|spend" in cli.USAGE
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.replace("requests_per_minute = 60", "requests_per_minute = 0"))
    assert cli.main(["tenants", "list", "--config", str(bad)]) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"api_key_sha256": []}, r"tenants\[0\]: api_key_sha256=missing"),
        ({"api_key_sha256": ["sk-oops"]}, r"tenants\[0\]: api_key_sha256=entry 0 is not a"),
        ({"levels": ["nope"]}, r"tenants\[0\]\.levels: 'nope' is not a configured level"),
        ({"name": "globex"}, r"tenants\[1\]\.name: 'globex' is defined twice"),
        (
            {"levels": ["last_resort"], "last_resort": False},
            r"tenants\[0\]\.levels: with last_resort = false no level is left",
        ),
        ({"tokens_per_minute": 0}, r"tenants\[0\]: tokens_per_minute=0 must be >= 1"),
        ({"budget_usd_per_month": -1}, r"tenants\[0\]: budget_usd_per_month=-1.0 must be >= 0"),
        ({"last_resort": "no"}, r"tenants\[0\]\.last_resort: 'no' is not true or false"),
        ({"colour": "red"}, r"tenants\[0\]: unknown key\(s\) colour"),
    ],
)
def test_a_bad_tenant_is_named_in_the_error(change: dict[str, Any], message: str) -> None:
    data: dict[str, Any] = copy.deepcopy(BASE)
    data["tenants"] = [
        {"name": "acme", "api_key_sha256": [DIGEST], **change},
        {"name": "globex", "api_key_env": "GLOBEX_KEY"},
    ]
    with pytest.raises(ConfigError, match=message) as error:
        parse_config(data)
    assert "sk-oops" not in str(error.value)


def test_the_config_file_loads(config_file: Path) -> None:
    config = load_config(config_file)
    acme, globex = config.tenants
    assert (acme.levels, acme.last_resort, acme.budget_usd_per_day) == (("primary",), False, 5.0)
    assert (globex.api_key_env, globex.models, globex.last_resort) == ("GLOBEX_KEY", (), True)
    assert (config.gateway.ledger, config.gateway.admin_key_env) == (
        "unused.sqlite3",
        "UPTAX_ADMIN_KEY",
    )
