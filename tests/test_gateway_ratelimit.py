"""Token buckets for requests and tokens per minute, in virtual time."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from runtime.gateway.errors import GatewayError
from runtime.gateway.ratelimit import RateLimiter, TokenBucket


def test_a_bucket_allows_a_burst_then_refills_continuously() -> None:
    bucket = TokenBucket.full(60, now=0.0)
    assert all(bucket.take(1, now=0.0) == 0.0 for _ in range(60))
    assert bucket.take(1, now=0.0) == pytest.approx(1.0)  # one a second
    assert bucket.take(1, now=0.5) == pytest.approx(0.5)  # nothing taken while waiting
    assert bucket.take(1, now=1.0) == 0.0
    assert bucket.wait_for(1, now=1000.0) == 0.0 and bucket.level == 60  # never above full


def test_a_charge_may_put_a_bucket_into_debt() -> None:
    bucket = TokenBucket.full(600, now=0.0)
    bucket.charge(900, now=0.0)
    assert bucket.level == -300
    assert bucket.wait_for(1, now=0.0) == pytest.approx(30.1)  # 301 tokens at 10 a second


async def test_requests_per_minute(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter()
    for _ in range(3):
        limiter.admit("acme", 3, None)
    with pytest.raises(GatewayError) as limited:
        limiter.admit("acme", 3, None)
    error = limited.value
    assert error.status == 429 and error.code == "rate_limit_exceeded"
    assert error.retry_after_s == 20.0 and error.headers() == {"retry-after": "20"}
    assert "3 requests per minute" in error.message
    limiter.admit("globex", 3, None)  # every tenant has its own buckets
    await trio.sleep(19.9)
    with pytest.raises(GatewayError):
        limiter.admit("acme", 3, None)
    await trio.sleep(0.1)
    limiter.admit("acme", 3, None)


async def test_tokens_per_minute_are_charged_after_the_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    limiter.admit("acme", None, 1000)
    limiter.charge_tokens("acme", 1600, 1000)  # the reply was bigger than the allowance
    with pytest.raises(GatewayError) as limited:
        limiter.admit("acme", None, 1000)
    assert limited.value.retry_after_s == 37.0  # 601 tokens at 1000/60 a second: 36.06 s
    assert "1000 tokens per minute" in limited.value.message
    await trio.sleep(36.1)
    limiter.admit("acme", None, 1000)


async def test_a_refused_request_is_not_counted(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter()
    limiter.charge_tokens("acme", 2000, 1000)
    for _ in range(5):
        with pytest.raises(GatewayError):
            limiter.admit("acme", 2, 1000)  # refused for tokens: no request taken
    await trio.sleep(61)
    limiter.admit("acme", 2, 1000)
    limiter.admit("acme", 2, 1000)


async def test_a_changed_limit_starts_a_fresh_bucket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter()
    limiter.admit("acme", 1, None)
    with pytest.raises(GatewayError):
        limiter.admit("acme", 1, None)
    limiter.admit("acme", 5, None)
