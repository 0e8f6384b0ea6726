"""How a call can fail, and the typed errors a request can end in."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from actors.messages import Attempt


class FailureKind(enum.StrEnum):
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    AUTH = "auth"
    CLIENT_ERROR = "client_error"
    CONTEXT_TOO_LONG = "context_too_long"
    MALFORMED = "malformed"
    CONNECTION = "connection"
    #: The provider could not be asked at all: breaker open, no credentials, actor restarting.
    UNAVAILABLE = "unavailable"
    #: A last-resort source had nothing for this request (no cached reply, no template).
    NO_MATCH = "no_match"
    #: The actor serving the call crashed or was restarted under it.
    CRASHED = "crashed"
    #: This model cannot take a parameter or value of the request (a 400 such as OpenAI's
    #: `unsupported_parameter`): another model can, so the request falls back. Not the caller's
    #: error and not the provider's ill health.
    UNSUPPORTED = "unsupported"
    #: The account is spent (OpenAI `insufficient_quota`, Anthropic's credit balance): like an
    #: auth failure, the provider is held out until an operator fixes it, not retried.
    BILLING = "billing"
    #: A reply with no text and no tool call (a safety block, thinking that used every token):
    #: falls back, is never cached.
    EMPTY_REPLY = "empty_reply"
    #: The model refused; falls back only where the level says so (`fallback_on_refusal`).
    REFUSED = "refused"


#: Failures that say something about the provider's health and so count against its breaker.
BREAKER_FAILURES = frozenset(
    {
        FailureKind.TIMEOUT,
        FailureKind.SERVER_ERROR,
        FailureKind.MALFORMED,
        FailureKind.CONNECTION,
        FailureKind.CRASHED,
    }
)


class ProviderError(Exception):
    """A classified failure of one call to one provider."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        quota_remaining: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        #: Fraction (0..1) of quota left, when the failure said so (0 when the quota is spent).
        self.quota_remaining = quota_remaining

    @property
    def counts_against_breaker(self) -> bool:
        return self.kind in BREAKER_FAILURES

    def __repr__(self) -> str:
        return f"ProviderError({self.kind.value}, {self.message!r}, status={self.status})"


class FallbackError(Exception):
    """Base of every error a request can end in."""


class AllLevelsFailed(FallbackError):
    """Nothing could answer: every level was tried or the deadline passed."""

    def __init__(self, message: str, attempts: Sequence[Attempt]) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


class RequestRejected(FallbackError):
    """A provider refused the request itself (a 4xx that is the caller's to fix); no fallback."""

    def __init__(
        self, message: str, provider: str, status: int | None, attempts: Sequence[Attempt]
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.attempts = tuple(attempts)


class ModelNotOffered(FallbackError, ValueError):
    """`Request.model` (or every model of `Request.models`) is offered by no provider of any
    level: raised before any call, since no walk could ever reach it."""

    def __init__(self, field: str, models: Sequence[str], offered: Sequence[str]) -> None:
        wanted = models[0] if field == "model" else list(models)
        known = ", ".join(offered) or "none"
        super().__init__(
            f"{field}: {wanted!r} is offered by no configured provider (offered: {known})"
        )
        #: "model" or "models": the request field at fault.
        self.field = field
        self.models = tuple(models)
        self.offered = tuple(offered)


class StreamInterrupted(FallbackError):
    """A stream failed after text was delivered; the caller gets what arrived, never a silent cut."""

    def __init__(
        self, message: str, provider: str, partial_text: str, attempts: Sequence[Attempt]
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.partial_text = partial_text
        self.attempts = tuple(attempts)


class RuntimeClosed(FallbackError):
    """The runtime has closed (or closed while the request was in flight): nothing was wrong
    with the providers, the request came too late."""


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field and the value."""
