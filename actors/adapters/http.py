"""What every HTTP provider adapter shares: the client, credentials, and failure classification.

Each adapter owns one `httpx.AsyncClient`, built in its constructor (when the provider actor
starts) and closed by `aclose` (when it stops or restarts), with a pool sized to the provider's
bulkhead and a timeout per phase. The level's cancel scope still bounds every call from outside.

Every way a call can fail becomes one `ProviderError`, decided by two tables: `STATUS_RULES` for
HTTP replies (status, then body wording, then headers) and `TRANSPORT_RULES` for httpx exceptions.
Cancellation is never caught: only `httpx.HTTPError` and parse errors are translated.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import os
import re
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import attrs
import httpx
import trio

from actors.errors import FailureKind, ProviderError
from actors.messages import Completion, Request, StreamDone, StreamEvent, TextDelta, Usage
from actors.secrets import redact_text, register_secret

if TYPE_CHECKING:
    from actors.adapters.base import AdapterContext
    from actors.config import ProviderConfig

__all__ = [
    "STATUS_RULES",
    "TRANSPORT_RULES",
    "HTTPAdapter",
    "KindDefaults",
    "StatusRule",
    "classify_status",
    "classify_transport_error",
    "error_detail",
    "parse_retry_after",
    "quota_remaining",
    "read_api_key",
    "stream_completion",
]

_T = TypeVar("_T")
_T_contra = TypeVar("_T_contra", contravariant=True)

#: Longest provider error text carried into a ProviderError message.
_DETAIL_LIMIT = 300


@attrs.frozen
class KindDefaults:
    """A provider kind's real defaults, used when the config leaves them out."""

    kind: str
    base_url: str
    #: Environment variable holding the key; None for kinds that need none (a local Ollama).
    api_key_env: str | None


# --------------------------------------------------------------------------------------------
# Classification of HTTP replies
# --------------------------------------------------------------------------------------------

#: How each provider words "the prompt does not fit the model's context window".
CONTEXT_TOO_LONG_WORDING = re.compile(
    "|".join(
        [
            r"context_length_exceeded",  # OpenAI error code
            r"context[ _]length",  # OpenAI / vLLM / Mistral / Ollama: "maximum context length"
            r"context[ _]window",
            r"prompt is too long",  # Anthropic: "prompt is too long: 208656 tokens > 200000 maximum"
            r"exceed context limit",  # Anthropic: "input length and `max_tokens` exceed context limit"
            r"input token count .* exceeds the maximum",  # Gemini
            r"too many tokens",
            r"too large for model",  # Mistral
            r"`inputs` tokens \+ `max_new_tokens` must be",  # Hugging Face TGI
        ]
    ),
    re.IGNORECASE,
)

#: Gemini answers a bad key with 400 INVALID_ARGUMENT rather than 401.
AUTH_WORDING = re.compile(r"API_KEY_INVALID|API key not valid|invalid[ _]api[ _]key", re.IGNORECASE)


@attrs.frozen
class StatusRule:
    """Statuses in [low, high] whose body matches `wording` (any body when None) are `kind`."""

    low: int
    high: int
    kind: FailureKind
    wording: re.Pattern[str] | None = None

    def matches(self, status: int, detail: str) -> bool:
        if not self.low <= status <= self.high:
            return False
        return self.wording is None or self.wording.search(detail) is not None


#: First match wins. Anything not listed (1xx, 3xx) is an unexpected reply: MALFORMED.
STATUS_RULES: tuple[StatusRule, ...] = (
    StatusRule(401, 401, FailureKind.AUTH),
    StatusRule(403, 403, FailureKind.AUTH),
    StatusRule(429, 429, FailureKind.RATE_LIMITED),
    StatusRule(408, 408, FailureKind.TIMEOUT),
    StatusRule(400, 400, FailureKind.AUTH, AUTH_WORDING),
    StatusRule(400, 400, FailureKind.CONTEXT_TOO_LONG, CONTEXT_TOO_LONG_WORDING),
    StatusRule(413, 413, FailureKind.CONTEXT_TOO_LONG, CONTEXT_TOO_LONG_WORDING),
    StatusRule(422, 422, FailureKind.CONTEXT_TOO_LONG, CONTEXT_TOO_LONG_WORDING),
    StatusRule(400, 499, FailureKind.CLIENT_ERROR),
    # 500 / 502 / 503 / 504, Anthropic's 529 "overloaded", and every other 5xx.
    StatusRule(500, 599, FailureKind.SERVER_ERROR),
)


