"""What a tenant may do, checked around each request: `Access` admits it (key, rate limits,
budget), shapes it (allowed models and levels, the per-request budget cap, the tenant's cache
scope) and charges it once answered (tokens against the rate limit, cost into the ledger).

Refusals are `GatewayError`s, so each API answers them in its own shape: 401 for the key, 403
for a model or levels the tenant may not use, 429 with `Retry-After` for a rate limit or a
spent budget (until the UTC day or month ends). A budget is checked before a request, against
what has been recorded: the request that crosses it is answered, the next ones are refused, so
a tenant overshoots by at most one request (`max_budget_usd_per_request` bounds that).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, NoReturn

import attrs
import structlog

from actors.config import LAST_RESORT_KINDS, Config, TenantConfig
from actors.messages import Reply, Request
from actors.state import FleetState, PeriodSpend
from runtime.gateway.errors import GatewayError
from runtime.gateway.ledger import Charge, Ledger, default_ledger_path, open_ledger, seconds_left
from runtime.gateway.ratelimit import RateLimiter, rate_limited
from runtime.gateway.tenants import Authenticator, Tenant

__all__ = ["Access", "open_access"]

_log = structlog.get_logger("runtime.gateway")


class Access:
    """The tenants' keys, rate limits, policies and ledger for one gateway."""

    def __init__(
        self,
        config: Config,
        authenticator: Authenticator,
        ledger: Ledger | None,
        fleet: FleetState | None = None,
    ) -> None:
        self.config = config
        self.authenticator = authenticator
        self.ledger = ledger
        self.limiter = RateLimiter()
        #: In a fleet, rate limits and spend are the fleet's (`admit_shared`), not this process's.
        self.fleet = fleet
        levels = config.levels
        kinds = {p.name: p.kind for p in config.providers}
        self._last_resort_levels = frozenset(
            level.name
            for level in levels
            if all(kinds[name] in LAST_RESORT_KINDS for name in level.providers)
        )
        #: Per tenant, the levels its requests may use (() for all).
        self._levels = {t.name: self._allowed_levels(t) for t in config.tenants}

    def _allowed_levels(self, tenant: TenantConfig) -> tuple[str, ...]:
        names = tenant.levels or tuple(level.name for level in self.config.levels)
        if not tenant.last_resort:
            names = tuple(name for name in names if name not in self._last_resort_levels)
        elif not tenant.levels:
            return ()
        return names

    # -- before the request -----------------------------------------------------------------

    def admit(self, headers: Mapping[str, str]) -> Tenant:
        """The caller, when its key is good and it is within its rate limits and budgets."""
        tenant = self.authenticator.authenticate(headers)
        policy = tenant.config
        if policy is None or self.fleet is not None:
            return tenant
        self._check_budget(policy)
        self.limiter.admit(tenant.name, policy.requests_per_minute, policy.tokens_per_minute)
        return tenant

    async def admit_shared(self, tenant: Tenant) -> float:
        """In a fleet: `tenant`'s budgets and rate limits across every instance, reserving the
        request's most cost (`max_budget_usd_per_request`, else nothing) against the budgets.
        The amount reserved, for `charge` or `release`; 0.0 outside a fleet."""
        policy, fleet = tenant.config, self.fleet
        if policy is None or fleet is None:
            return 0.0
        reserved = policy.max_budget_usd_per_request or 0.0
        spent = await fleet.reserve(
            tenant.name, reserved, policy.budget_usd_per_day, policy.budget_usd_per_month
        )
        if spent is not None:
            day = spent.limit == "day"
            budget = policy.budget_usd_per_day if day else policy.budget_usd_per_month
            self._refuse_budget(policy, spent.limit, budget or 0.0)
        limited = await fleet.admit(
            tenant.name, policy.requests_per_minute, policy.tokens_per_minute
        )
        if limited is not None:
            await fleet.settle(tenant.name, reserved, 0.0)
            per_minute = (
                policy.requests_per_minute
                if limited.limit == "requests"
                else policy.tokens_per_minute
            )
            raise rate_limited(
                tenant.name, f"{per_minute} {limited.limit} per minute", limited.wait_s
            )
        return reserved

    async def release(self, tenant: Tenant, reserved: float, request_id: str) -> None:
        """Give back what `admit_shared` reserved for a request that was not answered."""
        if self.fleet is not None and reserved:
            await self.fleet.settle(tenant.name, reserved, 0.0, request_id)

    def _check_budget(self, policy: TenantConfig) -> None:
        if self.ledger is None or (
            policy.budget_usd_per_day is None and policy.budget_usd_per_month is None
        ):
            return
        spend = self.ledger.spent(policy.name)
        for period, spent, budget in (
            ("month", spend.month_usd, policy.budget_usd_per_month),
            ("day", spend.day_usd, policy.budget_usd_per_day),
        ):
            if budget is not None and spent >= budget:
                self._refuse_budget(policy, period, budget)

    def _refuse_budget(self, policy: TenantConfig, period: str, budget: float) -> NoReturn:
        day_left, month_left = seconds_left(
            self.ledger.now() if self.ledger is not None else time.time()
        )
        wait = month_left if period == "month" else day_left
        raise GatewayError(
            429,
            f"tenant {policy.name!r} has spent its budget of ${budget:g} this {period} "
            f"(UTC); it renews in {wait / 3600:.1f} h",
            code="budget_exceeded",
            retry_after_s=float(math.ceil(wait)),
        )

    def check_models(self, tenant: Tenant, request: Request) -> None:
        """A 403 when `request`, as the client sent it, names a model (or alias) `tenant` may
        not ask for."""
        policy = tenant.config
        if policy is None or not policy.models:
            return
        asked = [request.model] if request.model is not None else list(request.models)
        for model in asked:
            if model not in policy.models:
                raise GatewayError(
                    403,
                    f"tenant {tenant.name!r} may not use model {model!r} "
                    f"(allowed: {', '.join(policy.models)})",
                    param="model",
                    code="model_not_allowed",
                )

    def shape(self, tenant: Tenant, request: Request) -> Request:
        """The routed `request` within `tenant`'s policy: the levels it may use (a 403 when its
        pinned model is served at none of them), the budget cap, the tenant's cache scope."""
        policy = tenant.config
        if policy is None:
            return request
        changes: dict[str, Any] = {
            "context": {**(request.context or {}), "tenant": tenant.name},
            "levels": self._levels[tenant.name],
        }
        if policy.strategy is not None:
            changes["strategy"] = policy.strategy
        cap = policy.max_budget_usd_per_request
        if cap is not None and (request.budget_usd is None or request.budget_usd > cap):
            changes["budget_usd"] = cap
        shaped = attrs.evolve(request, **changes)
        self._check_levels(tenant, shaped)
        return shaped

    def _check_levels(self, tenant: Tenant, request: Request) -> None:
        """A 403 when `request` pins a model that no level `tenant` may use offers."""
        levels = request.levels
        if tenant.config is None or not levels or request.model is None:
            return
        served = {
            name
            for level in self.config.levels
            if level.name in levels
            for name in level.providers
            if request.model in self.config.provider(name).models
        }
        if not served:
            raise GatewayError(
                403,
                f"model {request.model!r} is not served at the levels tenant {tenant.name!r} "
                f"may use ({', '.join(levels)})",
                param="model",
                code="level_not_allowed",
            )

    # -- reading ------------------------------------------------------------------------------

    def tenant_spend(self) -> list[dict[str, Any]]:
        """Each tenant's spend this UTC day and month against its budgets ([] with no
        tenants): what the dashboard shows. In a fleet whose store is up, the fleet's (read
        every `sync_interval_s`, reservations of requests in flight included); else what this
        instance's ledger has seen."""
        spent = []
        for policy in self.config.tenants:
            day, month = self._spent(policy.name)
            spent.append(
                {
                    "name": policy.name,
                    "spend_day_usd": round(day, 8),
                    "budget_day_usd": policy.budget_usd_per_day,
                    "spend_month_usd": round(month, 8),
                    "budget_month_usd": policy.budget_usd_per_month,
                }
            )
        return spent

    def _spent(self, tenant: str) -> tuple[float, float]:
        seen = self.fleet.seen_spend(tenant) if self.fleet is not None else None
        if seen is not None:
            return seen
        if self.ledger is None:
            return 0.0, 0.0
        spend = self.ledger.spent(tenant)
        return spend.day_usd, spend.month_usd

    async def ledger_totals(self) -> dict[str, PeriodSpend]:
        """Every tenant's spend this UTC day and month as the ledger has it, read again from
        its store (what the fleet's spend counters are seeded from)."""
        if self.ledger is None:
            return {}
        await self.ledger.refresh()
        totals = {}
        for policy in self.config.tenants:
            spend = self.ledger.spent(policy.name)
            totals[policy.name] = PeriodSpend(
                spend.day, spend.month, spend.day_usd, spend.month_usd
            )
        return totals

    # -- after the reply ----------------------------------------------------------------------

    async def charge(
        self, tenant: Tenant, reply: Reply, request_id: str, reserved: float = 0.0
    ) -> None:
        """Count `reply`'s tokens against the rate limit and its cost in the ledger (in a
        fleet: in the shared counters too, in place of what was `reserved`)."""
        policy = tenant.config
        tokens = reply.usage.input_tokens + reply.usage.output_tokens
        if policy is not None and self.fleet is not None:
            await self.fleet.charge_tokens(tenant.name, tokens, policy.tokens_per_minute)
            await self.fleet.settle(tenant.name, reserved, reply.cost_usd, request_id)
        elif policy is not None:
            self.limiter.charge_tokens(tenant.name, tokens, policy.tokens_per_minute)
        if self.ledger is None:
            return
        charge = Charge(
            tenant=tenant.name,
            request_id=request_id,
            model=reply.model,
            provider=reply.provider,
            level=reply.level,
            input_tokens=reply.usage.input_tokens,
            output_tokens=reply.usage.output_tokens,
            cost_usd=reply.cost_usd,
        )
        try:
            await self.ledger.record(charge)
        except Exception as exc:  # a full disk must not turn an answered request into an error
            _log.error("ledger_write_failed", tenant=tenant.name, error=repr(exc))


