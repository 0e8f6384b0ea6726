"""`/dashboard`: the live page, its static files, and the JSON API it reads and steers through.

    GET    /dashboard                      the page (package data: static/dashboard/index.html)
    GET    /dashboard/static/{path}        its scripts, styles and the vendored chart library
    POST   /dashboard/api/session          {"key", "operator"} -> the session cookie
    DELETE /dashboard/api/session          log out
    GET    /dashboard/api/state            everything the page needs at load
    GET    /dashboard/api/live             server-sent events (`runtime.gateway.live`)
    POST   /dashboard/api/explain          the route planner's plan for a request
    POST   /dashboard/api/breakers/{p}     an operator action, as /admin takes it
    PUT    /dashboard/api/faults/{p}       ditto
    DELETE /dashboard/api/faults/{p}       ditto

With the admin key set, the API needs a session (see `runtime.gateway.sessions`); without it,
the API is readable without one but only on a loopback gateway (elsewhere every /dashboard path
is 404, as the admin API is), and actions are 404. Every state-changing request must carry
`x-uptax-dashboard: 1`, which a cross-origin page cannot send without a CORS preflight that the
gateway never grants. No response carries a key: provider configs are listed by name, kind,
level and models only.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from runtime.embed import Runtime
from runtime.gateway import actions
from runtime.gateway.admin import AdminKey
from runtime.gateway.errors import GatewayError, error_body
from runtime.gateway.explain import explain
from runtime.gateway.history import LiveHistory
from runtime.gateway.live import LiveStreamResponse, resume_point
from runtime.gateway.requests import decode_body
from runtime.gateway.sessions import COOKIE, Session, Sessions, cookie_header

__all__ = ["MAX_STREAMS", "Dashboard", "dashboard_routes", "static_dir"]

MAX_STREAMS = 32
_CHANGES = frozenset({"POST", "PUT", "DELETE"})

Handler = Callable[["Dashboard", HTTPRequest, Session | None], Awaitable[Response]]


def _version() -> str:
    try:
        return importlib.metadata.version("uptax-fallback")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def static_dir() -> Path:
    """The page's files, shipped as package data."""
    return Path(str(importlib.resources.files("runtime.gateway"))) / "static" / "dashboard"


@attrs.define
class Dashboard:
    """What the dashboard's endpoints share."""

    rt: Runtime
    history: LiveHistory
    admin_key: AdminKey
    #: Whether the gateway listens on loopback only (the keyless API is served only there).
    loopback: bool
    sessions: Sessions = attrs.Factory(Sessions)
    streams: int = 0

    @property
    def locked(self) -> bool:
        """Whether the API needs a session (the admin key is set)."""
        return self.admin_key.digest is not None

    @property
    def visible(self) -> bool:
        return self.locked or self.loopback


def _dashboard(http: HTTPRequest) -> Dashboard | None:
    app = http.app
    dashboard: Dashboard | None = getattr(app.state, "dashboard", None)
    return dashboard if dashboard is not None and dashboard.visible else None


def _error(status: int, message: str, **extra: Any) -> Response:
    error = GatewayError(status, message, **extra)
    return JSONResponse(error_body(error, "openai"), status, headers=error.headers())


def _not_found(path: str) -> Response:
    return _error(404, f"no such path: {path}", code="not_found")


def _api(handle: Handler, *, action: bool = False, login: bool = False) -> Callable[..., Any]:
    """`handle` behind the dashboard's checks, in this order: 404 when the dashboard is off
    (or an action without an admin key), 403 for a change without `x-uptax-dashboard: 1`,
    401 without a live session when one is needed."""

    async def endpoint(http: HTTPRequest) -> Response:
        dashboard = _dashboard(http)
        if dashboard is None or (action and not dashboard.locked):
            return _not_found(http.url.path)
        if http.method in _CHANGES and http.headers.get("x-uptax-dashboard") != "1":
            return _error(403, "a dashboard change needs the header x-uptax-dashboard: 1")
        session = dashboard.sessions.get(http.cookies.get(COOKIE))
        if dashboard.locked and session is None and not login:
            return _error(401, "log in to the dashboard with the admin key")
        return await actions.answered(lambda: handle(dashboard, http, session))

    return endpoint


# -- the API ---------------------------------------------------------------------------------


async def _login(dashboard: Dashboard, http: HTTPRequest, session: Session | None) -> Response:
    body = decode_body(await http.body())
    key, operator = body.get("key"), body.get("operator")
    if not dashboard.locked:
        return _not_found(http.url.path)
    if operator is not None and (
        not isinstance(operator, str) or len(operator) > actions.OPERATOR_MAX
    ):
        raise GatewayError(
            400, f"operator: at most {actions.OPERATOR_MAX} characters", param="operator"
        )
    if not isinstance(key, str) or not dashboard.admin_key.matches(key):
        return _error(401, "that is not the admin key")
    token = dashboard.sessions.open(actions.printable(operator or "") or None)
    return Response(status_code=204, headers={"set-cookie": cookie_header(token)})


async def _logout(dashboard: Dashboard, http: HTTPRequest, session: Session | None) -> Response:
    dashboard.sessions.close(http.cookies.get(COOKIE))
    return Response(status_code=204, headers={"set-cookie": cookie_header("", 0)})


