"""The last-resort kinds: `cache` (recent successful replies) and `template` (canned answers).

Both answer at once and never touch the network; when they have nothing for a request they raise
`ProviderError(NO_MATCH)`, which does not count against a breaker.

In a fleet (`[state] backend = "redis"`) the cache's replies are shared too, per tenant with the
cache's TTL, and a miss here asks what the other instances saw.

There is one reply cache per runtime, whatever the number of `cache` providers: it lives in the
runtime's shared objects under the well-known key ``(REPLY_CACHE_KEY, "cache")``, so the cascade
that fills it and the adapters that read it see the same object. Get it with
`shared_reply_cache(context)`; its size and TTL come from the first `cache` provider in the config
(defaults when there is none), whoever asks first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, NamedTuple

import attrs
import trio

from actors.adapters.base import AdapterContext, register_kind
from actors.errors import ConfigError, FailureKind, ProviderError
from actors.messages import (
    CacheKey,
    Completion,
    Complexity,
    Quality,
    Request,
    StreamDone,
    StreamEvent,
    TextDelta,
)

if TYPE_CHECKING:
    from actors.config import ProviderConfig, TemplateConfig
    from actors.state import FleetState

#: The provider name under which the one reply cache is shared (kind "cache").
REPLY_CACHE_KEY = "__reply_cache__"

_DEFAULT_CACHE_SIZE = 1024
_DEFAULT_CACHE_TTL_S = 3600.0


class CachedReply(NamedTuple):
    """A cached reply: built for every reply the cache keeps, so a tuple (see `CacheKey`)."""

    text: str
    #: The model that originally produced the text.
    model: str
    stored_at: float


class ResponseCache:
    """A bounded LRU of recent successful replies, keyed on `Request.cache_key()`, with a TTL."""

    def __init__(
        self,
        size: int = _DEFAULT_CACHE_SIZE,
        ttl_s: float = _DEFAULT_CACHE_TTL_S,
        *,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if size < 1:
            raise ValueError(f"size={size!r} must be >= 1")
        if not ttl_s > 0:
            raise ValueError(f"ttl_s={ttl_s!r} must be > 0")
        self.size = size
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[CacheKey, CachedReply] = OrderedDict()
        self.hits = 0
        self.misses = 0
        #: In a fleet (`actors.state`): replies are shared, and a local miss asks the others'.
        self.fleet: FleetState | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<ResponseCache {len(self._entries)}/{self.size} ttl_s={self.ttl_s}>"

    def put(self, request: Request, completion_text: str, model: str) -> None:
        """Remember a successful reply; the least recently used entry goes when full."""
        key = request.cache_key()
        entries = self._entries
        entries.pop(key, None)
        while len(entries) >= self.size:
            entries.popitem(last=False)
        entries[key] = CachedReply(completion_text, model, self._clock())
        if self.fleet is not None:
            entry = {"text": completion_text, "model": model}
            self.fleet.offer_cache(_scope(request), key, entry, self.ttl_s)

    async def get_shared(self, request: Request) -> CachedReply | None:
        """`get`, then on a miss what another instance of the fleet shared (kept here too)."""
        entry = self.get(request)
        if entry is not None or self.fleet is None:
            return entry
        found = await self.fleet.cache_get(_scope(request), request.cache_key())
        if found is None:
            return None
        self.put(request, found["text"], found["model"])
        self.hits += 1
        self.misses -= 1
        return self._entries[request.cache_key()]

    def get(self, request: Request) -> CachedReply | None:
        """The fresh cached reply for an equivalent request, or None (expired ones are dropped)."""
        key = request.cache_key()
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.stored_at >= self.ttl_s:
            del self._entries[key]
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def clear(self) -> None:
        self._entries.clear()


def _scope(request: Request) -> str:
    """The tenant a request's cache entries belong to ("" for none)."""
    return str((request.context or {}).get("tenant", ""))


def shared_reply_cache(context: AdapterContext) -> ResponseCache:
    """The runtime's one reply cache, created on first use with the first cache provider's size."""

    def build() -> ResponseCache:
        for provider in context.config.providers:
            if provider.kind == "cache":
                return ResponseCache(provider.cache_size, provider.cache_ttl_s)
        return ResponseCache()

    cache = context.shared(REPLY_CACHE_KEY, "cache", build)
    if not isinstance(cache, ResponseCache):
        raise TypeError(f"shared object {REPLY_CACHE_KEY!r} is not a ResponseCache")
    return cache


