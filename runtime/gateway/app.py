"""The gateway's ASGI application (Starlette): OpenAI- and Anthropic-compatible endpoints over one
`Runtime`, plus health and the model list.

Each endpoint reads the body (413 past the limit), turns it into a `Request` through the wire
format's own reader and the gateway's routing (`runtime.gateway.requests`), and answers in its
API's shape, with the `x-uptax-*` headers saying who answered. A non-streamed request is
cancelled when its client disconnects; a streamed one is run by `EventStreamResponse`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog
import trio
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from actors.cascade import Answering
from actors.config import LAST_RESORT_KINDS
from actors.errors import FallbackError
from actors.messages import BreakerState, Reply, Request
from runtime.embed import Runtime
from runtime.gateway import anthropic_api, openai_api
from runtime.gateway.access import RequestWatch, log_request
from runtime.gateway.admin import AdminKey, admin_routes
from runtime.gateway.dashboard import Dashboard, dashboard_routes
from runtime.gateway.errors import Dialect, GatewayError, error_body, from_exception
from runtime.gateway.history import LiveHistory
from runtime.gateway.metering import metered
from runtime.gateway.metrics import GatewayMetrics, metrics_endpoint
from runtime.gateway.policy import Access
from runtime.gateway.requests import decode_body, routed
from runtime.gateway.streaming import EventStreamResponse, StreamRenderer, watch_disconnect

__all__ = ["Gateway", "build_app"]

_log = structlog.get_logger("runtime.gateway")

Endpoint = Callable[[HTTPRequest], Awaitable[Response]]


class Gateway:
    """What every endpoint shares: the runtime, its config, and the ways to answer."""

    def __init__(self, rt: Runtime, access: Access) -> None:
        self.rt = rt
        self.access = access
        self.config = rt.config
        self.settings = rt.config.gateway
        self.metrics = GatewayMetrics(rt)

    def watch(self, http: HTTPRequest, request_id: str) -> RequestWatch:
        """Times the request; its access-log event and metrics are recorded when it ends."""
        self.metrics.started()
        sinks = (self.metrics.observe, log_request)
        return RequestWatch(http, request_id, sinks, on_end=self.metrics.ended)

    # -- reading ----------------------------------------------------------------------------

    async def body(self, http: HTTPRequest) -> dict[str, Any]:
        """The request's JSON object; 413 past `max_body_bytes`, counted as it arrives; 408 when
        it has not all arrived within `body_timeout_s`."""
        limit = self.settings.max_body_bytes
        declared = http.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise GatewayError(413, f"the body is {declared} bytes; at most {limit} are taken")
        chunks, size = [], 0
        with trio.move_on_after(self.settings.body_timeout_s):
            async for piece in http.stream():
                size += len(piece)
                if size > limit:
                    raise GatewayError(413, f"the body is over {limit} bytes")
                chunks.append(piece)
            return decode_body(b"".join(chunks))
        raise GatewayError(408, f"the body did not arrive within {self.settings.body_timeout_s} s")

    def route(self, request: Request, http: HTTPRequest, *, has_limit: bool) -> Request:
        """`request` routed, within its tenant's policy (403 for a model it may not use)."""
        self.access.check_models(http.state.tenant, request)
        request = routed(request, http.headers, self.settings, has_limit=has_limit)
        return self.access.shape(http.state.tenant, request)

    # -- answering --------------------------------------------------------------------------

    async def complete(self, http: HTTPRequest, request: Request) -> Reply | None:
        """The reply, or None when the client went away first (the request is cancelled)."""
        reply: Reply | None = None
        failure: FallbackError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, http.receive, nursery.cancel_scope)
            try:
                reply = http.state.reply = await self.rt.complete(request)
            except FallbackError as exc:  # raised as itself, not wrapped in the nursery's group
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        http.state.reply = reply  # for the access log and the metrics
        return reply

    def reply_headers(self, request_id: str, reply: Reply | Answering | None) -> dict[str, str]:
        headers = {"x-request-id": request_id}
        if reply is None:
            return headers
        attempts = len(reply.attempts) if isinstance(reply, Reply) else reply.attempts
        headers.update(
            {
                "x-uptax-provider": reply.provider,
                "x-uptax-model": reply.model,
                "x-uptax-level": reply.level,
                "x-uptax-fallback": "true" if reply.fallback_used else "false",
                "x-uptax-attempts": str(attempts),
            }
        )
        if isinstance(reply, Reply):
            headers["x-uptax-cost-usd"] = f"{reply.cost_usd:.6f}"
        return headers

    def error_response(self, error: GatewayError, dialect: Dialect, request_id: str) -> Response:
        headers = {"x-request-id": request_id, **error.headers()}
        return JSONResponse(error_body(error, dialect), error.status, headers=headers)

    # -- the model list and health ----------------------------------------------------------

    def model_ids(self) -> list[str]:
        """Every model a provider outside the last resort serves, then the aliases."""
        seen: dict[str, None] = {}
        for provider in self.config.providers:
            if provider.kind not in LAST_RESORT_KINDS:
                seen.update(dict.fromkeys(provider.models))
        return [*seen, *self.settings.aliases]

    def ready(self) -> bool:
        """A provider outside the last resort can be asked (available, breaker not held open)."""
        kinds = {p.name: p.kind for p in self.config.providers}
        return any(
            kinds.get(p.name) not in LAST_RESORT_KINDS
            and p.available
            and p.breaker not in (BreakerState.OPEN.value, BreakerState.FORCED_OPEN.value)
            for p in self.rt.status().providers
        )


