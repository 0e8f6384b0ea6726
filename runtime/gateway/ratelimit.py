"""Per-tenant rate limits: token buckets for requests and tokens per minute.

Each bucket holds a minute's allowance and refills continuously on `trio.current_time()`, so a
burst of up to the whole allowance is taken at once and tests run in virtual time. A request
takes one from the request bucket before it runs. Its tokens are known only after it has run:
they are charged then, and the bucket may go into debt; while it is in debt, new requests get
a 429 whose `Retry-After` says when the debt is paid off.
"""

from __future__ import annotations

import math

import attrs
import trio

from runtime.gateway.errors import GatewayError

__all__ = ["RateLimiter", "TokenBucket", "rate_limited"]


@attrs.define
class TokenBucket:
    """`per_minute` units, refilled at `per_minute / 60` a second up to `per_minute`."""

    per_minute: float
    level: float
    updated: float

    @classmethod
    def full(cls, per_minute: float, now: float) -> TokenBucket:
        return cls(per_minute, per_minute, now)

    def _refill(self, now: float) -> None:
        rate = self.per_minute / 60.0
        self.level = min(self.per_minute, self.level + (now - self.updated) * rate)
        self.updated = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until `amount` can be taken (0.0: now)."""
        self._refill(now)
        missing = amount - self.level
        return 0.0 if missing <= 0 else missing * 60.0 / self.per_minute

    def take(self, amount: float, now: float) -> float:
        """Take `amount` when it is there and return 0.0; else take nothing and return the
        seconds until it will be."""
        wait = self.wait_for(amount, now)
        if wait == 0.0:
            self.level -= amount
        return wait

    def charge(self, amount: float, now: float) -> None:
        """Take `amount` whatever the level (the bucket may go into debt)."""
        self._refill(now)
        self.level -= amount


class RateLimiter:
    """The buckets of every tenant with limits, created on first use."""

    def __init__(self) -> None:
        self._requests: dict[str, TokenBucket] = {}
        self._tokens: dict[str, TokenBucket] = {}

    def admit(
        self, tenant: str, requests_per_minute: int | None, tokens_per_minute: int | None
    ) -> None:
        """Count one request of `tenant`, or raise a 429 with `Retry-After` when either limit
        is reached (then nothing is counted)."""
        now = trio.current_time()
        if tokens_per_minute is not None:
            tokens = self._bucket(self._tokens, tenant, tokens_per_minute, now)
            wait = tokens.wait_for(1.0, now)  # any allowance left: the request's size is unknown
            if wait > 0:
                raise rate_limited(tenant, f"{tokens_per_minute} tokens per minute", wait)
        if requests_per_minute is not None:
            requests = self._bucket(self._requests, tenant, requests_per_minute, now)
            wait = requests.take(1.0, now)
            if wait > 0:
                raise rate_limited(tenant, f"{requests_per_minute} requests per minute", wait)

    def charge_tokens(self, tenant: str, tokens: int, tokens_per_minute: int | None) -> None:
        """Charge the tokens a request of `tenant` used."""
        if tokens_per_minute is not None and tokens > 0:
            now = trio.current_time()
            self._bucket(self._tokens, tenant, tokens_per_minute, now).charge(tokens, now)

    @staticmethod
    def _bucket(
        buckets: dict[str, TokenBucket], tenant: str, per_minute: int, now: float
    ) -> TokenBucket:
        bucket = buckets.get(tenant)
        if bucket is None or bucket.per_minute != per_minute:
            bucket = buckets[tenant] = TokenBucket.full(per_minute, now)
        return bucket


def rate_limited(tenant: str, limit: str, wait_s: float) -> GatewayError:
    return GatewayError(
        429,
        f"tenant {tenant!r} is over its rate limit of {limit}; retry in {wait_s:.1f} s",
        code="rate_limit_exceeded",
        retry_after_s=float(math.ceil(wait_s)),  # never earlier than it would succeed
    )
