"""The route explainer: the router's plan for a request typed into the dashboard, with every
candidate's rank and every exclusion's reason (`Runtime.plan`, which spends no exploration
request). The request is built by `Request` itself, so a bad value is refused with the field
it names, as the gateway's APIs refuse it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.errors import ModelNotOffered
from actors.messages import Request
from actors.ranking import Candidate, Exclusion, LevelPlan, RoutePlan
from actors.validation import FieldError
from runtime.embed import Runtime
from runtime.gateway.errors import GatewayError, invalid

__all__ = ["FIELDS", "explain", "plan_json"]

#: What the explainer takes; anything else in the body is refused by name.
FIELDS = ("complexity", "quality", "budget_usd", "model", "prompt", "max_tokens")
#: Planned for when no prompt is given: the plan's size estimate needs some text.
_NO_PROMPT = "(no prompt given)"


def explain(rt: Runtime, body: Mapping[str, Any]) -> dict[str, Any]:
    """The plan for the request `body` describes, as JSON."""
    request = _request(body)
    try:
        return plan_json(rt.plan(request))
    except ModelNotOffered as exc:
        raise GatewayError(400, str(exc), param="model", code="model_not_found") from None


def _request(body: Mapping[str, Any]) -> Request:
    for name in body:
        if name not in FIELDS:
            raise invalid(name, f"unknown field; the explainer takes {', '.join(FIELDS)}")
    # The page sends an empty input as "" or null: either means "not given".
    fields = {name: body[name] for name in FIELDS if body.get(name) not in (None, "")}
    fields.setdefault("prompt", _NO_PROMPT)
    try:
        return Request(**fields)
    except FieldError as exc:
        raise invalid(exc.field, exc.message) from None


def plan_json(plan: RoutePlan) -> dict[str, Any]:
    return {
        "summary": plan.summary,
        "lines": plan.explain(),
        "levels": [_level(level) for level in plan.levels],
    }


def _level(level: LevelPlan) -> dict[str, Any]:
    return {
        "level": level.level,
        "candidates": [_candidate(c) for c in level.candidates],
        "exclusions": [_exclusion(e) for e in level.exclusions],
    }


def _candidate(candidate: Candidate) -> dict[str, Any]:
    return {
        "provider": candidate.provider,
        "model": candidate.model,
        "score": round(candidate.score, 3),
        "estimated_cost_usd": candidate.estimated_cost_usd,
        "reason": candidate.reason,
        "notes": list(candidate.notes),
    }


def _exclusion(exclusion: Exclusion) -> dict[str, Any]:
    return {
        "provider": exclusion.provider,
        "reason": exclusion.reason,
        "cause": exclusion.cause.value,
    }
