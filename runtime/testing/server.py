"""A local HTTP server that speaks the providers' wire protocols and misbehaves on command.

Each named provider is mounted at `/p/{name}` and speaks its kind's protocol at the real paths
below that prefix, so one server stands in for several providers with independent faults:

    async with open_fake_provider_server({"gpt": "openai", "claude": "anthropic"}) as server:
        server.url_for("gpt")              # http://127.0.0.1:PORT/p/gpt/v1
        server.target("claude").inject(Fault(FaultKind.OUTAGE, status=529))

A client that closes its connection while a provider is still answering is seen at once (the
connection is read while the answer is written) and recorded: `server.departures(name)`,
`await server.wait_for_departures(name, count)`, each with the trio time it happened.

Faults can also be set over HTTP, by another process: `PUT /_uptax/faults/{name}` with a fault's
fields as JSON, `DELETE` to lift them, `GET` to list them (`actors.fault_admin`).

HTTP/1.1 is h11 over trio sockets: keep-alive, Content-Length replies, chunked streams,
concurrent connections, and every task dies with the server's nursery. Every sleep is
`trio.sleep`, so latency and drip faults follow whatever clock the trio run uses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import structlog
import trio

from actors.fault_admin import (
    ADMIN_PREFIX,
    MOUNT_PREFIX,
    fault_from_json,
    fault_to_json,
    is_loopback,
    register_in_process_server,
)
from actors.faults import Fault, FaultKind, SlidingWindow
from runtime.testing.protocols import (
    KINDS,
    OPENAI_FORMAT_KINDS,
    Answer,
    Call,
    Headers,
    Quota,
    Reason,
    Wire,
    WireError,
    dump,
    reason_for_status,
    wire_for,
)

_log = structlog.get_logger("runtime.testing")

#: The providers a server mounts when none are named: one per kind, each under its kind's name.
DEFAULT_PROVIDERS: Mapping[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "ollama": "ollama",
    "mistral": "mistral",
    "huggingface": "huggingface",
}
MAX_BODY_BYTES = 8 * 1024 * 1024
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class UnknownProvider(LookupError):
    """A server method was given a provider name that is not mounted."""


def _header_names(headers: Mapping[str, str]) -> str:
    # Header values carry API keys: reprs show the names only.
    return "{" + ", ".join(sorted(headers)) + "}"


@attrs.frozen
class RecordedRequest:
    """One request as a provider received it, for field-by-field assertions."""

    provider: str
    method: str
    #: The path below the provider's mount point: the real API path, e.g. "/v1/messages".
    path: str
    query: Mapping[str, str]
    #: Lower-cased header names. Values include keys, so the repr shows names only.
    headers: Mapping[str, str] = attrs.field(repr=_header_names)
    #: The body parsed as JSON, or None if it was not JSON.
    json: Any = None
    body: bytes = attrs.field(default=b"", repr=False)
    #: `trio.current_time()` when the server read the request.
    at: float = 0.0


@attrs.frozen
class Departure:
    """A client that closed its connection while a provider was still answering it."""

    provider: str
    #: The path below the provider's mount point, as in `RecordedRequest`.
    path: str
    #: `trio.current_time()` when the server saw the connection close.
    at: float


@attrs.frozen
class _ScriptedResponse:
    status: int
    body: bytes
    headers: Headers
    remaining: int | None


def _check_fault(fault: Fault) -> None:
    problems = [
        (not 0.0 <= fault.rate <= 1.0, f"rate={fault.rate!r} must be between 0 and 1"),
        (not fault.factor >= 0, f"factor={fault.factor!r} must be >= 0"),
        (not fault.retry_after_s >= 0, f"retry_after_s={fault.retry_after_s!r} must be >= 0"),
        (not 100 <= fault.status <= 599, f"status={fault.status!r} must be an HTTP status"),
        (not fault.after_chunks >= 0, f"after_chunks={fault.after_chunks!r} must be >= 0"),
        (not fault.delay_s >= 0, f"delay_s={fault.delay_s!r} must be >= 0"),
        (not 0 <= fault.rps < float("inf"), f"rps={fault.rps!r} must be a number >= 0"),
    ]
    for bad, message in problems:
        if bad:
            raise ValueError(f"{fault.kind.value} fault: {message}")


class ProviderTarget:
    """One mounted provider: its faults (an `actors.faults.FaultTarget`) and its settings."""

    def __init__(self, name: str, kind: str, seed: int) -> None:
        self.name = name
        self.kind = kind
        self.wire: Wire = wire_for(kind)
        self._faults: dict[FaultKind, Fault] = {}
        self._rng = random.Random(f"{seed}:{name}")
        self.expected_key: str | None = None
        self.base_latency_s = 0.0
        self.context_limits: dict[str | None, int] = {}
        self.scripted: _ScriptedResponse | None = None
        self.limit_requests = 10_000
        self.limit_tokens = 1_000_000
        self.used_requests = 0
        self.used_tokens = 0
        self.seq = 0
        self.requests: list[RecordedRequest] = []
        self.departures: list[Departure] = []
        self._cap_window = SlidingWindow()

    def __repr__(self) -> str:
        return f"<ProviderTarget {self.name} kind={self.kind} faults={sorted(self._faults)}>"

    # --- FaultTarget ---

    def inject(self, fault: Fault) -> None:
        """Add a fault; one of the same kind replaces the earlier one. Applies to the next request."""
        _check_fault(fault)
        self._faults[fault.kind] = fault
        _log.info(
            "fake_provider.fault_injected",
            provider=self.name,
            fault=fault.kind.value,
            **attrs.asdict(fault, filter=lambda a, _: a.name != "kind"),
        )

    def heal(self) -> None:
        """Lift every fault and any scripted response (keys and context limits stay)."""
        self._faults.clear()
        self.scripted = None
        _log.info("fake_provider.healed", provider=self.name)

    def faults(self) -> tuple[Fault, ...]:
        return tuple(self._faults.values())

    # --- request bookkeeping ---

    def fault(self, kind: FaultKind) -> Fault | None:
        return self._faults.get(kind)

    def over_cap(self) -> float | None:
        """Under a RATE_CAP fault, count this request in the one-second window: None when it is
        admitted, else the seconds until the window has room (its Retry-After)."""
        cap = self.fault(FaultKind.RATE_CAP)
        return None if cap is None else self._cap_window.admit(cap.rps, trio.current_time())

    def draw(self) -> float:
        return self._rng.random()

    def latency_s(self) -> float:
        """Time to first byte: base latency, or base * factor + delay_s under a LATENCY fault."""
        latency = self.fault(FaultKind.LATENCY)
        if latency is None:
            return self.base_latency_s
        return self.base_latency_s * latency.factor + latency.delay_s

    def context_limit(self, model: str) -> int | None:
        return self.context_limits.get(model, self.context_limits.get(None))

    def take_scripted(self) -> _ScriptedResponse | None:
        scripted = self.scripted
        if scripted is not None and scripted.remaining is not None:
            left = scripted.remaining - 1
            self.scripted = attrs.evolve(scripted, remaining=left) if left > 0 else None
        return scripted

    def quota(self, exhausted: bool = False) -> Quota:
        return Quota(
            limit_requests=self.limit_requests,
            limit_tokens=self.limit_tokens,
            remaining_requests=0 if exhausted else max(0, self.limit_requests - self.used_requests),
            remaining_tokens=0 if exhausted else max(0, self.limit_tokens - self.used_tokens),
        )


class _DropConnection(Exception):
    """Raised to cut the connection without finishing the response."""


class _Exchange:
    """The response side of one HTTP exchange on an h11 connection."""

    def __init__(self, conn: h11.Connection, stream: trio.SocketStream) -> None:
        self._conn = conn
        self._stream = stream

    @property
    def stream(self) -> trio.SocketStream:
        return self._stream

    async def _send(self, event: h11.Event) -> None:
        data = self._conn.send(event)
        if data:
            await self._stream.send_all(data)

    async def start(self, status: int, headers: Headers) -> None:
        await self._send(h11.Response(status_code=status, headers=headers))

    async def data(self, data: bytes) -> None:
        if data:
            await self._send(h11.Data(data=data))

    async def end(self) -> None:
        await self._send(h11.EndOfMessage())

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        await self.start(status, [*headers, ("content-length", str(len(body)))])
        await self.data(body)
        await self.end()

    async def json(self, status: int, body: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        await self.whole(status, [("content-type", "application/json"), *headers], dump(body))

    def peer_is_loopback(self) -> bool:
        try:
            return is_loopback(self._stream.socket.getpeername()[0])
        except OSError:
            return False


class _ProviderResponse:
    """The answer to one request to one provider: its exchange, wire format and reply headers."""

    def __init__(self, exchange: _Exchange, provider: ProviderTarget, seq: int) -> None:
        self.exchange = exchange
        self.provider = provider
        self.wire = provider.wire
        self.seq = seq
        self.base_headers = self.wire.reply_headers(seq)

    async def error(
        self,
        status: int,
        reason: Reason,
        message: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Answer with the provider's own error body."""
        body = self.wire.error_body(status, reason, message)
        await self.exchange.json(status, body, [*self.base_headers, *extra])

    async def refuse(self, refused: WireError) -> None:
        """Answer a request the provider would refuse, in its own words."""
        if refused.body is None:
            await self.error(refused.status, refused.reason, refused.message)
        else:
            await self.exchange.json(refused.status, refused.body, self.base_headers)

    def rate_headers(self, quota: Quota) -> Headers:
        return self.wire.rate_limit_headers(quota) if self.wire.has_rate_limit_headers else []


