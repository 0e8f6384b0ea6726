"""The shared HTTP adapter: one client, one way to send, stream, classify and redact, whatever the
provider's wire format.

Each adapter owns one `httpx.AsyncClient`, built in its constructor (when the provider actor
starts) and closed by `aclose` (when it stops or restarts), with a pool sized to the provider's
bulkhead and a timeout per phase. The level's cancel scope still bounds every call from outside.
Every way a call can fail becomes one `ProviderError` (see `actors.adapters.status` for replies,
`actors.adapters.transport` for httpx exceptions). Cancellation is never caught.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import httpx
import trio

from actors.adapters.base import Adapter, AdapterContext, register_kind
from actors.adapters.credentials import HeaderKeyAuth, read_api_key
from actors.adapters.direct import DirectPost
from actors.adapters.headers import parse_retry_after, quota_remaining
from actors.adapters.parsing import SHAPE_ERRORS, malformed
from actors.adapters.pool import PooledTransport
from actors.adapters.shaping import (
    left_out_sampling,
    model_shape,
    request_shape,
    without_sampling,
)
from actors.adapters.status import STATUS_RULES, StatusRule, classify_status, error_detail
from actors.adapters.transport import (
    TRANSPORT_RULES,
    classify_transport_error,
    translating_transport_errors,
)
from actors.adapters.wire import (
    StreamState,
    WireError,
    WireFormat,
    WireRequest,
    normalise_finish_reason,
)
from actors.errors import FailureKind, ProviderError
from actors.kinds import ProviderKind, kind_named, kinds_speaking
from actors.messages import Completion, Request, StreamDone, StreamEvent, TextDelta, ToolCallDelta
from actors.secrets import redact_text

if TYPE_CHECKING:
    from actors.config import ProviderConfig

# The classification names stay importable from here, where they always were.
__all__ = [
    "STATUS_RULES",
    "TRANSPORT_RULES",
    "HTTPAdapter",
    "StatusRule",
    "classify_status",
    "classify_transport_error",
    "error_detail",
    "parse_retry_after",
    "quota_remaining",
    "read_api_key",
    "register_wire",
]

_T = TypeVar("_T")


class HTTPAdapter:
    """An HTTP provider: the transport, with `wire` for the provider's bytes.

    A missing key does not fail construction: the adapter reports `unavailable_reason` and every
    call raises UNAVAILABLE with that reason, without touching the network.
    """

    def __init__(
        self,
        config: ProviderConfig,
        context: AdapterContext,
        *,
        wire: WireFormat,
        kind: ProviderKind | None = None,
    ) -> None:
        kind = kind or kind_named(config.kind)
        self.wire = wire
        #: The model table's entry for a model (its request shape lives there).
        self._model_info = context.config.model_info
        self.name = config.name
        self.kind = config.kind
        self.base_url = (config.base_url or kind.base_url or "").rstrip("/")
        self.key_env = config.api_key_env or kind.api_key_env
        key = read_api_key(self.key_env)
        self.unavailable_reason: str | None = None
        if self.key_env is not None and key is None:
            self.unavailable_reason = f"{self.key_env} is not set"
        url_problem = _base_url_problem(self.base_url)
        if url_problem is not None:
            # A bad base_url is a config problem: report it instead of crashing the actor.
            self.unavailable_reason = f"base_url {self.base_url!r} {url_problem}"
        auth = HeaderKeyAuth(wire.key_header, wire.key_prefix + key) if key else None
        limits = httpx.Limits(
            max_connections=config.in_flight_ceiling,
            max_keepalive_connections=config.in_flight_ceiling,
        )
        self._client = httpx.AsyncClient(
            base_url=self.base_url if url_problem is None else "",
            headers={
                "accept": "application/json",
                "content-type": "application/json",
                **wire.headers(config),
            },
            auth=auth,
            timeout=httpx.Timeout(
                connect=config.connect_timeout_s,
                read=config.read_timeout_s,
                write=config.read_timeout_s,
                pool=config.read_timeout_s,
            ),
            transport=getattr(context, "http_transport", None) or PooledTransport(limits),
            follow_redirects=False,
        )
        self._urls: dict[str, httpx.URL] = {}
        self._direct = DirectPost(self._client, auth)

    def __repr__(self) -> str:
        state = "available" if self.unavailable_reason is None else self.unavailable_reason
        return (
            f"<{self.__class__.__name__} {self.name!r} kind={self.kind} "
            f"base_url={self.base_url!r} key_env={self.key_env} ({state})>"
        )

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client

    @property
    def is_closed(self) -> bool:
        return self._client.is_closed

    async def aclose(self) -> None:
        await self._client.aclose()

    async def complete(self, request: Request, model: str) -> Completion:
        data, headers = await self._post_json(self._call(request, model, stream=False))
        with self._translating_parse_errors(stream=False):
            completion = self.wire.parse_reply(data, model)
        return self._finished(completion, quota_remaining(headers), request)

    async def stream(self, request: Request, model: str) -> AsyncIterator[StreamEvent]:
        """Text and tool-call deltas as the provider streams them, then one `StreamDone`.

        A body that ends before the provider's end marker raises CONNECTION; an undecodable or
        wrongly shaped item raises MALFORMED; both only after the deltas already yielded.
        """
        decoder = self.wire.stream_decoder()
        state = StreamState(model)
        async with self._open_stream(self._call(request, model, stream=True)) as response:
            quota = quota_remaining(response.headers)
            chunks = response.aiter_bytes()
            async for chunk in chunks:
                for delta in self._parsed(decoder.feed, chunk, state):
                    if _wanted(delta, request):
                        yield delta
                if state.done:
                    await _drain(chunks)
                    break
            else:
                for delta in self._parsed(lambda _: decoder.close(), b"", state):
                    if _wanted(delta, request):
                        yield delta
        with self._translating_parse_errors(stream=True):
            completion = state.completion(self.name, self.wire.end_marker)
        yield StreamDone(self._finished(completion, quota, request))

    def _call(self, request: Request, model: str, *, stream: bool) -> WireRequest:
        """The wire request for `model`, shaped as it takes requests (see `shaping`)."""
        shape = model_shape(model, self._model_info(model))
        request = without_sampling(request, left_out_sampling(request, shape))
        sent = request_shape(request, shape, self.wire.temperature_range)
        try:
            return self.wire.build_request(request, model, sent, stream=stream)
        except WireError as exc:  # a need the format cannot express (the router should know)
            raise ProviderError(exc.kind, f"{self.name}: {exc.message}") from None

    def _finished(
        self, completion: Completion, quota: float | None, request: Request
    ) -> Completion:
        """The finish reason normalised and the quota added; a reply with neither text nor a
        refusal (a safety block, thinking that used every token) is EMPTY_REPLY.

        A reply with tool calls finishes with "tool_calls" even where the provider says "stop"
        (Gemini, Ollama); `parallel_tool_calls=False` keeps only the first call, for providers
        that have no such setting (Gemini, Ollama).
        """
        raw = completion.raw_finish_reason
        if not completion.text and completion.refusal is None and not completion.tool_calls:
            raise ProviderError(
                FailureKind.EMPTY_REPLY,
                f"{self.name}: empty reply: no text and no refusal (finish reason {raw})",
                quota_remaining=quota,
            )
        finish_reason = normalise_finish_reason(raw, self.wire.finish_reasons)
        calls = completion.tool_calls
        if request.parallel_tool_calls is False:
            calls = calls[:1]
        if calls and finish_reason == "stop":
            finish_reason = "tool_calls"
        return attrs.evolve(
            completion, finish_reason=finish_reason, quota_remaining=quota, tool_calls=calls
        )

    async def probe_models(self) -> None:
        """List the provider's models: a free call that tells whether it answers (a recovery
        probe, see `actors.recovery`). Returns on a 2xx reply; a classified `ProviderError`
        otherwise, UNSUPPORTED when the format has no models listing."""
        self._ensure_available()
        path = self.wire.models_path
        if path is None:
            raise ProviderError(FailureKind.UNSUPPORTED, f"{self.name}: no models listing")
        with translating_transport_errors(self.name):
            response = await self._client.get(path, params=self.wire.models_params)
        if not response.is_success:
            raise self._error_for(response)

    # -- sending ------------------------------------------------------------------------------

    def _ensure_available(self) -> None:
        if self.unavailable_reason is not None:
            raise ProviderError(
                FailureKind.UNAVAILABLE, f"{self.name}: unavailable: {self.unavailable_reason}"
            )

    def _url(self, path: str) -> httpx.URL:
        """`path` joined to the base URL, as the client joins it, once per path (joining is
        a good part of what building a request costs)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._client.build_request("POST", path).url
        return url

    def _error_for(self, response: httpx.Response) -> ProviderError:
        return classify_status(
            self.name,
            response.status_code,
            response.headers,
            response.content,
            key_env=self.key_env,
        )

    async def _post_json(self, call: WireRequest) -> tuple[Any, httpx.Headers]:
        """POST the call; the decoded JSON reply and its headers, or a classified `ProviderError`."""
        self._ensure_available()
        url, content = self._url(call.path), _json_bytes(call.body)
        with translating_transport_errors(self.name):
            if call.params is None and self._direct.applies(url):
                response = await self._direct.post(url, content)
            else:
                response = await self._client.post(url, content=content, params=call.params)
        if not response.is_success:
            raise self._error_for(response)
        try:
            return json.loads(response.content), response.headers
        except ValueError:
            preview = " ".join(response.text[:80].split())
            raise malformed(self.name, f"body is not JSON: {redact_text(preview)!r}") from None

    @contextlib.asynccontextmanager
    async def _open_stream(self, call: WireRequest) -> AsyncIterator[httpx.Response]:
        """POST the call and hold the streaming response open; closed on exit, cancel included.

        httpx errors raised in the block (reading the body) are classified too.
        """
        self._ensure_available()
        url, content = self._url(call.path), _json_bytes(call.body)
        with translating_transport_errors(self.name):
            if call.params is None and self._direct.applies(url):
                opened = self._direct.stream(url, content)
            else:
                opened = self._client.stream("POST", url, content=content, params=call.params)
            async with opened as response:
                if not response.is_success:
                    await response.aread()
                    raise self._error_for(response)
                yield response

    # -- parsing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translating_parse_errors(self, *, stream: bool) -> Iterator[None]:
        """A `WireError` becomes the provider's `ProviderError`; a reply or stream item of the
        wrong shape (StreamDecodeError is a ValueError), MALFORMED."""
        try:
            yield
        except WireError as exc:
            raise ProviderError(exc.kind, f"{self.name}: {redact_text(exc.message)}") from None
        except SHAPE_ERRORS as exc:
            what = f"stream: {exc}" if stream else f"not {self.wire.reply_name} ({exc!r})"
            raise malformed(self.name, what) from None

    # Items are decoded and parsed one at a time, so text that arrived before a bad item is
    # delivered before the failure, whatever the network chunking.

    def _parsed(
        self, decode: Callable[[bytes], list[Any]], chunk: bytes, state: StreamState
    ) -> Iterator[TextDelta | ToolCallDelta]:
        with self._translating_parse_errors(stream=True):
            items = decode(chunk)
        for item in items:
            with self._translating_parse_errors(stream=True):
                deltas = self.wire.parse_event(item, state)
            yield from deltas


