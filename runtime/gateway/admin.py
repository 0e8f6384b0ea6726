"""`/admin/*`: the operator's API, behind its own key (env `UPTAX_ADMIN_KEY`).

    GET    /admin/status               the runtime's status (`rt.status()`) as JSON
    POST   /admin/breakers/{provider}  {"action": "open" | "close" | "reset" | "auto"}
    PUT    /admin/faults/{provider}    a fault's fields, e.g. {"kind": "outage", "status": 503}
    DELETE /admin/faults/{provider}    heal: lift every fault

The key is sent as ``Authorization: Bearer <key>``. Without `UPTAX_ADMIN_KEY` in the
environment the admin API is off and every admin path answers 404, exactly as a path that does
not exist: an API that cannot be authorised should not exist, nothing can guess its way in, and a
scan learns nothing about it. With the key set, a request without it or with a wrong one gets
401. The key is compared in constant time and kept only as its SHA-256 digest; each action is
logged (`gateway_admin_action`) with who did it: the client's address and the operator named in
the optional `x-uptax-operator` header, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, get_args

import attrs
import cattrs
import structlog
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from actors.fault_admin import FaultAdminError, fault_from_json, fault_to_json
from actors.provider import BreakerMode
from runtime.embed import Runtime
from runtime.gateway.errors import GatewayError, error_body
from runtime.gateway.requests import decode_body
from runtime.kernel.actor import ActorNotRunning
from runtime.kernel.registry import UnknownActor

__all__ = ["ADMIN_KEY_ENV", "AdminKey", "admin_routes"]

ADMIN_KEY_ENV = "UPTAX_ADMIN_KEY"
#: The breaker commands an operator may give (the runtime's `disable` is left to the console).
ACTIONS: tuple[str, ...] = ("open", "close", "reset", "auto")
_OPERATOR_MAX = 64

_log = structlog.get_logger("runtime.gateway.admin")

Handler = Callable[[Runtime, HTTPRequest, str], Awaitable[Response]]


@attrs.frozen
class AdminKey:
    """The admin key's SHA-256 digest, or None when the admin API is off."""

    digest: bytes | None = attrs.field(repr=False)

    @classmethod
    def from_environ(
        cls, name: str = ADMIN_KEY_ENV, environ: Mapping[str, str] = os.environ
    ) -> AdminKey:
        """The key in the environment variable `name` (`[gateway] admin_key_env`)."""
        key = environ.get(name, "").strip()
        return cls(hashlib.sha256(key.encode()).digest() if key else None)

    def check(self, http: HTTPRequest) -> None:
        """Raise the refusal for `http`, if any (see the module doc for 404 and 401)."""
        if self.digest is None:
            raise GatewayError(404, f"no such path: {http.url.path}", code="not_found")
        scheme, _, given = http.headers.get("authorization", "").partition(" ")
        offered = hashlib.sha256(given.strip().encode()).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(offered, self.digest):
            raise GatewayError(401, "the admin API needs the admin key as a bearer token")


def _who(http: HTTPRequest) -> dict[str, str]:
    client = f"{http.client.host}:{http.client.port}" if http.client else "-"
    operator = http.headers.get("x-uptax-operator", "-")
    operator = "".join(c for c in operator if c.isprintable())[:_OPERATOR_MAX] or "-"
    return {"client": client, "operator": operator}


def _guarded(handle: Handler) -> Callable[[HTTPRequest], Awaitable[Response]]:
    async def endpoint(http: HTTPRequest) -> Response:
        try:
            http.app.state.admin_key.check(http)
            return await handle(
                http.app.state.gateway.rt, http, http.path_params.get("provider", "")
            )
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

    return endpoint


async def _status(rt: Runtime, http: HTTPRequest, provider: str) -> Response:
    return JSONResponse(cattrs.unstructure(rt.status()))


async def _breaker(rt: Runtime, http: HTTPRequest, provider: str) -> Response:
    body = decode_body(await http.body())
    action = body.get("action")
    if action not in ACTIONS or action not in get_args(BreakerMode):
        raise GatewayError(
            400, f"action: {action!r} is not one of {', '.join(ACTIONS)}", param="action"
        )
    snapshot = rt.set_breaker(provider, action)
    _log.warning(
        "gateway_admin_action", action=f"breaker {action}", provider=provider, **_who(http)
    )
    return JSONResponse({"provider": provider, "breaker": cattrs.unstructure(snapshot)})


async def _inject(rt: Runtime, http: HTTPRequest, provider: str) -> Response:
    fault = fault_from_json(decode_body(await http.body()))
    rt.inject_fault(provider, fault)
    fields: dict[str, Any] = fault_to_json(fault)
    _log.warning(
        "gateway_admin_action", action="fault", provider=provider, fault=fields, **_who(http)
    )
    return JSONResponse({"provider": provider, "fault": fields})


async def _heal(rt: Runtime, http: HTTPRequest, provider: str) -> Response:
    rt.heal(provider)
    _log.warning("gateway_admin_action", action="heal", provider=provider, **_who(http))
    return JSONResponse({"provider": provider, "healed": True})


def admin_routes() -> list[Route]:
    """The admin API's routes; `build_app` sets `app.state.admin_key` (an `AdminKey`)."""
    return [
        Route("/admin/status", _guarded(_status), methods=["GET"]),
        Route("/admin/breakers/{provider}", _guarded(_breaker), methods=["POST"]),
        Route("/admin/faults/{provider}", _guarded(_inject), methods=["PUT"]),
        Route("/admin/faults/{provider}", _guarded(_heal), methods=["DELETE"]),
    ]