async def _accept(
    out: _ProviderResponse,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
) -> Call | None:
    """The request as a Call, or None once it was refused as the real provider would."""
    if method != "POST":
        await out.error(405, "method_not_allowed", f"Method {method} not allowed for {path}")
        return None
    expected = out.provider.expected_key
    if expected is not None:
        presented = out.wire.presented_key(headers, query)
        if presented != expected:
            await out.refuse(out.wire.auth_error(presented))
            return None
    try:
        return out.wire.parse(path, query, headers, body)
    except WireError as refused:
        await out.refuse(refused)
        return None


async def _list_models(
    out: _ProviderResponse, query: Mapping[str, str], headers: Mapping[str, str]
) -> None:
    """Answer the models listing (a recovery probe's GET): the key checked, the faults applied as
    to a whole reply (a hang, latency, an outage, errors, a rate limit or a spent quota). A
    scripted response is left for the completions it was scripted for."""
    provider = out.provider
    expected = provider.expected_key
    if expected is not None:
        presented = out.wire.presented_key(headers, query)
        if presented != expected:
            await out.refuse(out.wire.auth_error(presented))
            return
    listing = Call(model="", prompt="", prompt_tokens=0, max_tokens=None, stream=False)
    if await _fail_by_fault(out, listing, answers_script=False) or await _fail_by_limit(
        out, listing
    ):
        return
    await out.exchange.json(200, out.wire.models_reply(), out.base_headers)


