"""The provider kinds: one table read by config validation, stats, the fake server and embed.

A kind is what a ``[[providers]]`` table names in ``kind``. Its family says how it answers: over
HTTP in a provider's wire format, in-process from a seeded simulation, or as a last resort (cache,
templates) whose misses are not health problems. Adding a wire format is one adapter module plus
one line here (see the README's "Adding a provider").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs

__all__ = [
    "HTTP_KINDS",
    "KINDS",
    "KNOWN_KINDS",
    "LAST_RESORT_KINDS",
    "SIMULATED_KINDS",
    "ProviderKind",
    "kind_named",
    "kinds_speaking",
]

Family = Literal["http", "simulated", "last_resort"]


@attrs.frozen
class ProviderKind:
    """One provider kind and where its adapter lives."""

    name: str
    family: Family
    #: The module whose import registers this kind's adapter.
    module: str
    #: HTTP kinds: the wire format spoken (several kinds may share one).
    wire: str | None = None
    #: HTTP kinds: the real service's URL and key variable, used when the config leaves them out.
    base_url: str | None = None
    #: None for kinds that need no key (a local Ollama).
    api_key_env: str | None = None

    @property
    def probed(self) -> bool:
        """Whether a recovery probe can ask it anything: HTTP kinds list their models (and take
        a one-token completion), a simulated one answers probes too; a last resort has no
        health to probe."""
        return self.family != "last_resort"


_OPENAI = "actors.adapters.openai"

KINDS: tuple[ProviderKind, ...] = (
    ProviderKind("simulated", "simulated", "actors.adapters.simulated"),
    ProviderKind("cache", "last_resort", "actors.adapters.lastresort"),
    ProviderKind("template", "last_resort", "actors.adapters.lastresort"),
    ProviderKind(
        "openai", "http", _OPENAI, "openai", "https://api.openai.com/v1", "OPENAI_API_KEY"
    ),
    ProviderKind(
        "mistral", "http", _OPENAI, "openai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"
    ),
    ProviderKind(
        "huggingface", "http", _OPENAI, "openai", "https://router.huggingface.co/v1", "HF_TOKEN"
    ),
    ProviderKind(
        "anthropic",
        "http",
        "actors.adapters.anthropic",
        "anthropic",
        "https://api.anthropic.com",
        "ANTHROPIC_API_KEY",
    ),
    ProviderKind(
        "gemini",
        "http",
        "actors.adapters.gemini",
        "gemini",
        "https://generativelanguage.googleapis.com",
        "GEMINI_API_KEY",
    ),
    ProviderKind("ollama", "http", "actors.adapters.ollama", "ollama", "http://localhost:11434"),
)

_BY_NAME: Mapping[str, ProviderKind] = {kind.name: kind for kind in KINDS}


def _family(family: Family) -> frozenset[str]:
    return frozenset(kind.name for kind in KINDS if kind.family == family)


SIMULATED_KINDS = _family("simulated")
LAST_RESORT_KINDS = _family("last_resort")
HTTP_KINDS = _family("http")
KNOWN_KINDS = frozenset(_BY_NAME)


def kind_named(name: str) -> ProviderKind:
    """The kind called `name`; ValueError listing the known kinds otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"kind={name!r} is not one of: {', '.join(sorted(KNOWN_KINDS))}") from None


def kinds_speaking(wire: str) -> tuple[ProviderKind, ...]:
    """The HTTP kinds that speak wire format `wire`."""
    return tuple(kind for kind in KINDS if kind.wire == wire)
