"""`Access`: a tenant's budgets and policy applied to a request, with the ledger on a fixed
clock and the rate limits in virtual time."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from support import BASE

from actors.config import parse_config
from actors.messages import Reply, Request, Usage
from runtime.gateway.errors import GatewayError
from runtime.gateway.ledger import Charge, Ledger
from runtime.gateway.policy import Access
from runtime.gateway.tenants import Authenticator

KEY = {"authorization": "Bearer sk-acme"}
NOW = dt.datetime(2026, 12, 30, 12, 0, tzinfo=dt.UTC).timestamp()


async def access_for(tmp_path: Path, **acme: Any) -> Access:
    data = copy.deepcopy(BASE)
    digest = hashlib.sha256(b"sk-acme").hexdigest()
    data["tenants"] = [{"name": "acme", "api_key_sha256": [digest], **acme}]
    config = parse_config(data)
    ledger = await Ledger.open(tmp_path / "ledger.sqlite3", clock=lambda: NOW)
    return Access(config, Authenticator.from_config(config, "127.0.0.1", {}), ledger)


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[list[Access]]:
    made: list[Access] = []
    yield made
    for access in made:
        assert access.ledger is not None
        await access.ledger.aclose()


def reply(cost: float, tokens: int = 100) -> Reply:
    return Reply("hi", "openai", "gpt-4o", "primary", False, (), 1.0, cost, Usage(tokens, tokens))


async def test_a_spent_month_is_refused_until_the_month_ends(
    tmp_path: Path, opened: list[Access]
) -> None:
    access = await access_for(tmp_path, budget_usd_per_month=1.0, budget_usd_per_day=10.0)
    opened.append(access)
    tenant = access.admit(KEY)
    await access.charge(tenant, reply(0.6), "r1")
    access.admit(KEY)
    await access.charge(tenant, reply(0.6), "r2")  # the request that crosses it is answered
    with pytest.raises(GatewayError) as refused:
        access.admit(KEY)
    error = refused.value
    assert (error.status, error.code) == (429, "budget_exceeded")
    assert error.retry_after_s == 36 * 3600  # to 2027-01-01T00:00Z
    assert "$1 this month" in error.message


async def test_a_spent_day_says_when_the_day_ends(tmp_path: Path, opened: list[Access]) -> None:
    access = await access_for(tmp_path, budget_usd_per_day=0.5)
    opened.append(access)
    assert access.ledger is not None
    await access.ledger.record(Charge("acme", "r", "gpt-4o", "openai", "primary", 1, 1, 0.5))
    with pytest.raises(GatewayError) as refused:
        access.admit(KEY)
    assert refused.value.retry_after_s == 12 * 3600


async def test_a_request_is_shaped_by_its_tenants_policy(
    tmp_path: Path, opened: list[Access]
) -> None:
    access = await access_for(tmp_path, max_budget_usd_per_request=0.01, last_resort=False)
    opened.append(access)
    tenant = access.admit(KEY)
    asked = Request(prompt="hi", budget_usd=5.0, context={"tenant": "globex", "team": "a"})
    shaped = access.shape(tenant, asked)
    assert shaped.context == {"tenant": "acme", "team": "a"}  # a client cannot pick a scope
    assert shaped.budget_usd == 0.01
    assert shaped.levels == ("primary", "secondary", "emergency")
    assert access.shape(tenant, Request(prompt="hi", budget_usd=0.001)).budget_usd == 0.001
    assert shaped.strategy is None  # the levels' own


async def test_a_tenant_s_strategy_overrides_the_levels(
    tmp_path: Path, opened: list[Access]
) -> None:
    access = await access_for(tmp_path, strategy="race")
    opened.append(access)
    assert access.shape(access.admit(KEY), Request(prompt="hi")).strategy == "race"


async def test_tokens_are_charged_against_the_rate_limit(
    tmp_path: Path, opened: list[Access], autojump_clock: trio.testing.MockClock
) -> None:
    access = await access_for(tmp_path, tokens_per_minute=150)
    opened.append(access)
    tenant = access.admit(KEY)
    await access.charge(tenant, reply(0.0, tokens=100), "r1")  # 200 tokens of 150
    with pytest.raises(GatewayError) as limited:
        access.admit(KEY)
    assert limited.value.code == "rate_limit_exceeded"
    await trio.sleep(limited.value.retry_after_s or 0)
    access.admit(KEY)
    assert access.ledger is not None and access.ledger.spent("acme").requests_today == 1
