"""Classification of HTTP replies: which `FailureKind` a non-2xx status and its body mean.

`STATUS_RULES` decides from the status, then the body's wording; the reply's headers add the wait
(Retry-After) and the quota left. The provider's own words are redacted and shortened before they
reach a `ProviderError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs
import httpx

from actors.adapters.headers import parse_retry_after, quota_remaining
from actors.errors import FailureKind, ProviderError
from actors.secrets import redact_text

__all__ = [
    "STATUS_RULES",
    "StatusRule",
    "classify_status",
    "error_detail",
    "in_band_kind",
    "status_kind",
]

#: Longest provider error text carried into a ProviderError message.
_DETAIL_LIMIT = 300

#: How each provider words "the prompt does not fit the model's context window".
CONTEXT_TOO_LONG_WORDING = re.compile(
    "|".join(
        [
            r"context_length_exceeded",  # OpenAI error code
            r"context[ _]length",  # OpenAI / vLLM / Mistral / Ollama: "maximum context length"
            r"context[ _]window",
            r"prompt is too long",  # Anthropic: "prompt is too long: 208656 tokens > 200000 maximum"
            r"exceed context limit",  # Anthropic: "input length and `max_tokens` exceed context limit"
            r"input token count .* exceeds the maximum",  # Gemini
            r"too many tokens",
            r"too large for model",  # Mistral
            r"`inputs` tokens \+ `max_new_tokens` must be",  # Hugging Face TGI
        ]
    ),
    re.IGNORECASE,
)

#: Gemini answers a bad key with 400 INVALID_ARGUMENT rather than 401, and says which in
#: ``error.details[].reason`` ("API_KEY_INVALID") whatever its message ("API key not valid",
#: "API key expired. Please renew the API key.", "API Key not found. ...").
AUTH_WORDING = re.compile(r"API_KEY_INVALID|API key not valid|invalid[ _]api[ _]key", re.IGNORECASE)

#: A spent account: not a rate limit (waiting does not help) but an operator's problem, like a
#: bad key. (Gemini words some per-minute limits "check your plan and billing details" too, so
#: that phrase alone is not a sign.)
BILLING_WORDING = re.compile(
    "|".join(
        [
            r"insufficient_quota",  # OpenAI 429 code: "You exceeded your current quota, ..."
            r"billing_hard_limit_reached",  # OpenAI 400 code
            r"billing_not_active",  # OpenAI 429 code
            r"credit balance is too low",  # Anthropic 400: "Your credit balance is too low to ..."
            r"billing_error",  # Anthropic error type
        ]
    ),
    re.IGNORECASE,
)

#: "This model cannot take that parameter or value": another model can, so the request falls back.
UNSUPPORTED_WORDING = re.compile(
    "|".join(
        [
            r"unsupported_parameter",  # OpenAI: "Unsupported parameter: 'max_tokens' is not ..."
            r"unsupported_value",  # OpenAI: "Unsupported value: 'temperature' does not support ..."
            r"unsupported (?:parameter|value)",
            r"cannot both be specified for this model",  # Anthropic: temperature and top_p
            r"temperature: range",  # Anthropic: "temperature: range: 0..1"
            r"is not enabled for models/",  # Gemini: "Developer instruction is not enabled for ..."
            r"is not supported (?:for|by|with|on) this model",
        ]
    ),
    re.IGNORECASE,
)


@attrs.frozen
class StatusRule:
    """Statuses in [low, high] whose body matches `wording` (any body when None) are `kind`."""

    low: int
    high: int
    kind: FailureKind
    wording: re.Pattern[str] | None = None

    def matches(self, status: int, detail: str) -> bool:
        if not self.low <= status <= self.high:
            return False
        return self.wording is None or self.wording.search(detail) is not None


#: First match wins. Anything not listed (1xx, 3xx) is an unexpected reply: MALFORMED.
STATUS_RULES: tuple[StatusRule, ...] = (
    StatusRule(402, 402, FailureKind.BILLING),
    StatusRule(400, 429, FailureKind.BILLING, BILLING_WORDING),
    StatusRule(401, 401, FailureKind.AUTH),
    StatusRule(403, 403, FailureKind.AUTH),
    StatusRule(429, 429, FailureKind.RATE_LIMITED),
    StatusRule(408, 408, FailureKind.TIMEOUT),
    StatusRule(400, 400, FailureKind.AUTH, AUTH_WORDING),
    StatusRule(400, 400, FailureKind.UNSUPPORTED, UNSUPPORTED_WORDING),
    StatusRule(422, 422, FailureKind.UNSUPPORTED, UNSUPPORTED_WORDING),
    StatusRule(400, 400, FailureKind.CONTEXT_TOO_LONG, CONTEXT_TOO_LONG_WORDING),
    StatusRule(413, 413, FailureKind.CONTEXT_TOO_LONG, CONTEXT_TOO_LONG_WORDING),
    StatusRule(422, 422, FailureKind.CONTEXT_TOO_LONG, CONTEXT_TOO_LONG_WORDING),
    StatusRule(400, 499, FailureKind.CLIENT_ERROR),
    # 500 / 502 / 503 / 504, Anthropic's 529 "overloaded", and every other 5xx.
    StatusRule(500, 599, FailureKind.SERVER_ERROR),
)


def error_detail(body: bytes | str) -> str:
    """The provider's own error message from an error body, redacted and shortened.

    Understands OpenAI / Anthropic / Gemini (``{"error": {"message": ...}}``), Ollama and the
    Hugging Face router (``{"error": "..."}``), Mistral (``{"message": ...}``) and FastAPI-style
    ``{"detail": ...}``; otherwise the start of the body itself.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    message: Any = None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Gemini sometimes wraps its error object in a list
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            code = error.get("code") or error.get("type") or error.get("status")
            if isinstance(code, str) and isinstance(message, str) and code not in message:
                message = f"{message} [{code}]"
        elif isinstance(error, str):
            message = error
        if message is None:
            message = data.get("message") or data.get("detail")
    if not isinstance(message, str):
        message = " ".join(text.split())
    message = redact_text(message)
    if len(message) > _DETAIL_LIMIT:
        message = message[: _DETAIL_LIMIT - 3] + "..."
    return message


