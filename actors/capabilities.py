"""What a model can do, what a request needs, and what a wire format or last resort cannot carry.

The router excludes a model before sending when it lacks something the request needs, and a
provider whose wire format cannot express a need, so no adapter is ever asked for what it cannot
send and nothing is silently dropped. Hints a provider is free to ignore (seed, penalties, user,
metadata) never exclude anything: the plan's explanation notes them on the candidate.

A model's capabilities come from its ``[models."name"]`` table (keys `tools`, `parallel_tools`,
`vision`, `json_object`, `json_schema`, `max_output_tokens`), and for each key left out, from the
built-in default of its family (`FAMILY_CAPABILITIES`, first match wins, dated
`CAPABILITIES_AS_OF`). A model no family matches is assumed capable of everything, with no output
limit: a wrong guess costs one failed call that falls back, where a wrong exclusion would make a
model unusable; set the keys to say otherwise. The system prompt is never a reason to exclude:
a model without a system role gets it in the user message (see `actors.adapters.shaping`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from actors.messages import Request

if TYPE_CHECKING:
    from actors.config import ModelInfo

__all__ = [
    "CAPABILITIES_AS_OF",
    "FAMILY_CAPABILITIES",
    "NO_LIMITS",
    "NO_NEEDS",
    "Capabilities",
    "KindLimits",
    "Need",
    "Needs",
    "kind_limits",
    "missing",
    "model_capabilities",
    "request_needs",
]

#: The date the family table below describes: the providers' model pages around then.
CAPABILITIES_AS_OF = "2025-08-01"


class Need(enum.IntFlag):
    """A hard need of a request: a model or wire format lacking it cannot answer."""

    NONE = 0
    #: Tools are offered and may be called.
    TOOLS = enum.auto()
    #: tool_choice "required" or a named function.
    FORCED_TOOL = enum.auto()
    #: parallel_tool_calls=True: several calls in one reply, asked for explicitly.
    PARALLEL_TOOLS = enum.auto()
    #: Any image in the conversation.
    VISION = enum.auto()
    #: An image given as a URL (not base64 data).
    IMAGE_URLS = enum.auto()
    JSON_OBJECT = enum.auto()
    JSON_SCHEMA = enum.auto()


#: How a missing need reads in a reason ("gemini-flash: no JSON schema").
NEED_LABELS: Mapping[Need, str] = {
    Need.TOOLS: "no tools",
    Need.FORCED_TOOL: "no forced tool choice",
    Need.PARALLEL_TOOLS: "no parallel tool calls",
    Need.VISION: "no vision",
    Need.IMAGE_URLS: "no image URLs",
    Need.JSON_OBJECT: "no JSON mode",
    Need.JSON_SCHEMA: "no JSON schema",
}


def missing(lacking: int) -> str:
    """The labels of the needs in `lacking`, in a fixed order, comma-separated; a need that
    follows from another one lacking is left out ("no tools", not "no tools, no forced...")."""
    if lacking & Need.TOOLS:
        lacking &= ~(Need.FORCED_TOOL | Need.PARALLEL_TOOLS)
    if lacking & Need.VISION:
        lacking &= ~Need.IMAGE_URLS
    return ", ".join(label for need, label in NEED_LABELS.items() if lacking & need)


@attrs.frozen
class Capabilities:
    """What one model supports. `max_output_tokens` None: no known limit."""

    tools: bool = True
    parallel_tools: bool = True
    vision: bool = True
    json_object: bool = True
    json_schema: bool = True
    max_output_tokens: int | None = None

    @property
    def supports(self) -> int:
        """The needs this model meets, as a `Need` mask (a forced tool choice needs tools)."""
        mask = Need.NONE
        if self.tools:
            mask |= Need.TOOLS | Need.FORCED_TOOL
            if self.parallel_tools:
                mask |= Need.PARALLEL_TOOLS
        if self.vision:
            mask |= Need.VISION | Need.IMAGE_URLS
        if self.json_object:
            mask |= Need.JSON_OBJECT
        if self.json_schema:
            mask |= Need.JSON_SCHEMA
        return int(mask)


_ALL = Capabilities()
_NO_TOOLS_JSON_VISION = Capabilities(False, False, False, False, False)


def _family(pattern: str) -> re.Pattern[str]:
    """A family's pattern; the name may carry a router prefix ("openai/o3", "models/...")."""
    return re.compile(r"(?:^|/)(?:" + pattern + r")", re.IGNORECASE)


