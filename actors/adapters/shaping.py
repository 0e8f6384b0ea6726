"""Per-model request shaping: what each model takes, and each provider's range for a parameter.

A model's shape (the output-limit field, the system prompt's role, the sampling parameters it
takes) comes from its ``[models."name"]`` table (keys `token_field`, `system_role`, `sampling`),
and for each key left out, from the built-in default for its family, first match wins:

- OpenAI ``o1-preview``, ``o1-mini``: ``max_completion_tokens``; neither a system nor a developer
  message (the system prompt goes before the user's prompt, ``system_role = "user"``); no
  temperature, top_p or penalties (they take only the defaults).
- OpenAI ``o1``, ``o3``, ``o4`` families (``o1``, ``o1-pro``, ``o3``, ``o3-mini``, ``o4-mini``...)
  and the ``gpt-5`` family: ``max_completion_tokens``, the ``developer`` role, no temperature, top_p or penalties.
- Every other model: ``max_tokens``, the ``system`` role, temperature, top_p and penalties.

Ranges: a temperature beyond what the provider takes is clamped into its range, not scaled
(Anthropic takes 0-1 where a request may say 0-2: 1.5 is sent as 1.0). Clamping keeps every value
both ranges share meaning the same on every provider (0.7 stays 0.7); scaling would make the
default 0.7 a colder 0.35 on Anthropic only.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import attrs

from actors.adapters.wire import RequestShape
from actors.messages import Request

if TYPE_CHECKING:
    from actors.config import ModelInfo

__all__ = [
    "FAMILY_SHAPES",
    "SAMPLING",
    "ModelShape",
    "left_out_sampling",
    "model_shape",
    "request_shape",
    "without_sampling",
]


#: The sampling parameters a model may or may not take (a request's `seed` is a hint every
#: model may ignore, and `stop` is not sampling: both are always sent where the wire has them).
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


@attrs.frozen
class ModelShape:
    """What one model takes."""

    token_field: str = "max_tokens"
    system_role: str = "system"
    #: Sampling parameters the model takes; the others are left out (the model's default).
    sampling: tuple[str, ...] = SAMPLING


_REASONING = ModelShape("max_completion_tokens", "developer", ())

#: Built-in shapes of known model families (the name may carry a router prefix, "openai/o3").
FAMILY_SHAPES: tuple[tuple[re.Pattern[str], ModelShape], ...] = (
    (re.compile(r"(?:^|/)o1-(?:preview|mini)\b"), ModelShape("max_completion_tokens", "user", ())),
    (re.compile(r"(?:^|/)o[134](?:-|$)"), _REASONING),
    (re.compile(r"(?:^|/)gpt-5(?:[-.]|$)"), _REASONING),
)


def model_shape(model: str, info: ModelInfo | None = None) -> ModelShape:
    """`model`'s shape: the keys its model table sets, the family's defaults for the rest."""
    family = next((shape for pattern, shape in FAMILY_SHAPES if pattern.search(model)), None)
    shape = family or ModelShape()
    if info is None:
        return shape
    return ModelShape(
        token_field=info.token_field or shape.token_field,
        system_role=info.system_role or shape.system_role,
        sampling=shape.sampling if info.sampling is None else tuple(info.sampling),
    )


def request_shape(
    request: Request, shape: ModelShape, temperature_range: tuple[float, float]
) -> RequestShape:
    """How to send `request` to a model of `shape` on a provider taking `temperature_range`."""
    low, high = temperature_range
    temperature = (
        min(max(request.temperature, low), high) if "temperature" in shape.sampling else None
    )
    return RequestShape(shape.token_field, shape.system_role, temperature)


def left_out_sampling(request: Request, shape: ModelShape) -> tuple[str, ...]:
    """The sampling parameters `request` sets (beyond the default temperature) that a model of
    `shape` does not take: left out of what is sent, and noted in the plan."""
    unset = request.top_p is None and request.presence_penalty is None
    if unset and request.frequency_penalty is None:  # the usual request: nothing to leave out
        return ()
    return tuple(
        name
        for name in SAMPLING[1:]
        if getattr(request, name) is not None and name not in shape.sampling
    )


def without_sampling(request: Request, names: tuple[str, ...]) -> Request:
    """`request` with the sampling parameters `names` unset (see `left_out_sampling`)."""
    unset: dict[str, Any] = dict.fromkeys(names)
    return attrs.evolve(request, **unset) if names else request
