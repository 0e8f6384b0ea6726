"""Classification of transport failures: the `ProviderError` for each exception httpx raises.

Cancellation is never caught: only `httpx.HTTPError` is translated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from actors.errors import FailureKind, ProviderError
from actors.secrets import redact_text

__all__ = ["TRANSPORT_RULES", "classify_transport_error", "translating_transport_errors"]


#: First isinstance match wins; order matters (timeouts are transport errors too).
TRANSPORT_RULES: tuple[tuple[type[httpx.HTTPError], FailureKind, str], ...] = (
    (httpx.ConnectTimeout, FailureKind.TIMEOUT, "connect timed out"),
    (httpx.ReadTimeout, FailureKind.TIMEOUT, "read timed out"),
    (httpx.WriteTimeout, FailureKind.TIMEOUT, "write timed out"),
    (httpx.PoolTimeout, FailureKind.TIMEOUT, "no free connection in the pool"),
    (httpx.TimeoutException, FailureKind.TIMEOUT, "timed out"),
    (httpx.ConnectError, FailureKind.CONNECTION, "cannot connect"),
    (httpx.RemoteProtocolError, FailureKind.CONNECTION, "connection dropped"),
    (httpx.ReadError, FailureKind.CONNECTION, "read failed"),
    (httpx.WriteError, FailureKind.CONNECTION, "write failed"),
    (httpx.DecodingError, FailureKind.MALFORMED, "reply body could not be decoded"),
    (httpx.TransportError, FailureKind.CONNECTION, "transport failed"),
    (httpx.HTTPError, FailureKind.CONNECTION, "HTTP failure"),
)


def classify_transport_error(provider: str, exc: httpx.HTTPError) -> ProviderError:
    """The `ProviderError` for an exception httpx raised while sending or reading."""
    kind, what = next(
        ((kind, what) for exc_type, kind, what in TRANSPORT_RULES if isinstance(exc, exc_type)),
        (FailureKind.CONNECTION, "HTTP failure"),
    )
    reason = redact_text(str(exc)) or exc.__class__.__name__
    return ProviderError(kind, f"{provider}: {what}: {reason}")


@contextlib.contextmanager
def translating_transport_errors(provider: str) -> Iterator[None]:
    """Turn httpx exceptions raised in the block into classified `ProviderError`s."""
    try:
        yield
    except httpx.HTTPError as exc:
        raise classify_transport_error(provider, exc) from None

