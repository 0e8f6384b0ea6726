"""Last-resort adapters: the shared reply cache (LRU + TTL) and template matching."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from support import make_config as runtime_config

from actors.adapters.base import ADAPTER_KINDS
from actors.adapters.lastresort import (
    REPLY_CACHE_KEY,
    CacheAdapter,
    ResponseCache,
    TemplateAdapter,
    cache_adapter,
    compile_templates,
    shared_reply_cache,
    template_adapter,
)
from actors.config import Config, LevelConfig, ProviderConfig, TemplateConfig, parse_config
from actors.errors import AllLevelsFailed, ConfigError, FailureKind, ProviderError
from actors.faults import Fault, FaultKind
from actors.messages import Completion, Request, StreamDone, StreamEvent, TextDelta, Usage
from runtime.embed import open_runtime


class SharedObjects:
    """A minimal AdapterContext: one object per (provider, kind), like the runtime's."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.objects: dict[tuple[str, str], Any] = {}

    def shared(self, provider: str, kind: str, factory: Callable[[], Any]) -> Any:
        key = (provider, kind)
        if key not in self.objects:
            self.objects[key] = factory()
        return self.objects[key]


def make_config(templates: tuple[TemplateConfig, ...] = (), **cache: Any) -> Config:
    providers = (
        ProviderConfig(name="cache", kind="cache", **cache),
        ProviderConfig(name="templates", kind="template"),
    )
    return Config(
        providers=providers,
        levels=(LevelConfig("last_resort", ("cache", "templates"), 5.0),),
        templates=templates,
    )


def templates_adapter(*templates: TemplateConfig) -> TemplateAdapter:
    config = make_config(templates)
    return template_adapter(config.provider("templates"), SharedObjects(config))


async def no_match(adapter: CacheAdapter | TemplateAdapter, request: Request) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await adapter.complete(request, "")
    assert info.value.kind is FailureKind.NO_MATCH
    assert not info.value.counts_against_breaker
    return info.value


def test_kinds_are_registered() -> None:
    assert ADAPTER_KINDS["cache"] is cache_adapter
    assert ADAPTER_KINDS["template"] is template_adapter


def test_cache_is_keyed_on_the_normalised_request() -> None:
    cache = ResponseCache(clock=lambda: 0.0)
    cache.put(Request(prompt="What is  Trio?"), "an async library", "gpt-4o")
    hit = cache.get(Request(prompt="what is trio?"))
    assert hit is not None and (hit.text, hit.model) == ("an async library", "gpt-4o")
    assert cache.get(Request(prompt="what is trio?", quality="draft")) is None
    assert cache.get(Request(prompt="what is trio?", max_tokens=10)) is None
    assert (cache.hits, cache.misses) == (1, 2)


ACME = "You are the support bot. Tenant=acme"
GLOBEX = "You are the support bot. Tenant=globex"


def test_cache_key_covers_everything_that_changes_the_answer() -> None:
    cache = ResponseCache(clock=lambda: 0.0)
    asked = Request(prompt="What is my balance?", system=ACME, context={"tenant": "acme"})
    cache.put(asked, "acme's balance is $12", "gpt-4o")
    same = attrs.evolve(asked, prompt="what is  my BALANCE?", system=f"  {ACME} ")
    assert cache.get(same) is not None  # prompt case and whitespace, system whitespace
    others = {
        "system": attrs.evolve(asked, system=GLOBEX),
        "no system": attrs.evolve(asked, system=None),
        "temperature": attrs.evolve(asked, temperature=0.0),
        "context": attrs.evolve(asked, context={"tenant": "globex"}),
        "no context": attrs.evolve(asked, context=None),
        "max_tokens": attrs.evolve(asked, max_tokens=10),
    }
    leaked = [name for name, request in others.items() if cache.get(request) is not None]
    assert leaked == []
    # What only changes how a request is served still finds the entry.
    served = attrs.evolve(asked, budget_usd=0.01, deadline_s=5.0, task_id="t-1")
    assert cache.get(served) is not None