class _WholeAnswer:
    """A last-resort source has its whole answer at once: its stream is that answer in one
    piece."""

    async def complete(self, request: Request, model: str) -> Completion:
        raise NotImplementedError

    def stream(self, request: Request, model: str) -> AsyncIterator[StreamEvent]:
        return self._stream(request, model)

    async def _stream(self, request: Request, model: str) -> AsyncIterator[StreamEvent]:
        completion = await self.complete(request, model)
        yield TextDelta(completion.text)
        yield StreamDone(completion)


class CacheAdapter(_WholeAnswer):
    """Answers from the reply cache, or NO_MATCH."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache

    def __repr__(self) -> str:
        return f"<CacheAdapter {self.cache!r}>"

    async def complete(self, request: Request, model: str) -> Completion:
        await trio.lowlevel.checkpoint()
        entry = await self.cache.get_shared(request)
        if entry is None:
            raise ProviderError(FailureKind.NO_MATCH, "no cached reply for this request")
        return Completion(text=entry.text, model="cache")

    async def aclose(self) -> None:
        """The cache belongs to the runtime; nothing to release."""


@attrs.frozen
class Template:
    """A validated template: match sets and the text to fill in."""

    name: str
    text: str
    complexity: frozenset[Complexity]
    quality: frozenset[Quality]
    contains: str

    def matches(self, request: Request) -> bool:
        return (
            (not self.complexity or request.complexity in self.complexity)
            and (not self.quality or request.quality in self.quality)
            and (not self.contains or self.contains in request.last_user_text.lower())
        )

    def render(self, request: Request) -> str:
        """Fill placeholders with str.replace: braces in prompts or texts are never interpreted."""
        return (
            self.text.replace("{complexity}", request.complexity.value)
            .replace("{quality}", request.quality.value)
            .replace("{prompt}", request.last_user_text)
        )


def compile_templates(templates: tuple[TemplateConfig, ...]) -> tuple[Template, ...]:
    """Validate the configured templates; a bad value raises ConfigError naming the field."""
    compiled = []
    for index, template in enumerate(templates):
        where = f"templates[{index}]"
        complexity = set()
        for value in template.complexity:
            try:
                complexity.add(Complexity(value.lower()))
            except ValueError:
                choices = ", ".join(c.value for c in Complexity)
                raise ConfigError(
                    f"{where}.complexity: {value!r} is not one of: {choices}"
                ) from None
        quality = set()
        for value in template.quality:
            try:
                quality.add(Quality(value.lower()))
            except ValueError:
                choices = ", ".join(q.value for q in Quality)
                raise ConfigError(f"{where}.quality: {value!r} is not one of: {choices}") from None
        if not template.text:
            raise ConfigError(f"{where}.text: must not be empty")
        compiled.append(
            Template(
                name=template.name or str(index),
                text=template.text,
                complexity=frozenset(complexity),
                quality=frozenset(quality),
                contains=template.contains.lower(),
            )
        )
    return tuple(compiled)


class TemplateAdapter(_WholeAnswer):
    """Answers with the first configured template that matches the request, or NO_MATCH."""

    def __init__(self, templates: tuple[Template, ...]) -> None:
        self.templates = templates

    def __repr__(self) -> str:
        return f"<TemplateAdapter {len(self.templates)} templates>"

    def match(self, request: Request) -> Template | None:
        for template in self.templates:
            if template.matches(request):
                return template
        return None

    async def complete(self, request: Request, model: str) -> Completion:
        await trio.lowlevel.checkpoint()
        template = self.match(request)
        if template is None:
            raise ProviderError(FailureKind.NO_MATCH, "no template matches this request")
        return Completion(text=template.render(request), model=f"template:{template.name}")

    async def aclose(self) -> None:
        """Nothing to release."""


def cache_adapter(config: ProviderConfig, context: AdapterContext) -> CacheAdapter:
    return CacheAdapter(shared_reply_cache(context))


def template_adapter(config: ProviderConfig, context: AdapterContext) -> TemplateAdapter:
    return TemplateAdapter(compile_templates(context.config.templates))


register_kind("cache")(cache_adapter)
register_kind("template")(template_adapter)