def error_detail(body: bytes | str) -> str:
    """The provider's own error message from an error body, redacted and shortened.

    Understands OpenAI / Anthropic / Gemini (``{"error": {"message": ...}}``), Ollama and the
    Hugging Face router (``{"error": "..."}``), Mistral (``{"message": ...}``) and FastAPI-style
    ``{"detail": ...}``; otherwise the start of the body itself.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    message: Any = None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Gemini sometimes wraps its error object in a list
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            code = error.get("code") or error.get("type") or error.get("status")
            if isinstance(code, str) and isinstance(message, str) and code not in message:
                message = f"{message} [{code}]"
        elif isinstance(error, str):
            message = error
        if message is None:
            message = data.get("message") or data.get("detail")
    if not isinstance(message, str):
        message = " ".join(text.split())
    message = redact_text(message)
    if len(message) > _DETAIL_LIMIT:
        message = message[: _DETAIL_LIMIT - 3] + "..."
    return message


def _gemini_retry_delay(body: bytes | str) -> float | None:
    """Gemini's 429 puts the wait in ``error.details[].retryDelay`` ("37s") rather than a header."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    # Only Gemini's error is an object; Ollama and others send a plain string.
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
    return None


def parse_retry_after(
    headers: Mapping[str, str] | httpx.Headers, *, now: datetime | None = None
) -> float | None:
    """Seconds the provider asked us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` is either delta-seconds or an HTTP date; a date is measured against `now`,
    else the reply's own ``Date`` header (the server's clock, immune to our skew), else our clock.
    A date in the past means 0. Unparseable values are ignored (None).
    """
    headers = httpx.Headers(headers)
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            value = float(milliseconds)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    when = _http_date(raw)
    if when is None:
        return None
    reference = now or _http_date(headers.get("date", "")) or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def _http_date(value: str) -> datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


#: (remaining, limit) header pairs; the quota left is the scarcest of them.
QUOTA_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-limit-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-limit-tokens"),
    ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-limit"),
    ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-limit"),
    ("anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-input-tokens-limit"),
    ("anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-output-tokens-limit"),
)


def quota_remaining(headers: Mapping[str, str] | httpx.Headers) -> float | None:
    """Fraction (0..1) of the rate-limit quota left, or None when the reply carries no such headers."""
    headers = httpx.Headers(headers)
    fractions: list[float] = []
    for remaining_name, limit_name in QUOTA_HEADERS:
        remaining, limit = headers.get(remaining_name), headers.get(limit_name)
        if remaining is None or limit is None:
            continue
        try:
            fraction = float(remaining) / float(limit)
        except (ValueError, ZeroDivisionError):
            continue
        if math.isfinite(fraction):
            fractions.append(min(1.0, max(0.0, fraction)))
    return min(fractions) if fractions else None


def classify_status(
    provider: str,
    status: int,
    headers: Mapping[str, str] | httpx.Headers,
    body: bytes | str,
    *,
    key_env: str | None = None,
) -> ProviderError:
    """The `ProviderError` for a non-2xx reply (see `STATUS_RULES`)."""
    detail = error_detail(body)
    kind = next(
        (rule.kind for rule in STATUS_RULES if rule.matches(status, detail)), FailureKind.MALFORMED
    )
    retry_after = parse_retry_after(headers)
    quota = quota_remaining(headers)
    if kind is FailureKind.AUTH:
        # The provider's own words may quote (part of) the key: name the variable instead.
        where = f"the key in {key_env}" if key_env else "the request (no api_key_env is configured)"
        message = (
            f"{provider}: authentication failed (HTTP {status}); the provider rejected {where}"
        )
    elif kind is FailureKind.RATE_LIMITED:
        if retry_after is None:
            retry_after = _gemini_retry_delay(body)
        wait = f", retry after {retry_after:g}s" if retry_after is not None else ""
        message = f"{provider}: rate limited (HTTP {status}{wait}): {detail}"
        if quota is None:
            quota = 0.0
    elif kind is FailureKind.CONTEXT_TOO_LONG:
        message = f"{provider}: prompt exceeds the model's context window (HTTP {status}): {detail}"
    elif kind is FailureKind.MALFORMED:
        message = f"{provider}: unexpected HTTP {status}: {detail}"
    else:
        message = f"{provider}: HTTP {status}: {detail}"
    return ProviderError(
        kind, message, status=status, retry_after_s=retry_after, quota_remaining=quota
    )


# --------------------------------------------------------------------------------------------
# Classification of transport failures
# --------------------------------------------------------------------------------------------