def new_request_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _guarded(dialect: Dialect, prefix: str, handle: Callable[..., Awaitable[Response]]) -> Endpoint:
    """`handle(http, request_id)` with every failure answered in `dialect`'s error shape."""

    async def endpoint(http: HTTPRequest) -> Response:
        gateway: Gateway = http.app.state.gateway
        request_id = new_request_id(prefix)
        with gateway.watch(http, request_id) as watch:
            reserved = 0.0
            try:
                tenant = http.state.tenant = gateway.access.admit(http.headers)
                reserved = await gateway.access.admit_shared(tenant)
                response = watch.respond(await handle(gateway, http, request_id))
            except (GatewayError, FallbackError, ValueError, TypeError) as exc:
                if reserved:
                    await gateway.access.release(tenant, reserved, request_id)
                error = from_exception(exc)
                watch.failed(error, exc)  # logged with the request (`gateway_request`)
                return gateway.error_response(error, dialect, request_id)
            charge = partial(
                gateway.access.charge, tenant, request_id=request_id, reserved=reserved
            )
            release = partial(gateway.access.release, tenant, reserved, request_id)
            return metered(response, http, charge, release)

    return endpoint


async def _answer(
    gateway: Gateway,
    http: HTTPRequest,
    request: Request,
    request_id: str,
    stream: StreamRenderer | None,
    render: Callable[[Reply], dict[str, Any]],
) -> Response:
    """The reply to `request`: streamed through `stream` when there is one, else whole, as
    `render` shapes it; either way with the headers saying who answered."""
    if stream is not None:
        return EventStreamResponse(
            gateway.rt,
            request,
            stream,
            lambda answering: gateway.reply_headers(request_id, answering),
        )
    reply = await gateway.complete(http, request)
    if reply is None:
        return Response(status_code=499)  # nobody is listening any more
    return JSONResponse(render(reply), headers=gateway.reply_headers(request_id, reply))


async def _chat_completions(gateway: Gateway, http: HTTPRequest, request_id: str) -> Response:
    body = await gateway.body(http)
    request = gateway.route(openai_api.read(body), http, has_limit=openai_api.has_limit(body))
    stream = None
    if body.get("stream") is True:
        stream = openai_api.OpenAIStream(
            request_id, str(body["model"]), openai_api.wants_usage(body)
        )
    render = partial(openai_api.completion, request_id=request_id)
    return await _answer(gateway, http, request, request_id, stream, render)


async def _messages(gateway: Gateway, http: HTTPRequest, request_id: str) -> Response:
    body = await gateway.body(http)
    request = gateway.route(anthropic_api.read(body), http, has_limit=True)
    stream = None
    if body.get("stream") is True:
        stream = anthropic_api.AnthropicStream(request_id, str(body["model"]), request)
    render = partial(anthropic_api.message, request_id=request_id, request=request)
    return await _answer(gateway, http, request, request_id, stream, render)


async def _models(http: HTTPRequest) -> Response:
    gateway: Gateway = http.app.state.gateway
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": "uptax"}
        for model in gateway.model_ids()
    ]
    return JSONResponse({"object": "list", "data": data})


async def _healthz(http: HTTPRequest) -> Response:
    return JSONResponse({"status": "alive"})


async def _readyz(http: HTTPRequest) -> Response:
    gateway: Gateway = http.app.state.gateway
    # A shared store that is down degrades the instance, it does not make it unready.
    state = {} if gateway.rt.fleet is None else {"state": gateway.rt.fleet.describe()}
    if gateway.ready():
        return JSONResponse({"status": "ready", **state})
    return JSONResponse({"status": "not ready: no provider outside the last resort", **state}, 503)


async def _unexpected(http: HTTPRequest, exc: Exception) -> Response:
    """A bug: logged with its traceback at error (the server logs nothing of its own), and
    answered 500 in the API's error shape rather than as bare text."""
    cause: BaseException = exc
    while isinstance(cause, BaseExceptionGroup) and len(cause.exceptions) == 1:
        cause = cause.exceptions[0]  # what a request's nursery wrapped
    _log.error(
        "gateway_error",
        method=http.method,
        path=http.url.path,
        error=type(cause).__name__,
        exc_info=exc,
    )
    dialect: Dialect = "anthropic" if http.url.path == "/v1/messages" else "openai"
    error = GatewayError(500, "the gateway failed to answer: its log says why")
    return JSONResponse(error_body(error, dialect), error.status)


def build_app(
    rt: Runtime, access: Access, history: LiveHistory | None = None, *, loopback: bool = True
) -> Starlette:
    """The ASGI application serving `rt` to the callers `access` admits; with a `history`,
    the dashboard too (its keyless API only when the gateway listens on `loopback`)."""
    app = Starlette(
        routes=[
            Route(
                "/v1/chat/completions",
                _guarded("openai", "chatcmpl-", _chat_completions),
                methods=["POST"],
            ),
            Route("/v1/messages", _guarded("anthropic", "msg_", _messages), methods=["POST"]),
            Route("/v1/models", _models, methods=["GET"]),
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/readyz", _readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            *admin_routes(),
            *dashboard_routes(),
        ],
        exception_handlers={Exception: _unexpected},
    )
    app.state.admin_key = AdminKey.from_environ(rt.config.gateway.admin_key_env)
    app.state.gateway = Gateway(rt, access)
    app.state.dashboard = None
    if history is not None:
        app.state.dashboard = Dashboard(rt, history, app.state.admin_key, loopback)
    return app