#: Built-in capabilities of known model families, first match wins (more specific first).
#: From the providers' model pages around `CAPABILITIES_AS_OF`; re-check them when updating.
FAMILY_CAPABILITIES: tuple[tuple[re.Pattern[str], Capabilities], ...] = (
    # OpenAI. The first reasoning models take no tools, images or response_format at all.
    (_family(r"o1-preview\b"), attrs.evolve(_NO_TOOLS_JSON_VISION, max_output_tokens=32_768)),
    (_family(r"o1-mini\b"), attrs.evolve(_NO_TOOLS_JSON_VISION, max_output_tokens=65_536)),
    # Later reasoning models: tools and structured output, but no parallel_tool_calls switch.
    (
        _family(r"o3-mini\b"),
        Capabilities(parallel_tools=False, vision=False, max_output_tokens=100_000),
    ),
    (_family(r"o[134](?:-|$)"), Capabilities(parallel_tools=False, max_output_tokens=100_000)),
    (_family(r"gpt-5(?:[-.]|$)"), Capabilities(max_output_tokens=128_000)),
    (_family(r"gpt-4\.1(?:-|$)"), Capabilities(max_output_tokens=32_768)),
    (_family(r"gpt-4o-2024-05-13"), Capabilities(json_schema=False, max_output_tokens=4_096)),
    (_family(r"gpt-4o(?:-|$)"), Capabilities(max_output_tokens=16_384)),
    # Structured outputs (json_schema) came with gpt-4o-2024-08-06; older models have JSON mode.
    (_family(r"gpt-4-turbo(?:-|$)"), Capabilities(json_schema=False, max_output_tokens=4_096)),
    (
        _family(r"gpt-3\.5-turbo(?:-|$)"),
        Capabilities(vision=False, json_schema=False, max_output_tokens=4_096),
    ),
    # Anthropic: JSON through a forced tool, so JSON follows tools. Claude 2 had neither.
    (
        _family(r"claude-(?:2|instant)"),
        attrs.evolve(_NO_TOOLS_JSON_VISION, max_output_tokens=4_096),
    ),
    (_family(r"claude-3-(?:opus|haiku|sonnet)\b"), Capabilities(max_output_tokens=4_096)),
    (_family(r"claude-3-5-"), Capabilities(max_output_tokens=8_192)),
    (_family(r"claude-3-7-|claude-sonnet"), Capabilities(max_output_tokens=64_000)),
    (_family(r"claude-opus"), Capabilities(max_output_tokens=32_000)),
    (_family(r"claude-haiku"), Capabilities(max_output_tokens=8_192)),
    (_family(r"claude-"), Capabilities(max_output_tokens=8_192)),
    # Google. The bare "gemini-flash" of the routing matrices stands for the first Flash, which
    # took responseMimeType JSON but not a responseSchema; 1.0 Pro had no JSON mode and no images.
    (
        _family(r"gemini-1\.0-"),
        Capabilities(vision=False, json_object=False, json_schema=False, max_output_tokens=8_192),
    ),
    (_family(r"gemini-flash$"), Capabilities(json_schema=False, max_output_tokens=8_192)),
    (_family(r"gemini-2\.5-"), Capabilities(max_output_tokens=65_536)),
    (_family(r"gemini-"), Capabilities(max_output_tokens=8_192)),
    # Open-weight models (Ollama, Hugging Face): JSON by constrained decoding; images only for
    # vision models, which (but Llama 4) take no tools.
    (_family(r"llama4"), _ALL),
    (
        _family(r"llava|bakllava|llama3\.2-vision|moondream|minicpm-v|qwen2\.5vl"),
        Capabilities(tools=False, parallel_tools=False),
    ),
    (
        _family(r"llama|qwen|mistral(?::|$)|mistral-nemo|phi[34]|deepseek|gemma|command-r"),
        Capabilities(vision=False),
    ),
    # Mistral's API: images on Pixtral and the Small/Medium 3.x models only.
    (_family(r"pixtral|mistral-(?:small|medium)"), _ALL),
    (_family(r"mistral-|codestral|open-mistral|ministral"), Capabilities(vision=False)),
)


def model_capabilities(model: str, info: ModelInfo | None = None) -> Capabilities:
    """`model`'s capabilities: the keys its model table sets, its family's defaults for the
    rest (everything, no output limit, for a model no family matches)."""
    base = next((caps for pattern, caps in FAMILY_CAPABILITIES if pattern.search(model)), _ALL)
    if info is None:
        return base
    overrides = {
        name: getattr(info, name)
        for name in (
            "tools",
            "parallel_tools",
            "vision",
            "json_object",
            "json_schema",
            "max_output_tokens",
        )
        if getattr(info, name) is not None
    }
    return attrs.evolve(base, **overrides) if overrides else base


# --- what a request needs ------------------------------------------------------------------

#: Hints a provider may ignore, by the Request field that carries them.
HINTS = ("seed", "presence_penalty", "frequency_penalty", "user", "metadata")