def _wanted(delta: TextDelta | ToolCallDelta, request: Request) -> bool:
    """False for a delta of a second or later tool call when the request wants at most one."""
    return not (
        isinstance(delta, ToolCallDelta)
        and delta.index > 0
        and request.parallel_tool_calls is False
    )


def register_wire(wire: WireFormat) -> WireFormat:
    """Register the shared adapter speaking `wire` for every kind the kinds table gives it."""
    for kind in kinds_speaking(wire.name):
        register_kind(kind.name)(_factory(wire, kind))
    return wire


def _factory(wire: WireFormat, kind: ProviderKind) -> Callable[..., Adapter]:
    def build(config: ProviderConfig, context: AdapterContext) -> Adapter:
        return HTTPAdapter(config, context, wire=wire, kind=kind)

    build.__qualname__ = f"build_{kind.name}"
    return build


#: After a stream's end marker, how long and how much to read waiting for the body to end.
DRAIN_GRACE_S = 0.25
DRAIN_LIMIT_BYTES = 64 * 1024


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows a stream's end marker, unparsed, so the connection can be reused.

    Normally that is only the chunked-encoding terminator, already in flight; left unread, httpx
    would close the connection and the next call would pay a new TCP and TLS handshake. A server
    that keeps talking is cut off (its connection closed) after a short grace or a few KiB.
    """
    drained = 0
    with trio.move_on_after(DRAIN_GRACE_S):
        async for chunk in chunks:
            drained += len(chunk)
            if drained > DRAIN_LIMIT_BYTES:
                return


def _json_bytes(body: Any) -> bytes:
    """`body` encoded as httpx encodes `json=` (the same bytes, without its per-request work)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _base_url_problem(base_url: str) -> str | None:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        return f"is not a valid URL ({exc})"
    if url.scheme not in ("http", "https") or not url.host:
        return "must be an absolute http:// or https:// URL"
    return None
