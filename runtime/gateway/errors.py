"""Every way a gateway request can fail, as one `GatewayError` with the HTTP status and the API's
own error shape, so the official SDKs raise their typed exceptions.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``. Anthropic:
``{"type": "error", "error": {"type", "message"}}``. Messages name the field at fault and never
carry a secret (attempt summaries are the runtime's own, already redacted).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from actors.errors import (
    AllLevelsFailed,
    FallbackError,
    ModelNotOffered,
    RequestRejected,
    RuntimeClosed,
    StreamInterrupted,
)
from actors.validation import FieldError

__all__ = ["Dialect", "GatewayError", "error_body", "from_exception"]

Dialect = Literal["openai", "anthropic"]

#: status -> (OpenAI error type, Anthropic error type)
_TYPES: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("authentication_error", "authentication_error"),
    403: ("permission_error", "permission_error"),
    404: ("not_found_error", "not_found_error"),
    408: ("invalid_request_error", "invalid_request_error"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_error"),
    499: ("cancelled", "cancelled"),
    500: ("server_error", "api_error"),
    502: ("server_error", "api_error"),
    503: ("server_error", "overloaded_error"),
    504: ("timeout", "timeout_error"),
}


@attrs.frozen
class GatewayError(Exception):
    """A failure to answer with `status`; `param` names the request field at fault."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    #: Seconds after which a retry may succeed (429, 503): sent as `Retry-After`.
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return self.message

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"retry-after": str(max(1, round(self.retry_after_s)))}


def error_body(error: GatewayError, dialect: Dialect) -> dict[str, Any]:
    """The error in `dialect`'s JSON shape."""
    openai_type, anthropic_type = _TYPES.get(error.status, ("server_error", "api_error"))
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": anthropic_type, "message": error.message}}
    return {
        "error": {
            "message": error.message,
            "type": openai_type,
            "param": error.param,
            "code": error.code,
        }
    }


def invalid(field: str, message: str) -> GatewayError:
    return GatewayError(400, f"{field}: {message}", param=field, code="invalid_value")


def from_exception(error: BaseException) -> GatewayError:
    """The gateway error for what a request raised (a bad value, or how it ended)."""
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, ModelNotOffered):
        return GatewayError(404, str(error), param="model", code="model_not_found")
    if isinstance(error, FieldError):
        return invalid(error.field, error.message)
    if isinstance(error, RequestRejected):
        status = error.status if error.status in (400, 404, 413, 422) else 400
        return GatewayError(status, f"the provider refused the request: {error}")
    if isinstance(error, AllLevelsFailed):
        if "deadline passed" in str(error) or str(error).endswith("before the deadline"):
            return GatewayError(504, f"the deadline passed: {error}", code="deadline_exceeded")
        return GatewayError(502, f"no provider could answer: {error}", code="all_levels_failed")
    if isinstance(error, RuntimeClosed):
        return GatewayError(503, "the gateway is shutting down", retry_after_s=5.0)
    if isinstance(error, StreamInterrupted):
        return GatewayError(502, str(error), code="stream_interrupted")
    if isinstance(error, FallbackError | ValueError | TypeError):
        return GatewayError(400, str(error))
    raise error