def _error_details(body: bytes | str) -> list[dict[str, Any]]:
    """Gemini's ``error.details`` (google.rpc ErrorInfo, RetryInfo...); empty for other bodies."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    if isinstance(data, list) and data:
        data = data[0]  # Gemini sometimes wraps its error object in a list
    error = data.get("error") if isinstance(data, dict) else None
    # Only Gemini's error is an object with details; Ollama and others send a plain string.
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return []
    return [detail for detail in details if isinstance(detail, dict)]


def _error_reasons(body: bytes | str) -> str:
    """The machine-readable reasons in a body (``details[].reason``), for the wording rules."""
    return " ".join(str(detail["reason"]) for detail in _error_details(body) if "reason" in detail)


def _gemini_retry_delay(body: bytes | str) -> float | None:
    """Gemini's 429 puts the wait in ``error.details[].retryDelay`` ("37s") rather than a header."""
    for detail in _error_details(body):
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
    return None

def status_kind(status: int, wording: str) -> FailureKind:
    """The kind of a failure with HTTP `status` whose body says `wording` (see `STATUS_RULES`)."""
    return next(
        (rule.kind for rule in STATUS_RULES if rule.matches(status, wording)),
        FailureKind.MALFORMED,
    )


def in_band_kind(error: object) -> FailureKind:
    """The kind of an error reported inside a 200 reply or a stream (``{"error": ...}``): by the
    HTTP status it carries (vLLM's and Gemini's ``code``), else a server error."""
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return status_kind(code, json.dumps(error))
    return FailureKind.SERVER_ERROR


def classify_status(
    provider: str,
    status: int,
    headers: Mapping[str, str] | httpx.Headers,
    body: bytes | str,
    *,
    key_env: str | None = None,
) -> ProviderError:
    """The `ProviderError` for a non-2xx reply (see `STATUS_RULES`)."""
    detail = error_detail(body)
    kind = status_kind(status, f"{detail} {_error_reasons(body)}")
    retry_after = parse_retry_after(headers)
    quota = quota_remaining(headers)
    if kind is FailureKind.BILLING:
        message = f"{provider}: account out of credit or quota (HTTP {status}): {detail}"
        quota = 0.0
    elif kind is FailureKind.UNSUPPORTED:
        message = f"{provider}: the model does not take this request (HTTP {status}): {detail}"
    elif kind is FailureKind.AUTH:
        # The provider's own words may quote (part of) the key: name the variable instead.
        where = f"the key in {key_env}" if key_env else "the request (no api_key_env is configured)"
        message = (
            f"{provider}: authentication failed (HTTP {status}); the provider rejected {where}"
        )
    elif kind is FailureKind.RATE_LIMITED:
        if retry_after is None:
            retry_after = _gemini_retry_delay(body)
        wait = f", retry after {retry_after:g}s" if retry_after is not None else ""
        message = f"{provider}: rate limited (HTTP {status}{wait}): {detail}"
        if quota is None:
            quota = 0.0
    elif kind is FailureKind.CONTEXT_TOO_LONG:
        message = f"{provider}: prompt exceeds the model's context window (HTTP {status}): {detail}"
    elif kind is FailureKind.MALFORMED:
        message = f"{provider}: unexpected HTTP {status}: {detail}"
    else:
        message = f"{provider}: HTTP {status}: {detail}"
    return ProviderError(
        kind, message, status=status, retry_after_s=retry_after, quota_remaining=quota
    )