#: First isinstance match wins; order matters (timeouts are transport errors too).
TRANSPORT_RULES: tuple[tuple[type[httpx.HTTPError], FailureKind, str], ...] = (
    (httpx.ConnectTimeout, FailureKind.TIMEOUT, "connect timed out"),
    (httpx.ReadTimeout, FailureKind.TIMEOUT, "read timed out"),
    (httpx.WriteTimeout, FailureKind.TIMEOUT, "write timed out"),
    (httpx.PoolTimeout, FailureKind.TIMEOUT, "no free connection in the pool"),
    (httpx.TimeoutException, FailureKind.TIMEOUT, "timed out"),
    (httpx.ConnectError, FailureKind.CONNECTION, "cannot connect"),
    (httpx.RemoteProtocolError, FailureKind.CONNECTION, "connection dropped"),
    (httpx.ReadError, FailureKind.CONNECTION, "read failed"),
    (httpx.WriteError, FailureKind.CONNECTION, "write failed"),
    (httpx.DecodingError, FailureKind.MALFORMED, "reply body could not be decoded"),
    (httpx.TransportError, FailureKind.CONNECTION, "transport failed"),
    (httpx.HTTPError, FailureKind.CONNECTION, "HTTP failure"),
)


def classify_transport_error(provider: str, exc: httpx.HTTPError) -> ProviderError:
    """The `ProviderError` for an exception httpx raised while sending or reading."""
    kind, what = next(
        ((kind, what) for exc_type, kind, what in TRANSPORT_RULES if isinstance(exc, exc_type)),
        (FailureKind.CONNECTION, "HTTP failure"),
    )
    reason = redact_text(str(exc)) or exc.__class__.__name__
    return ProviderError(kind, f"{provider}: {what}: {reason}")


@contextlib.contextmanager
def translating_transport_errors(provider: str) -> Iterator[None]:
    """Turn httpx exceptions raised in the block into classified `ProviderError`s."""
    try:
        yield
    except httpx.HTTPError as exc:
        raise classify_transport_error(provider, exc) from None


def malformed(provider: str, what: str) -> ProviderError:
    return ProviderError(FailureKind.MALFORMED, f"{provider}: malformed reply: {what}")


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


def read_api_key(env_name: str | None) -> str | None:
    """The key in `env_name`, or None when unset or blank. Registered for log redaction."""
    if env_name is None:
        return None
    value = os.environ.get(env_name, "").strip()
    if not value:
        return None
    register_secret(value)
    return value


class _HeaderKeyAuth(httpx.Auth):
    """Adds the key header as each request is sent, so the key lives in no client-wide state."""

    def __init__(self, header: str, value: str) -> None:
        self._header = header
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._header] = self._value
        yield request

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} {self._header}: ***>"


# --------------------------------------------------------------------------------------------
# The shared adapter base
# --------------------------------------------------------------------------------------------


class StreamDecoder(Protocol[_T]):
    def feed(self, chunk: bytes) -> list[_T]: ...

    def close(self) -> list[_T]: ...


def stream_completion(
    provider: str,
    model: str,
    reply_model: str | None,
    text: list[str],
    *,
    ended: bool,
    end_marker: str,
    finish_reason: str,
    usage: Usage,
    quota: float | None,
) -> Completion:
    """What every stream parser's `finish` returns: the whole completion, or CONNECTION when
    the stream ended before the provider's `end_marker` (the reply was cut short)."""
    if not ended:
        raise ProviderError(FailureKind.CONNECTION, f"{provider}: stream ended before {end_marker}")
    return Completion(
        text="".join(text),
        model=reply_model or model,
        finish_reason=finish_reason,
        usage=usage,
        quota_remaining=quota,
    )


class StreamParser(Protocol[_T_contra]):
    """Turns a provider's decoded stream items into text deltas and, at the end, a `Completion`."""

    @property
    def done(self) -> bool:
        """The provider's end-of-stream marker has arrived."""
        ...

    def feed(self, item: _T_contra) -> Iterable[str]: ...

    def finish(self, quota: float | None) -> Completion:
        """The whole completion; raises CONNECTION when the stream ended without its end marker."""
        ...


