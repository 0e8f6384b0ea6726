"""Operator actions, whoever asks (the admin API or the dashboard): force or reset a breaker,
inject or lift a fault. Each goes through `perform`, which applies it, logs it
(`gateway_admin_action`, with the fault's fields) and emits `operator_action` on the runtime's
event bus, so the dashboard's event log shows who did what. Never the key that allowed it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, get_args

import attrs
import cattrs
import structlog
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response

from actors.fault_admin import FaultAdminError, fault_from_json, fault_to_json
from actors.provider import BreakerMode
from runtime.embed import Runtime
from runtime.gateway.errors import GatewayError, error_body
from runtime.kernel.actor import ActorNotRunning
from runtime.kernel.registry import UnknownActor

__all__ = ["ACTIONS", "Operator", "answered", "breaker", "heal", "inject"]

#: The breaker commands an operator may give (the runtime's `disable` is left to the console).
ACTIONS: tuple[str, ...] = ("open", "close", "reset", "auto")
OPERATOR_MAX = 64

_log = structlog.get_logger("runtime.gateway.admin")


@attrs.frozen
class Operator:
    """Who asked: the client's address and the name the operator gave ("-" when none)."""

    client: str
    operator: str

    @classmethod
    def of(cls, http: HTTPRequest, name: str | None) -> Operator:
        client = f"{http.client.host}:{http.client.port}" if http.client else "-"
        return cls(client, printable(name or "") or "-")


def printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable())[:OPERATOR_MAX]


def _done(rt: Runtime, who: Operator, action: str, provider: str, **logged: Any) -> None:
    """Log the action and put it on the event bus."""
    _log.warning(
        "gateway_admin_action",
        action=action,
        provider=provider,
        **logged,
        client=who.client,
        operator=who.operator,
    )
    rt.events.emit(
        "operator_action",
        action=action,
        provider=provider,
        operator=who.operator,
        client=who.client,
    )


def breaker(rt: Runtime, provider: str, body: Mapping[str, Any], who: Operator) -> dict[str, Any]:
    action = body.get("action")
    if action not in ACTIONS or action not in get_args(BreakerMode):
        raise GatewayError(
            400, f"action: {action!r} is not one of {', '.join(ACTIONS)}", param="action"
        )
    snapshot = rt.set_breaker(provider, action)
    _done(rt, who, f"breaker {action}", provider)
    return {"provider": provider, "breaker": cattrs.unstructure(snapshot)}


def inject(rt: Runtime, provider: str, body: Mapping[str, Any], who: Operator) -> dict[str, Any]:
    fault = fault_from_json(body)
    rt.inject_fault(provider, fault)
    fields: dict[str, Any] = fault_to_json(fault)
    _done(rt, who, "fault", provider, fault=fields)
    return {"provider": provider, "fault": fields}


def heal(rt: Runtime, provider: str, who: Operator) -> dict[str, Any]:
    rt.heal(provider)
    _done(rt, who, "heal", provider)
    return {"provider": provider, "healed": True}


async def answered(handle: Callable[[], Awaitable[Response]]) -> Response:
    """`handle()`'s response, or the error response for what it raised, as the admin API
    answers: 404 for an unknown provider, 503 for one not running, 502 when a fake server's
    admin endpoint failed, 400 for a bad body or a provider that takes no faults."""
    try:
        return await handle()
    except UnknownActor as exc:
        error = GatewayError(404, str(exc), param="provider", code="unknown_provider")
    except ActorNotRunning as exc:
        error = GatewayError(503, str(exc), retry_after_s=1.0)
    except FaultAdminError as exc:
        error = GatewayError(502, str(exc))
    except ValueError as exc:  # a provider that takes no faults
        error = GatewayError(400, str(exc))
    except GatewayError as exc:
        error = exc
    return JSONResponse(error_body(error, "openai"), error.status, headers=error.headers())
