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
logged (`gateway_admin_action`) and put on the runtime's event bus (`operator_action`, see
`runtime.gateway.actions`) with who did it: the client's address and the operator named in the
optional `x-uptax-operator` header, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Mapping

import attrs
import cattrs
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.embed import Runtime
from runtime.gateway import actions
from runtime.gateway.errors import GatewayError
from runtime.gateway.requests import decode_body

__all__ = ["ADMIN_KEY_ENV", "AdminKey", "admin_routes"]

ADMIN_KEY_ENV = "UPTAX_ADMIN_KEY"
#: The breaker commands an operator may give (the runtime's `disable` is left to the console).
ACTIONS = actions.ACTIONS

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

    def matches(self, given: str) -> bool:
        """Whether `given` is the key (compared in constant time); never when there is none."""
        if self.digest is None:
            return False
        offered = hashlib.sha256(given.strip().encode()).digest()
        return hmac.compare_digest(offered, self.digest)

    def check(self, http: HTTPRequest) -> None:
        """Raise the refusal for `http`, if any (see the module doc for 404 and 401)."""
        if self.digest is None:
            raise GatewayError(404, f"no such path: {http.url.path}", code="not_found")
        scheme, _, given = http.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.matches(given):
            raise GatewayError(401, "the admin API needs the admin key as a bearer token")


def _who(http: HTTPRequest) -> actions.Operator:
    return actions.Operator.of(http, http.headers.get("x-uptax-operator"))


def _guarded(handle: Handler) -> Callable[[HTTPRequest], Awaitable[Response]]:
    async def endpoint(http: HTTPRequest) -> Response:
        async def checked() -> Response:
            http.app.state.admin_key.check(http)
            rt = http.app.state.gateway.rt
            return await handle(rt, http, http.path_params.get("provider", ""))

        return await actions.answered(checked)

    return endpoint


async def _status(rt: Runtime, http: HTTPRequest, provider: str) -> Response:
    return JSONResponse(cattrs.unstructure(rt.status()))


async def _breaker(rt: Runtime, http: HTTPRequest, provider: str) -> Response:
    body = decode_body(await http.body())
    return JSONResponse(actions.breaker(rt, provider, body, _who(http)))


async def _inject(rt: Runtime, http: HTTPRequest, provider: str) -> Response:
    body = decode_body(await http.body())
    return JSONResponse(actions.inject(rt, provider, body, _who(http)))


async def _heal(rt: Runtime, http: HTTPRequest, provider: str) -> Response:
    return JSONResponse(actions.heal(rt, provider, _who(http)))


def admin_routes() -> list[Route]:
    """The admin API's routes; `build_app` sets `app.state.admin_key` (an `AdminKey`)."""
    return [
        Route("/admin/status", _guarded(_status), methods=["GET"]),
        Route("/admin/breakers/{provider}", _guarded(_breaker), methods=["POST"]),
        Route("/admin/faults/{provider}", _guarded(_inject), methods=["PUT"]),
        Route("/admin/faults/{provider}", _guarded(_heal), methods=["DELETE"]),
    ]
