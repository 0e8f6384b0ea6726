"""What a reply's headers say besides its body: how long to wait, and how much quota is left."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx

__all__ = ["QUOTA_HEADERS", "parse_retry_after", "quota_remaining"]


def parse_retry_after(
    headers: Mapping[str, str] | httpx.Headers, *, now: datetime | None = None
) -> float | None:
    """Seconds the provider asked us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` is either delta-seconds or an HTTP date; a date is measured against `now`,
    else the reply's own ``Date`` header (the server's clock, immune to our skew), else our clock.
    A date in the past means 0. Unparseable values are ignored (None).
    """
    headers = httpx.Headers(headers)
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            value = float(milliseconds)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    when = _http_date(raw)
    if when is None:
        return None
    reference = now or _http_date(headers.get("date", "")) or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def _http_date(value: str) -> datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


#: (remaining, limit) header pairs; the quota left is the scarcest of them.
QUOTA_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-limit-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens"),
    ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-limit"),
    ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-limit"),
    ("anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-input-tokens-limit"),
    ("anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-output-tokens-limit"),
)


def quota_remaining(headers: Mapping[str, str] | httpx.Headers) -> float | None:
    """Fraction (0..1) of the rate-limit quota left, or None when the reply carries no such headers."""
    # One pass over the headers, not one per name looked up (httpx.Headers.get scans them all);
    # items() joins a repeated header as get() does.
    found = dict(
        (headers if isinstance(headers, httpx.Headers) else httpx.Headers(headers)).items()
    )
    fractions: list[float] = []
    for remaining_name, limit_name in QUOTA_HEADERS:
        remaining, limit = found.get(remaining_name), found.get(limit_name)
        if remaining is None or limit is None:
            continue
        try:
            fraction = float(remaining) / float(limit)
        except (ValueError, ZeroDivisionError):
            continue
        if math.isfinite(fraction):
            fractions.append(min(1.0, max(0.0, fraction)))
    return min(fractions) if fractions else None
