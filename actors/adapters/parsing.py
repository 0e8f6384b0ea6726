"""Small helpers for reading provider replies: typed field access, and the errors for bad shapes.

Parse functions raise one of `SHAPE_ERRORS` on a reply of the wrong shape; the shared adapter turns
those into MALFORMED.
"""

from __future__ import annotations

import json
from typing import Any

from actors.adapters.wire import WireError
from actors.errors import FailureKind, ProviderError
from actors.secrets import redact_text

__all__ = ["SHAPE_ERRORS", "as_dict", "loads_event", "malformed", "text_or_empty", "token_count"]


def malformed(provider: str, what: str) -> ProviderError:
    return ProviderError(FailureKind.MALFORMED, f"{provider}: malformed reply: {what}")



def text_or_empty(value: object) -> str:
    """Providers send null content for empty or refused replies; anything else must be text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def token_count(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a token count, got {value!r}")
    return value


def as_dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{what} is not an object")
    return value


#: Errors a parse function raises on a reply of the wrong shape; adapters turn them into MALFORMED.
SHAPE_ERRORS: tuple[type[Exception], ...] = (KeyError, IndexError, TypeError, ValueError)


def loads_event(data: str) -> Any:
    """One SSE event's JSON data, or a MALFORMED `WireError`."""
    try:
        return json.loads(data)
    except ValueError:
        raise WireError(
            FailureKind.MALFORMED,
            f"malformed reply: stream event is not JSON: {redact_text(data[:80])!r}",
        ) from None