def test_cache_key_reads_as_it_always_has() -> None:
    """A fleet's instances share replies under a digest of the key's repr: one that read
    differently would not find the entries of an instance that runs another version."""
    asked = Request(prompt="What is  MY balance?", system=" Be  brief ", context={"tenant": "acme"})
    assert repr(asked.cache_key()) == (
        "CacheKey(prompt='what is my balance?', system='Be brief', "
        "complexity=<Complexity.MODERATE: 'moderate'>, quality=<Quality.PRODUCTION: 'production'>, "
        "max_tokens=500, temperature=0.7, context=(('tenant', \"'acme'\"),), shape='')"
    )


async def test_outage_never_serves_one_tenants_cached_reply_to_another(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_runtime(runtime_config()) as rt:
        acme = Request(prompt="What is my balance?", system=ACME, context={"tenant": "acme"})
        first = await rt.complete(acme)
        for name in ("openai", "anthropic", "gemini", "local"):
            rt.inject_fault(name, Fault(FaultKind.OUTAGE))
        assert (await rt.complete(acme)).text == first.text  # the cache still serves acme
        for other in (
            attrs.evolve(acme, system=GLOBEX, context={"tenant": "globex"}),
            attrs.evolve(acme, system=GLOBEX),
            attrs.evolve(acme, context={"tenant": "globex"}),
        ):
            with pytest.raises(AllLevelsFailed) as failed:
                await rt.complete(other)
            assert ("cache", "no_match") in [(a.provider, a.outcome) for a in failed.value.attempts]


def test_cache_evicts_least_recently_used() -> None:
    cache = ResponseCache(size=2, clock=lambda: 0.0)
    a, b, c = (Request(prompt=p) for p in "abc")
    cache.put(a, "A", "m")
    cache.put(b, "B", "m")
    assert cache.get(a) is not None  # a is now the most recently used
    cache.put(c, "C", "m")
    assert len(cache) == 2
    assert cache.get(b) is None
    assert cache.get(a) is not None and cache.get(c) is not None


async def test_cache_entries_expire_on_the_trio_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cache = ResponseCache(ttl_s=10.0)
    request = Request(prompt="hello")
    cache.put(request, "hi", "m")
    await trio.sleep(9.9)
    assert cache.get(request) is not None
    await trio.sleep(0.1)
    assert cache.get(request) is None
    assert len(cache) == 0
    cache.put(request, "hi again", "m")  # a new put refreshes the entry
    assert cache.get(request) is not None


def test_cache_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="size=0"):
        ResponseCache(size=0)
    with pytest.raises(ValueError, match="ttl_s=0"):
        ResponseCache(ttl_s=0)


