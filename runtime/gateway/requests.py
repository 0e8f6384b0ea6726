"""From an HTTP request to a runtime `Request`: the body read by the wire format's own reader
(the inverse of what the adapters send), then the gateway's routing on top: a model alias from
the config (`uptax/auto`...) or a concrete model pinned, the `x-uptax-*` headers, the limits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import attrs

from actors.config import AliasConfig, GatewayConfig
from actors.messages import Request
from actors.validation import FieldError
from runtime.gateway.errors import GatewayError, invalid

__all__ = ["ROUTING_HEADERS", "decode_body", "routed"]

#: The headers that set a request's routing, and the `Request` field each sets.
ROUTING_HEADERS: Mapping[str, str] = {
    "x-uptax-complexity": "complexity",
    "x-uptax-quality": "quality",
    "x-uptax-budget-usd": "budget_usd",
    "x-uptax-deadline-s": "deadline_s",
    "x-uptax-cost": "cost",
}
_NUMERIC = frozenset({"budget_usd", "deadline_s"})


def decode_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body, or a 400 saying what is wrong with it."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise GatewayError(400, "the body must be a JSON object")
    return data


def routed(
    request: Request, headers: Mapping[str, str], settings: GatewayConfig, *, has_limit: bool
) -> Request:
    """`request` with the gateway's routing applied: an alias model becomes its policy (and no
    pin), the routing headers override, a request without an output limit gets the default."""
    changes: dict[str, Any] = {}
    if request.model is not None and request.model in settings.aliases:
        changes.update(_alias_changes(settings.aliases[request.model]))
        changes["model"] = None
    for header, field in ROUTING_HEADERS.items():
        value = headers.get(header)
        if value is not None:
            changes[field] = _header_value(header, field, value)
    if not has_limit:
        changes["max_tokens"] = settings.default_max_tokens
    if len(request.conversation) > settings.max_messages:
        raise invalid(
            "messages",
            f"{len(request.conversation)} messages; at most {settings.max_messages} are taken",
        )
    if not changes:
        return request
    try:
        return attrs.evolve(request, **changes)
    except FieldError as exc:
        header = next((h for h, f in ROUTING_HEADERS.items() if f == exc.field), exc.field)
        raise invalid(header, exc.message) from None


def _alias_changes(alias: AliasConfig) -> dict[str, Any]:
    fields = ("complexity", "quality", "budget_usd", "deadline_s", "cost")
    return {field: getattr(alias, field) for field in fields if getattr(alias, field) is not None}


def _header_value(header: str, field: str, value: str) -> Any:
    if field not in _NUMERIC:
        return value.strip()
    try:
        number = float(value)
    except ValueError:
        raise invalid(header, f"{value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise invalid(header, f"{value!r} must be a finite number >= 0")
    return number