async def _fail_by_fault(
    out: _ProviderResponse, call: Call, *, answers_script: bool = True
) -> bool:
    """Hang, wait out the latency, then answer a scripted response (unless not
    `answers_script`) or a server error if one is due (a stream error fails whole replies only:
    streams fail in-band). True when the request was answered (or dropped)."""
    provider = out.provider
    if provider.fault(FaultKind.HANG) is not None:
        # Until the client leaves: the connection's watcher then cancels this answer.
        await trio.sleep_forever()
    latency = provider.latency_s()
    if latency > 0:
        await trio.sleep(latency)
    scripted = provider.take_scripted() if answers_script else None
    if scripted is not None:
        await out.exchange.whole(scripted.status, scripted.headers, scripted.body)
        return True
    if (outage := provider.fault(FaultKind.OUTAGE)) is not None:
        await out.error(outage.status, reason_for_status(outage.status))
        return True
    if (broken := provider.fault(FaultKind.STREAM_ERROR)) is not None and not call.stream:
        await out.error(broken.status, reason_for_status(broken.status))
        return True
    errors = provider.fault(FaultKind.ERRORS)
    if errors is not None and provider.draw() < errors.rate:
        await out.error(errors.status, reason_for_status(errors.status))
        return True
    return False


async def _fail_by_limit(out: _ProviderResponse, call: Call) -> bool:
    """Answer an exhausted quota, a rate limit or a too-long prompt. True when answered."""
    provider = out.provider
    if provider.fault(FaultKind.QUOTA) is not None:
        quota = provider.quota(exhausted=True)
        await out.error(429, "quota", extra=out.rate_headers(quota))
        return True
    if (limited := provider.fault(FaultKind.RATE_LIMIT)) is not None:
        await _rate_limited(out, limited.retry_after_s)
        return True
    limit = provider.context_limit(call.model)
    if limit is not None and call.prompt_tokens > limit:
        await out.error(400, "context_length", out.wire.context_message(call.prompt_tokens, limit))
        return True
    return False