async def _state(dashboard: Dashboard, http: HTTPRequest, session: Session | None) -> Response:
    history, config = dashboard.history, dashboard.rt.config
    level_of = {name: level.name for level in config.levels for name in level.providers}
    return JSONResponse(
        {
            "instance": {"started_at": history.started_at, "version": _version()},
            "interval_s": history.interval_s,
            "levels": [level.name for level in config.levels],
            "providers": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "level": level_of.get(p.name),
                    "models": list(p.models),
                }
                for p in config.providers
            ],
            "actions": dashboard.locked and session is not None,
            "operator": session.operator if session is not None else None,
            "samples": list(history.samples),
            "events": list(history.events),
            "status": history.status,
        }
    )


async def _live(dashboard: Dashboard, http: HTTPRequest, session: Session | None) -> Response:
    if dashboard.streams >= MAX_STREAMS or dashboard.history.closed:
        return _error(503, f"at most {MAX_STREAMS} live streams", retry_after_s=5.0)
    after = resume_point(http.headers.get("last-event-id"), http.query_params.get("after"))
    return _CountedStream(dashboard, after)


class _CountedStream(LiveStreamResponse):
    """A live stream counted against `MAX_STREAMS` from its creation to its end."""

    def __init__(self, dashboard: Dashboard, after: int) -> None:
        super().__init__(dashboard.history, after)
        self._dashboard = dashboard
        dashboard.streams += 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._dashboard.streams -= 1


async def _explain(dashboard: Dashboard, http: HTTPRequest, session: Session | None) -> Response:
    return JSONResponse(explain(dashboard.rt, decode_body(await http.body())))


def _who(http: HTTPRequest, session: Session | None) -> actions.Operator:
    return actions.Operator.of(http, session.operator if session is not None else None)


async def _breaker(dashboard: Dashboard, http: HTTPRequest, session: Session | None) -> Response:
    body = decode_body(await http.body())
    provider = http.path_params["provider"]
    return JSONResponse(actions.breaker(dashboard.rt, provider, body, _who(http, session)))


async def _inject(dashboard: Dashboard, http: HTTPRequest, session: Session | None) -> Response:
    body = decode_body(await http.body())
    provider = http.path_params["provider"]
    return JSONResponse(actions.inject(dashboard.rt, provider, body, _who(http, session)))


async def _heal(dashboard: Dashboard, http: HTTPRequest, session: Session | None) -> Response:
    provider = http.path_params["provider"]
    return JSONResponse(actions.heal(dashboard.rt, provider, _who(http, session)))


# -- the page ----------------------------------------------------------------------------------


@attrs.frozen
class _PageFile:
    body: bytes = attrs.field(repr=False)
    content_type: str
    etag: str


class _PageFiles:
    """The page's files, read once into memory: a few hundred kilobytes of package data that
    never change while the server runs. Answered as plain responses (with an ETag, so a reload
    costs a 304): hypercorn's trio worker never closed an idle keep-alive connection that had
    carried a file response, which held every shutdown for its whole grace."""

    def __init__(self, directory: Path) -> None:
        self._files: dict[str, _PageFile] = {}
        if directory.is_dir():
            for path in sorted(directory.rglob("*")):
                if path.is_file():
                    self._files[path.relative_to(directory).as_posix()] = _read(path)

    def response(self, name: str, http: HTTPRequest, cache_control: str) -> Response:
        found = self._files.get(name)
        if found is None or http.method not in ("GET", "HEAD"):
            return _not_found(http.url.path)
        headers = {"etag": found.etag, "cache-control": cache_control}
        if http.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        body = b"" if http.method == "HEAD" else found.body
        headers["content-length"] = str(len(found.body))
        return Response(body, media_type=found.content_type, headers=headers)


def _read(path: Path) -> _PageFile:
    body = path.read_bytes()
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type == "application/javascript":
        content_type += "; charset=utf-8"
    return _PageFile(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def dashboard_routes(directory: Path | None = None) -> list[Route]:
    """The dashboard's routes; `build_app` sets `app.state.dashboard` (a `Dashboard`)."""
    files = _PageFiles(directory or static_dir())

    async def page(http: HTTPRequest) -> Response:
        if _dashboard(http) is None:
            return _not_found(http.url.path)
        return files.response("index.html", http, "no-cache")

    async def static(http: HTTPRequest) -> Response:
        if _dashboard(http) is None:
            return _not_found(http.url.path)
        # Revalidated on each load (a 304 when unchanged), so a new version is never stale.
        return files.response(http.path_params["name"], http, "no-cache")

    return [
        Route("/dashboard", page, methods=["GET"]),
        Route("/dashboard/", page, methods=["GET"]),
        Route("/dashboard/api/session", _api(_login, login=True), methods=["POST"]),
        Route("/dashboard/api/session", _api(_logout, login=True), methods=["DELETE"]),
        Route("/dashboard/api/state", _api(_state), methods=["GET"]),
        Route("/dashboard/api/live", _api(_live), methods=["GET"]),
        Route("/dashboard/api/explain", _api(_explain), methods=["POST"]),
        Route("/dashboard/api/breakers/{provider}", _api(_breaker, action=True), methods=["POST"]),
        Route("/dashboard/api/faults/{provider}", _api(_inject, action=True), methods=["PUT"]),
        Route("/dashboard/api/faults/{provider}", _api(_heal, action=True), methods=["DELETE"]),
        Route("/dashboard/static/{name:path}", static, methods=["GET", "HEAD"]),
    ]
