"""List prices of common models, used when a configured model has no price of its own.

USD per million input and output tokens, standard (non-batch, non-cached) rates of the shortest
context tier, as the providers listed them around `PRICES_AS_OF`. Prices change (re-check the
providers' price pages when updating this table, and move the date): a config's
``[models."NAME"]`` table always wins, and a model found neither there nor here is warned about
at load, since `budget_usd` cannot exclude a model that costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.config import Config, ModelInfo
    from actors.messages import Reply

#: The date the prices below are dated: the list prices in force then.
PRICES_AS_OF = "2025-08-01"

#: model -> (input, output) USD per million tokens.
PRICES: Mapping[str, tuple[float, float]] = {
    # OpenAI
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-3.5-turbo": (0.5, 1.5),
    "o1": (15.0, 60.0),
    "o1-preview": (15.0, 60.0),
    "o1-mini": (1.1, 4.4),
    "o3": (2.0, 8.0),
    "o3-mini": (1.1, 4.4),
    "o4-mini": (1.1, 4.4),
    # Anthropic
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-opus": (15.0, 75.0),
    "claude-3-haiku": (0.25, 1.25),
    # Google Gemini
    "gemini-2.5-pro": (1.25, 10.0),
    "gemini-2.5-flash": (0.3, 2.5),
    "gemini-2.5-flash-lite": (0.1, 0.4),
    "gemini-2.0-flash": (0.1, 0.4),
    "gemini-2.0-flash-lite": (0.075, 0.3),
    "gemini-1.5-pro": (1.25, 5.0),
    "gemini-1.5-flash": (0.075, 0.3),
    # Mistral
    "mistral-large-latest": (2.0, 6.0),
    "mistral-medium-latest": (0.4, 2.0),
    "mistral-small-latest": (0.1, 0.3),
    "codestral-latest": (0.3, 0.9),
    "open-mistral-nemo": (0.15, 0.15),
    "ministral-8b-latest": (0.1, 0.1),
    # The family names the default routing matrices use.
    "claude-opus": (15.0, 75.0),
    "claude-sonnet": (3.0, 15.0),
    "claude-haiku": (0.8, 4.0),
    "gemini-pro": (1.25, 5.0),
    "gemini-flash": (0.075, 0.3),
    "mistral-large": (2.0, 6.0),
    "mistral-small": (0.1, 0.3),
}

#: What may follow a known name in a dated or versioned model id (``gpt-4o-2024-08-06``,
#: ``claude-3-5-sonnet-20241022``, ``gemini-1.5-pro-002``, ``claude-3-5-sonnet@20241022``).
_SUFFIX_STARTS = ("-", "@")


def shipped_price(model: str) -> tuple[float, float] | None:
    """The (input, output) price of `model`, or of the longest known name it is a version of."""
    name = model.lower().removeprefix("models/")
    if name in PRICES:
        return PRICES[name]
    known = [
        key for key in PRICES if name.startswith(key) and name[len(key)].startswith(_SUFFIX_STARTS)
    ]
    if not known:
        return None
    return PRICES[max(known, key=len)]


# --- the single-provider cost baseline ---


def baseline_model(config: Config) -> tuple[str, str]:
    """The provider and model the cost saving is measured against: the first provider of the
    first level and its first model ("" when it lists none)."""
    provider = config.provider(config.levels[0].providers[0])
    return provider.name, provider.models[0] if provider.models else ""


def quality_baseline_model(config: Config, quality: str) -> tuple[str, str]:
    """The provider and model a request of `quality` is measured against at the same quality:
    the same provider as `baseline_model`, with its best model for that quality (the first of
    the `[routing.quality]` row it offers), or its first model when it offers none of them."""
    provider, model = baseline_model(config)
    offered = config.provider(provider).models
    for candidate in config.routing.quality.get(quality, ()):
        if candidate in offered:
            return provider, candidate
    return provider, model


def baseline_cost(
    reply: Reply, price: ModelInfo, *, prompt_chars: int, chars_per_token: float
) -> float:
    """What `reply` would have cost at `price` (the baseline model's). A reply that used no
    tokens (cache, templates) is priced from the prompt's and the reply's lengths."""
    input_tokens = reply.usage.input_tokens
    output_tokens = reply.usage.output_tokens
    if input_tokens == 0 and output_tokens == 0:
        input_tokens = max(1, int(prompt_chars / chars_per_token))
        output_tokens = max(1, int(len(reply.text) / chars_per_token))
    return (
        input_tokens * price.input_usd_per_mtok + output_tokens * price.output_usd_per_mtok
    ) / 1e6