@contextlib.asynccontextmanager
async def open_access(
    config: Config,
    host: str,
    env: Mapping[str, str] | None = None,
    fleet: FleetState | None = None,
) -> AsyncIterator[Access]:
    """The gateway's `Access` for `config` on `host`, its ledger open while the block runs (when
    there are tenants, or `[gateway] ledger` names a file). Says at start who may call."""
    authenticator = Authenticator.from_config(config, host, os.environ if env is None else env)
    async with contextlib.AsyncExitStack() as stack:
        ledger: Ledger | None = None
        if config.tenants or config.gateway.ledger is not None:
            location = config.gateway.ledger or default_ledger_path()
            ledger = await stack.enter_async_context(open_ledger(location))
        say = _log.warning if authenticator.mode == "open" else _log.info
        say(
            "gateway_access",
            mode=authenticator.mode,
            callers=authenticator.describe(),
            ledger=None if ledger is None else ledger.store.location,
        )
        access = Access(config, authenticator, ledger, fleet)
        if fleet is not None:
            stack.enter_context(_joined(access, fleet))
            await fleet.seed_spend()
        yield access


@contextlib.contextmanager
def _joined(access: Access, fleet: FleetState) -> Iterator[None]:
    """While the block runs, `fleet` reads the tenants' spend for the dashboard and seeds its
    spend counters from `access`'s ledger when the store has lost them."""
    fleet.tenants = tuple(policy.name for policy in access.config.tenants)
    if access.ledger is not None:
        fleet.spend_source = access.ledger_totals
    try:
        yield
    finally:
        fleet.tenants, fleet.spend_source = (), None