class HTTPAdapter:
    """Base of the HTTP adapters: owns the client and turns every failure into a `ProviderError`.

    A missing key does not fail construction: the adapter reports `unavailable_reason` and every
    call raises UNAVAILABLE with that reason, without touching the network.
    """

    defaults: ClassVar[KindDefaults]
    #: Header carrying the key, and the prefix before it ("Bearer ").
    key_header: ClassVar[str] = "authorization"
    key_prefix: ClassVar[str] = "Bearer "

    def __init__(
        self,
        config: ProviderConfig,
        context: AdapterContext,
        *,
        defaults: KindDefaults | None = None,
    ) -> None:
        defaults = defaults or self.defaults
        self.name = config.name
        self.kind = config.kind
        self.base_url = (config.base_url or defaults.base_url).rstrip("/")
        self.key_env = config.api_key_env or defaults.api_key_env
        key = read_api_key(self.key_env)
        self.unavailable_reason: str | None = None
        if self.key_env is not None and key is None:
            self.unavailable_reason = f"{self.key_env} is not set"
        limits = httpx.Limits(
            max_connections=config.max_in_flight,
            max_keepalive_connections=config.max_in_flight,
        )
        timeout = httpx.Timeout(
            connect=config.connect_timeout_s,
            read=config.read_timeout_s,
            write=config.read_timeout_s,
            pool=config.read_timeout_s,
        )
        transport: httpx.AsyncBaseTransport | None = getattr(context, "http_transport", None)
        url_problem = _base_url_problem(self.base_url)
        if url_problem is not None:
            # A bad base_url is a config problem: report it instead of crashing the actor.
            self.unavailable_reason = f"base_url {self.base_url!r} {url_problem}"
        self._client = httpx.AsyncClient(
            base_url=self.base_url if url_problem is None else "",
            headers=self.default_headers(config),
            auth=_HeaderKeyAuth(self.key_header, self.key_prefix + key) if key else None,
            limits=limits,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def default_headers(self, config: ProviderConfig) -> dict[str, str]:
        """Headers every request carries besides the key (content type, API version)."""
        return {"accept": "application/json"}

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
        raise NotImplementedError

    def stream(self, request: Request, model: str) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError

    # -- helpers for subclasses --------------------------------------------------------------

    def ensure_available(self) -> None:
        if self.unavailable_reason is not None:
            raise ProviderError(
                FailureKind.UNAVAILABLE, f"{self.name}: unavailable: {self.unavailable_reason}"
            )

    def error_for(self, response: httpx.Response) -> ProviderError:
        return classify_status(
            self.name,
            response.status_code,
            response.headers,
            response.content,
            key_env=self.key_env,
        )

    async def post_json(
        self, path: str, body: Mapping[str, Any], *, params: Mapping[str, str] | None = None
    ) -> tuple[Any, httpx.Headers]:
        """POST `body`; the decoded JSON reply and its headers, or a classified `ProviderError`."""
        self.ensure_available()
        with translating_transport_errors(self.name):
            response = await self._client.post(path, json=body, params=params)
        if not response.is_success:
            raise self.error_for(response)
        try:
            return json.loads(response.content), response.headers
        except ValueError:
            preview = " ".join(response.text[:80].split())
            raise malformed(self.name, f"body is not JSON: {redact_text(preview)!r}") from None

    @contextlib.asynccontextmanager
    async def open_stream(
        self, path: str, body: Mapping[str, Any], *, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """POST `body` and hold the streaming response open; closed on exit, cancel included.

        httpx errors raised in the block (reading the body) are classified too.
        """
        self.ensure_available()
        with translating_transport_errors(self.name):
            async with self._client.stream("POST", path, json=body, params=params) as response:
                if not response.is_success:
                    await response.aread()
                    raise self.error_for(response)
                yield response

    async def stream_completion(
        self,
        path: str,
        body: Mapping[str, Any],
        decoder: StreamDecoder[_T],
        parser: StreamParser[_T],
        *,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Text deltas as the provider streams them, then one `StreamDone`.

        A body that ends before the provider's end marker raises CONNECTION; an undecodable or
        wrongly shaped item raises MALFORMED; both only after the deltas already yielded.
        """
        async with self.open_stream(path, body, params=params) as response:
            quota = quota_remaining(response.headers)
            chunks = response.aiter_bytes()
            async for chunk in chunks:
                for item in self._decoded(decoder.feed, chunk):
                    for text in self._parsed(parser, item):
                        yield TextDelta(text)
                if parser.done:
                    await _drain(chunks)
                    break
            else:
                for item in self._decoded(lambda _: decoder.close(), b""):
                    for text in self._parsed(parser, item):
                        yield TextDelta(text)
        try:
            completion = parser.finish(quota)
        except SHAPE_ERRORS as exc:
            raise malformed(self.name, f"stream: {exc}") from None
        yield StreamDone(completion)

    # Items are parsed one at a time, so text that arrived before a bad item is delivered before
    # the failure, whatever the network chunking.

    def _decoded(self, decode: Callable[[bytes], list[_T]], chunk: bytes) -> list[_T]:
        try:
            return decode(chunk)
        except SHAPE_ERRORS as exc:  # StreamDecodeError is a ValueError
            raise malformed(self.name, f"stream: {exc}") from None

    def _parsed(self, parser: StreamParser[_T], item: _T) -> list[str]:
        try:
            return [text for text in parser.feed(item) if text]
        except SHAPE_ERRORS as exc:
            raise malformed(self.name, f"stream: {exc}") from None


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


def _base_url_problem(base_url: str) -> str | None:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        return f"is not a valid URL ({exc})"
    if url.scheme not in ("http", "https") or not url.host:
        return "must be an absolute http:// or https:// URL"
    return None


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


def loads_event(provider: str, data: str) -> Any:
    """One SSE event's JSON data, or MALFORMED."""
    try:
        return json.loads(data)
    except ValueError:
        raise malformed(provider, f"stream event is not JSON: {redact_text(data[:80])!r}") from None