async def test_cache_adapter_answers_from_the_shared_cache(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(cache_size=3, cache_ttl_s=60.0)
    context = SharedObjects(config)
    adapter = cache_adapter(config.provider("cache"), context)
    # The cascade reaches the same cache through the well-known key.
    cache = shared_reply_cache(context)
    assert adapter.cache is cache is context.objects[(REPLY_CACHE_KEY, "cache")]
    assert (cache.size, cache.ttl_s) == (3, 60.0)
    request = Request(prompt="Summarise the report")
    await no_match(adapter, request)
    cache.put(request, "The report says...", "claude-sonnet")
    completion = await adapter.complete(request, "")
    assert completion == Completion(text="The report says...", model="cache", usage=Usage())
    # A restarted actor builds a new adapter and still sees the cached replies.
    rebuilt = cache_adapter(config.provider("cache"), context)
    assert (await rebuilt.complete(request, "")).text == "The report says..."


def test_shared_cache_without_a_cache_provider_uses_defaults() -> None:
    config = Config(
        providers=(ProviderConfig(name="t", kind="template"),),
        levels=(LevelConfig("l", ("t",), 1),),
    )
    cache = shared_reply_cache(SharedObjects(config))
    assert (cache.size, cache.ttl_s) == (1024, 3600.0)


async def test_template_first_match_wins() -> None:
    adapter = templates_adapter(
        TemplateConfig(name="refund", text="Refunds take 5 days.", contains="REFUND"),
        TemplateConfig(name="hard", text="Expert help is busy.", complexity=("expert", "epic")),
        TemplateConfig(name="drafts", text="Draft: {prompt}", quality=("draft",)),
        TemplateConfig(name="both", text="never", complexity=("simple",), quality=("critical",)),
    )
    refund = await adapter.complete(Request(prompt="Where is my Refund?", complexity="epic"), "")
    assert (refund.text, refund.model) == ("Refunds take 5 days.", "template:refund")
    hard = await adapter.complete(Request(prompt="prove it", complexity="expert"), "")
    assert hard.model == "template:hard"
    draft = await adapter.complete(Request(prompt="write {x} {0}", quality="draft"), "")
    assert draft.text == "Draft: write {x} {0}"
    assert draft.usage == Usage()
    await no_match(adapter, Request(prompt="hello", complexity="simple", quality="production"))


async def test_template_with_no_conditions_matches_anything_and_is_named_by_index() -> None:
    adapter = templates_adapter(
        TemplateConfig(text="only {quality} {complexity}", contains="nothing-like-this"),
        TemplateConfig(text="busy, asked at {quality} about: {prompt}"),
    )
    completion = await adapter.complete(Request(prompt="{prompt}", quality="critical"), "")
    assert completion.model == "template:1"
    assert completion.text == "busy, asked at critical about: {prompt}"


async def test_no_templates_means_no_match() -> None:
    await no_match(templates_adapter(), Request(prompt="anything"))


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (TemplateConfig(text="x", complexity=("hard",)), "templates[0].complexity: 'hard'"),
        (TemplateConfig(text="x", quality=("best",)), "templates[0].quality: 'best'"),
        (TemplateConfig(text=""), "templates[0].text: must not be empty"),
    ],
)
def test_bad_template_names_the_field(template: TemplateConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        compile_templates((template,))


def test_templates_from_toml_shape() -> None:
    config = parse_config(
        {
            "providers": [{"name": "templates", "kind": "template"}],
            "levels": [{"name": "last", "providers": ["templates"], "timeout_s": 5}],
            "templates": [{"name": "g", "text": "hi", "complexity": ["Simple"]}],
        }
    )
    (template,) = compile_templates(config.templates)
    assert template.matches(Request(prompt="x", complexity="simple"))
    assert not template.matches(Request(prompt="x", complexity="moderate"))


@pytest.mark.parametrize("kind", ["cache", "template"])
async def test_stream_is_one_delta_then_done(kind: str) -> None:
    config = make_config((TemplateConfig(name="g", text="canned"),))
    context = SharedObjects(config)
    request = Request(prompt="q")
    shared_reply_cache(context).put(request, "cached", "m")
    adapter: CacheAdapter | TemplateAdapter
    if kind == "cache":
        adapter = cache_adapter(config.provider("cache"), context)
    else:
        adapter = template_adapter(config.provider("templates"), context)
    events: list[StreamEvent] = []
    async with aclosing(adapter.stream(request, "")) as stream:  # type: ignore[type-var]
        async for event in stream:
            events.append(event)
    expected = "cached" if kind == "cache" else "canned"
    assert len(events) == 2
    assert events[0] == TextDelta(expected)
    assert isinstance(events[1], StreamDone) and events[1].completion.text == expected
    await adapter.aclose()


async def test_stream_without_a_match_raises_no_match() -> None:
    adapter = templates_adapter()
    with pytest.raises(ProviderError) as info:
        async with aclosing(adapter.stream(Request(prompt="q"), "")) as stream:  # type: ignore[type-var]
            async for _ in stream:
                pass
    assert info.value.kind is FailureKind.NO_MATCH