@attrs.frozen
class Needs:
    """What one request needs (`mask` of `Need`) and the hints it sets (names from `HINTS`)."""

    mask: int = 0
    hints: tuple[str, ...] = ()
    #: parallel_tool_calls=False: at most one call per reply (every wire format can say so,
    #: some by keeping the first call only).
    one_call: bool = False

    @property
    def labels(self) -> str:
        """The needs, for the plan's summary ("tools,json_schema")."""
        names = [(need.name or "").lower() for need in Need if need and self.mask & need]
        if self.one_call:
            names.append("one_tool_call")
        return ",".join(names)


NO_NEEDS = Needs()


def request_needs(request: Request) -> Needs:
    """Derive `request`'s needs once. A plain prompt needs nothing, and is answered at once."""
    if (
        request.prompt is not None
        and not request.tools
        and request.response_format is None
        and request.seed is None
        and request.user is None
        and request.metadata is None
        and request.presence_penalty is None
        and request.frequency_penalty is None
    ):
        return NO_NEEDS
    mask = Need.NONE
    if request.wants_tool_calls:
        mask |= Need.TOOLS
        choice = request.tool_choice
        if choice is not None and choice.mode in ("required", "function"):
            mask |= Need.FORCED_TOOL
        if request.parallel_tool_calls:
            mask |= Need.PARALLEL_TOOLS
    for message in request.conversation:
        for image in message.images:
            mask |= Need.VISION
            if image.url is not None:
                mask |= Need.IMAGE_URLS
    response_format = request.response_format
    if response_format is not None and response_format.type == "json_object":
        mask |= Need.JSON_OBJECT
    elif response_format is not None and response_format.type == "json_schema":
        mask |= Need.JSON_SCHEMA
    hints = tuple(name for name in HINTS if getattr(request, name) is not None)
    one_call = request.wants_tool_calls and request.parallel_tool_calls is False
    return Needs(int(mask), hints, one_call)


# --- what a provider kind cannot carry ----------------------------------------------------


def _mask(reasons: Mapping[Need, str]) -> int:
    mask = 0
    for need in reasons:
        mask |= need
    return mask


@attrs.frozen
class KindLimits:
    """What a provider kind cannot carry (excluded before sending) and what it leaves out."""

    #: The needs the kind can never answer, whatever the model, each with why (a sentence).
    cannot_why: Mapping[Need, str] = attrs.field(factory=dict)
    #: Hints (names from `HINTS`) the kind leaves out of the request.
    ignores: frozenset[str] = frozenset()
    #: parallel_tool_calls=False is kept by keeping only the first call of a reply.
    first_call_only: bool = False
    #: `cannot_why` as a `Need` mask (derived).
    cannot: int = attrs.field(
        init=False, default=attrs.Factory(lambda self: _mask(self.cannot_why), takes_self=True)
    )

    def why(self, blocked: int) -> str:
        """Why the needs in `blocked` cannot be carried, one sentence each."""
        return "; ".join(why for need, why in self.cannot_why.items() if blocked & need)


#: The wire formats' contract with the router (see the README's "What each wire format carries").
WIRE_LIMITS: Mapping[str, KindLimits] = {
    "openai": KindLimits(ignores=frozenset({"metadata"})),
    "anthropic": KindLimits(
        ignores=frozenset({"seed", "presence_penalty", "frequency_penalty", "metadata"})
    ),
    "gemini": KindLimits(
        {Need.IMAGE_URLS: "the gemini wire format takes base64 images only, not image URLs"},
        frozenset({"user", "metadata"}),
        first_call_only=True,
    ),
    "ollama": KindLimits(
        {
            Need.IMAGE_URLS: "the ollama wire format takes base64 images only, not image URLs",
            Need.FORCED_TOOL: "the ollama wire format cannot force a tool choice",
        },
        frozenset({"user", "metadata"}),
        first_call_only=True,
    ),
}

#: The last resort: canned templates answer text only; the cache holds text answers of the
#: exact same request (tools and format in its key), so anything but a forced tool call.
LAST_RESORT_LIMITS: Mapping[str, KindLimits] = {
    "template": KindLimits(
        {
            Need.FORCED_TOOL: "a template cannot answer a forced tool choice",
            Need.JSON_OBJECT: "a template cannot answer JSON",
            Need.JSON_SCHEMA: "a template cannot answer JSON",
        }
    ),
    "cache": KindLimits({Need.FORCED_TOOL: "the cache holds no tool calls"}),
}

NO_LIMITS = KindLimits()


def kind_limits(kind: str, wire: str | None) -> KindLimits:
    """The limits of a provider of `kind` speaking `wire` (simulated kinds have none)."""
    if kind in LAST_RESORT_LIMITS:
        return LAST_RESORT_LIMITS[kind]
    if wire is None:
        return NO_LIMITS
    return WIRE_LIMITS.get(wire, NO_LIMITS)