async def _rate_limited(out: _ProviderResponse, retry_after_s: float) -> None:
    """The provider's 429, with Retry-After (and retry-after-ms) of `retry_after_s`."""
    retry_headers = [
        ("retry-after", f"{retry_after_s:g}"),
        ("retry-after-ms", str(round(retry_after_s * 1000))),
    ]
    await out.exchange.json(
        429,
        out.wire.rate_limit_body(retry_after_s),
        [*out.base_headers, *retry_headers, *out.rate_headers(out.provider.quota())],
    )


async def _fail_by_cap(out: _ProviderResponse) -> bool:
    """A hidden rate limit (RATE_CAP): refused at once, before any latency, when the request
    is beyond the cap in the last second. True when answered."""
    wait = out.provider.over_cap()
    if wait is None:
        return False
    await _rate_limited(out, wait)
    return True


def _check_name(name: str) -> None:
    if not name or not set(name) <= _NAME_CHARS:
        raise ValueError(
            f"provider name {name!r} must be non-empty and use only letters, digits, '-', '_', '.'"
        )


class FakeProviderServer:
    """A running fake provider server. Get one from `open_fake_provider_server`."""

    def __init__(self, host: str, port: int, seed: int) -> None:
        self.host = host
        self.port = port
        self._seed = seed
        self._providers: dict[str, ProviderTarget] = {}
        self._changed = trio.Event()
        #: TCP connections accepted so far (keep-alive reuses one).
        self.connections_accepted = 0

    def __repr__(self) -> str:
        return f"<FakeProviderServer {self.base_url} providers={sorted(self._providers)}>"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def providers(self) -> Mapping[str, str]:
        """Mounted provider name -> kind."""
        return {name: p.kind for name, p in self._providers.items()}

    # --- providers ---

    def add_provider(self, name: str, kind: str) -> ProviderTarget:
        """Mount a provider of `kind` at `/p/{name}`."""
        _check_name(name)
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not one of: {', '.join(sorted(KINDS))}")
        existing = self._providers.get(name)
        if existing is not None:
            if existing.kind != kind:
                raise ValueError(f"provider {name!r} is already mounted as kind={existing.kind!r}")
            return existing
        provider = ProviderTarget(name, kind, self._seed)
        self._providers[name] = provider
        _log.info("fake_provider.mounted", provider=name, kind=kind)
        return provider

    def _provider(self, name: str) -> ProviderTarget:
        try:
            return self._providers[name]
        except KeyError:
            mounted = ", ".join(sorted(self._providers)) or "none"
            raise UnknownProvider(f"no fake provider named {name!r} (mounted: {mounted})") from None

    def url_for(self, name: str, kind: str | None = None) -> str:
        """The `base_url` a provider config of this kind should use for provider `name`.

        OpenAI-format kinds include the `/v1` their adapters expect (they post to
        `{base_url}/chat/completions`); Anthropic, Gemini and Ollama adapters add their own
        version path. Given a `kind`, an unmounted name is mounted first.
        """
        if kind is not None:
            self.add_provider(name, kind)
        provider = self._provider(name)
        url = f"{self.base_url}{MOUNT_PREFIX}{name}"
        return url + "/v1" if provider.kind in OPENAI_FORMAT_KINDS else url

    def target(self, name: str) -> ProviderTarget:
        """The provider's fault target (`inject` / `heal` / `faults`)."""
        return self._provider(name)

    def heal(self, name: str | None = None) -> None:
        """Lift the faults of one provider, or of all of them."""
        for provider in [self._provider(name)] if name else self._providers.values():
            provider.heal()

    def expect_key(self, name: str, key: str | None) -> None:
        """Require this key in the provider's auth header (None: accept any or none)."""
        self._provider(name).expected_key = key
        _log.info("fake_provider.key_expected", provider=name, required=key is not None)

    def set_latency(self, name: str, seconds: float) -> None:
        """Base time to first byte; a LATENCY fault's `factor` multiplies it."""
        if not seconds >= 0:
            raise ValueError(f"latency seconds={seconds!r} must be >= 0")
        self._provider(name).base_latency_s = seconds

    def set_context_limit(self, name: str, tokens: int | None, *, model: str | None = None) -> None:
        """Answer prompts longer than `tokens` (words) with the provider's context-length 400.

        With `model`, only that model has the limit (a larger model can then succeed); None
        lifts it.
        """
        if tokens is not None and tokens < 0:
            raise ValueError(f"context limit tokens={tokens!r} must be >= 0")
        limits = self._provider(name).context_limits
        if tokens is None:
            limits.pop(model, None)
        else:
            limits[model] = tokens
        _log.info("fake_provider.context_limit_set", provider=name, model=model, tokens=tokens)

    def set_rate_limits(self, name: str, *, requests: int, tokens: int) -> None:
        """The limits the rate-limit headers report; usage counts start again from zero."""
        if requests < 0 or tokens < 0:
            raise ValueError(f"rate limits requests={requests!r} tokens={tokens!r} must be >= 0")
        provider = self._provider(name)
        provider.limit_requests, provider.limit_tokens = requests, tokens
        provider.used_requests = provider.used_tokens = 0

    def respond_with(
        self,
        name: str,
        status: int,
        body: Any = b"",
        headers: Mapping[str, str] | None = None,
        *,
        times: int | None = None,
    ) -> None:
        """Answer the provider's next requests with exactly this reply (until healed, or `times`).

        A dict or list body is sent as JSON; str or bytes as is (text/plain unless `headers`
        set a content-type).
        """
        if not 100 <= status <= 599:
            raise ValueError(f"status={status!r} must be an HTTP status")
        if times is not None and times < 1:
            raise ValueError(f"times={times!r} must be >= 1")
        extra = {k.lower(): v for k, v in (headers or {}).items()}
        if isinstance(body, (dict, list)):
            raw, content_type = dump(body), "application/json"
        else:
            raw = body.encode() if isinstance(body, str) else bytes(body)
            content_type = "text/plain; charset=utf-8"
        extra.setdefault("content-type", content_type)
        self._provider(name).scripted = _ScriptedResponse(status, raw, list(extra.items()), times)
        _log.info("fake_provider.scripted_response_set", provider=name, status=status, times=times)

    # --- recorded requests ---

    def requests(self, name: str) -> tuple[RecordedRequest, ...]:
        """Every request the provider received, oldest first."""
        return tuple(self._provider(name).requests)

    def clear_requests(self, name: str | None = None) -> None:
        for provider in [self._provider(name)] if name else self._providers.values():
            provider.requests.clear()

    async def wait_for_requests(self, name: str, count: int) -> tuple[RecordedRequest, ...]:
        """Wait until the provider has received at least `count` requests (no polling sleeps)."""
        provider = self._provider(name)
        while len(provider.requests) < count:
            await self._changed.wait()
        return tuple(provider.requests)

    def departures(self, name: str) -> tuple[Departure, ...]:
        """Every client that closed its connection mid-answer from this provider, oldest first."""
        return tuple(self._provider(name).departures)

    async def wait_for_departures(self, name: str, count: int) -> tuple[Departure, ...]:
        """Wait until `count` clients have left this provider mid-answer (no polling sleeps)."""
        provider = self._provider(name)
        while len(provider.departures) < count:
            await self._changed.wait()
        return tuple(provider.departures)

    def _record(self, request: RecordedRequest) -> None:
        self._providers[request.provider].requests.append(request)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _record_departure(self, request: h11.Request) -> None:
        path = request.target.decode("ascii", "replace").partition("?")[0]
        name, _, sub_path = path.removeprefix(MOUNT_PREFIX).partition("/")
        provider = self._providers.get(name) if path.startswith(MOUNT_PREFIX) else None
        if provider is not None:
            provider.departures.append(Departure(name, "/" + sub_path, trio.current_time()))
            _log.info("fake_provider.client_left", provider=name, path="/" + sub_path)
            self._notify()

    # --- HTTP ---

    async def serve_connection(self, stream: trio.SocketStream) -> None:
        """Serve one TCP connection: requests one after another (keep-alive) until it closes."""
        self.connections_accepted += 1
        conn = h11.Connection(h11.SERVER)
        exchange = _Exchange(conn, stream)
        async with stream:
            try:
                while True:
                    request, body = await self._read_request(conn, stream)
                    if request is None:
                        return
                    if not await self._respond_while_watching(exchange, conn, request, body):
                        return
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
            except h11.RemoteProtocolError as exc:
                await self._refuse(exchange, conn, exc)
            except (_DropConnection, trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _respond_while_watching(
        self, exchange: _Exchange, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> bool:
        """Answer, reading the connection meanwhile: a client that closes it mid-answer cancels
        the answer at once and is recorded as a departure. False when the client left.

        Event-driven, not polled: the close wakes the pending read, so the departure's time is
        when the kernel delivered the FIN (or reset), whatever the answer was doing (a latency
        sleep, a hang, a slow drip). Bytes the client sends meanwhile (a pipelined request) go to
        h11's buffer for the next cycle.
        """
        stream = exchange.stream
        left = False

        async def watch(scope: trio.CancelScope) -> None:
            nonlocal left
            try:
                while data := await stream.receive_some(65536):
                    conn.receive_data(data)
            except trio.BrokenResourceError:
                pass
            left = True
            self._record_departure(request)
            scope.cancel()

        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            try:
                await self._respond(exchange, request, body)
            except Exception as exc:  # raised as itself, not wrapped in the nursery's group
                failure = exc
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return not left

    async def _refuse(
        self, exchange: _Exchange, conn: h11.Connection, exc: h11.RemoteProtocolError
    ) -> None:
        """Answer bytes that are not HTTP with a 4xx, then hang up."""
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = {"error": {"message": f"bad HTTP request: {exc}", "type": "bad_request"}}
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await exchange.json(exc.error_status_hint, body, [("connection", "close")])

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    raise h11.RemoteProtocolError("request body too large", 413)
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            else:  # ConnectionClosed (or PAUSED, which cannot happen before our reply)
                return None, b""

    async def _respond(self, exchange: _Exchange, request: h11.Request, body: bytes) -> None:
        target = request.target.decode("ascii", "replace")
        path, _, query_string = target.partition("?")
        method = request.method.decode("ascii", "replace")
        if path.startswith(ADMIN_PREFIX):
            await self._admin(exchange, method, path.removeprefix(ADMIN_PREFIX), body)
            return
        name, _, sub_path = path.removeprefix(MOUNT_PREFIX).partition("/")
        provider = self._providers.get(name) if path.startswith(MOUNT_PREFIX) else None
        if provider is None:
            mounted = ", ".join(sorted(self._providers)) or "none"
            message = f"no fake provider is mounted at {path} (mounted: {mounted})"
            await exchange.json(404, {"error": {"message": message, "type": "not_found"}})
            return
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1") for key, value in request.headers
        }
        query = dict(urllib.parse.parse_qsl(query_string))
        try:
            parsed = json.loads(body) if body else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        self._record(
            RecordedRequest(
                provider=provider.name,
                method=method,
                path="/" + sub_path,
                query=query,
                headers=headers,
                json=parsed,
                body=body,
                at=trio.current_time(),
            )
        )
        await self._answer(exchange, provider, method, "/" + sub_path, query, headers, body)

    async def _admin(self, exchange: _Exchange, method: str, name: str, body: bytes) -> None:
        """The fault admin endpoint: PUT sets a fault, DELETE lifts them all, GET lists them."""

        async def refuse(status: int, message: str) -> None:
            await exchange.json(status, {"error": {"message": message, "type": "fault_admin"}})

        if not exchange.peer_is_loopback():
            await refuse(403, "the fault admin endpoint answers loopback clients only")
            return
        if method not in ("PUT", "DELETE", "GET"):
            await refuse(405, f"Method {method} not allowed; use PUT, DELETE or GET")
            return
        try:
            provider = self._provider(name)
        except UnknownProvider as exc:
            await refuse(404, str(exc))
            return
        try:
            if method == "PUT":
                provider.inject(fault_from_json(json.loads(body or b"null")))
            elif method == "DELETE":
                provider.heal()
        except (UnicodeDecodeError, json.JSONDecodeError):
            await refuse(400, "the body is not JSON: send a fault's fields as a JSON object")
            return
        except ValueError as exc:
            await refuse(400, str(exc))
            return
        faults = [fault_to_json(fault) for fault in provider.faults()]
        await exchange.json(200, {"provider": name, "faults": faults})

    async def _answer(
        self,
        exchange: _Exchange,
        provider: ProviderTarget,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        """Answer one request to a mounted provider: refuse it, fail it as a fault says, or reply."""
        provider.seq += 1
        out = _ProviderResponse(exchange, provider, provider.seq)
        if method == "GET" and path == provider.wire.models_path:
            await _list_models(out, query, headers)
            return
        call = await _accept(out, method, path, query, headers, body)
        if call is None or await _fail_by_cap(out):
            return
        if await _fail_by_fault(out, call) or await _fail_by_limit(out, call):
            return
        answer = Answer.for_call(call)
        provider.used_requests += 1
        provider.used_tokens += answer.prompt_tokens + answer.completion_tokens
        reply_headers = [*out.base_headers, *out.rate_headers(provider.quota())]
        if call.stream:
            await self._send_stream(exchange, provider, call, answer, out.seq, reply_headers)
        else:
            await self._send_reply(exchange, provider, call, answer, out.seq, reply_headers)

    async def _send_reply(
        self,
        exchange: _Exchange,
        provider: ProviderTarget,
        call: Call,
        answer: Answer,
        seq: int,
        headers: Headers,
    ) -> None:
        if provider.fault(FaultKind.MALFORMED) is not None:
            body = provider.wire.malformed_body()
        else:
            body = dump(provider.wire.reply(call, answer, seq))
        headers = [("content-type", "application/json"), *headers]
        drip = provider.fault(FaultKind.SLOW_DRIP)
        if provider.fault(FaultKind.DROP_STREAM) is not None:
            await exchange.start(200, [*headers, ("content-length", str(len(body)))])
            await exchange.data(body[: len(body) // 2])
            raise _DropConnection
        if drip is None:
            await exchange.whole(200, headers, body)
            return
        # A slow body: the reply in as many pieces as it has chunks, `delay_s` apart.
        await exchange.start(200, [*headers, ("content-length", str(len(body)))])
        pieces = max(1, len(answer.chunks))
        size = -(-len(body) // pieces)
        for start in range(0, len(body), size):
            await trio.sleep(drip.delay_s)
            await exchange.data(body[start : start + size])
        await exchange.end()

    async def _send_stream(
        self,
        exchange: _Exchange,
        provider: ProviderTarget,
        call: Call,
        answer: Answer,
        seq: int,
        headers: Headers,
    ) -> None:
        wire = provider.wire
        stream = wire.stream(call, answer, seq)
        drop = provider.fault(FaultKind.DROP_STREAM)
        drip = provider.fault(FaultKind.SLOW_DRIP)
        await exchange.start(
            200, [("content-type", stream.content_type), ("cache-control", "no-cache"), *headers]
        )
        for event in stream.prologue:
            await exchange.data(event)
        if provider.fault(FaultKind.MALFORMED) is not None:
            await exchange.data(wire.malformed_event(call))
        broken = provider.fault(FaultKind.STREAM_ERROR)
        for index, chunk in enumerate(stream.chunks):
            if drop is not None and index >= drop.after_chunks:
                raise _DropConnection
            if broken is not None and index >= broken.after_chunks:
                break
            if drip is not None:
                await trio.sleep(drip.delay_s)
            await exchange.data(chunk)
        if drop is not None:  # all chunks sent, but the stream never says it is complete
            raise _DropConnection
        if broken is not None:  # the provider's own error event, and the stream ends there
            sent = min(broken.after_chunks, len(stream.chunks))
            await exchange.data(wire.stream_error_event(call, sent))
        else:
            for event in stream.epilogue:
                await exchange.data(event)
        await exchange.end()


@asynccontextmanager
async def open_fake_provider_server(
    providers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 0,
) -> AsyncIterator[FakeProviderServer]:
    """Run a fake provider server for the duration of the block.

    `providers` maps name -> kind (openai, mistral, huggingface, anthropic, gemini, ollama);
    None mounts `DEFAULT_PROVIDERS`. `host` must be a loopback address; `port` 0 picks a free
    one. `seed` seeds each provider's error-rate draws.
    """
    if not is_loopback(host):
        raise ValueError(
            f"host={host!r} is not a loopback address; the fake server binds only to loopback"
        )
    if host == "localhost":
        host = "127.0.0.1"
    if not 0 <= port <= 65535:
        raise ValueError(f"port={port!r} must be between 0 and 65535")
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = FakeProviderServer(host, listeners[0].socket.getsockname()[1], seed)
    items = providers.items() if isinstance(providers, Mapping) else providers
    try:
        for name, kind in DEFAULT_PROVIDERS.items() if items is None else items:
            server.add_provider(name, kind)
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve, server, listeners, nursery)
            _log.info("fake_server.started", base_url=server.base_url)
            try:
                with register_in_process_server(server.base_url, server.target):
                    yield server
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The only other task is the accept loop; hand back the block's own error unwrapped.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        _log.info("fake_server.stopped", base_url=server.base_url)


async def _serve(
    server: FakeProviderServer, listeners: list[trio.SocketListener], nursery: trio.Nursery
) -> None:
    await trio.serve_listeners(server.serve_connection, listeners, handler_nursery=nursery)


# --- CLI ---


def parse_providers(spec: str) -> dict[str, str]:
    """Parse `name:kind,name:kind` (a bare `kind` names a provider after its kind)."""
    providers: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, kind = item.partition(":")
        kind = kind or name
        _check_name(name)
        if kind not in KINDS:
            raise ValueError(
                f"provider {name!r}: kind={kind!r} is not one of: {', '.join(sorted(KINDS))}"
            )
        if name in providers:
            raise ValueError(f"provider {name!r} is listed twice")
        providers[name] = kind
    if not providers:
        raise ValueError(f"--providers {spec!r} names no provider")
    return providers


def build_parser(prog: str = "uptax fake-providers") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a local server that speaks the LLM providers' protocols, for testing.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument(
        "--providers",
        default=",".join(f"{name}:{kind}" for name, kind in DEFAULT_PROVIDERS.items()),
        help="comma-separated name:kind list (kinds: " + ", ".join(sorted(KINDS)) + ")",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for error-rate faults")
    return parser


async def _run_cli(providers: Mapping[str, str], host: str, port: int, seed: int) -> None:
    """Serve until Ctrl-C. Once serving, the interrupt is received, not raised: raised, it
    lands in whichever task runs, a connection's handler mid-reply included, and comes out
    of the server's nurseries wrapped in groups instead of as a KeyboardInterrupt."""
    async with open_fake_provider_server(providers, host=host, port=port, seed=seed) as server:
        with trio.open_signal_receiver(signal.SIGINT) as interrupts:
            _announce(server)
            async for _ in interrupts:
                return


def _announce(server: FakeProviderServer) -> None:
    """The URLs on stdout, a line each; how to inject faults on stderr."""
    print(f"base_url={server.base_url}", flush=True)
    for name, kind in server.providers.items():
        print(f"provider={name} kind={kind} base_url={server.url_for(name)}", flush=True)
    print(
        f"Faults: PUT {server.base_url}{ADMIN_PREFIX}NAME with a fault's fields as JSON, "
        'e.g. {"kind": "outage"}; DELETE lifts them. Press Ctrl-C to stop.',
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """`uptax fake-providers`: serve until Ctrl-C. Returns the exit status."""
    args = build_parser().parse_args(argv)
    if not is_loopback(args.host):
        print(
            f"error: --host {args.host!r} is not a loopback address; the fake provider server "
            "only binds to loopback (127.0.0.1, ::1, localhost)",
            file=sys.stderr,
        )
        return 2
    if not 0 <= args.port <= 65535:
        print(f"error: --port {args.port} must be between 0 and 65535", file=sys.stderr)
        return 2
    try:
        providers = parse_providers(args.providers)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(_run_cli, providers, args.host, args.port, args.seed)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
