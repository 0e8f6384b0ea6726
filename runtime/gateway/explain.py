"""The route explainer: the router's plan for a request typed into the dashboard, with every
candidate's rank and every exclusion's reason (`Runtime.plan`, which spends no exploration
request). The request is built by `Request` itself, so a bad value is refused with the field
it names, as the gateway's APIs refuse it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import trio

from actors.errors import ModelNotOffered
from actors.messages import Request
from actors.ranking import Candidate, Exclusion, LevelPlan, RoutePlan
from actors.validation import FieldError
from runtime.embed import Runtime
from runtime.gateway.errors import GatewayError, invalid

__all__ = ["FIELDS", "explain", "plan_json"]

#: What the explainer takes; anything else in the body is refused by name.
FIELDS = ("complexity", "quality", "budget_usd", "cost", "model", "prompt", "max_tokens")
#: Planned for when no prompt is given: the plan's size estimate needs some text.
_NO_PROMPT = "(no prompt given)"


#: A trio time in a plan's text (``until t=1234.5s``, ``at t=1234.5s``): an instant on the
#: runtime's clock, which means nothing to someone reading the page.
_TIME_IN_TEXT = re.compile(r"\b(until|at) t=(-?\d+(?:\.\d+)?)s\b")
_RELATIVE = {"until": "for another", "at": "in"}


def explain(rt: Runtime, body: Mapping[str, Any]) -> dict[str, Any]:
    """The plan for the request `body` describes, as JSON."""
    request = _request(body)
    try:
        return plan_json(rt.plan(request), now=trio.current_time())
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


def relative_times(text: str, now: float) -> str:
    """`text` with each trio time written as seconds from `now`: ``until t=1012.5s`` becomes
    ``for another 12.5 s``, ``at t=1012.5s`` becomes ``in 12.5 s``."""

    def relative(match: re.Match[str]) -> str:
        return f"{_RELATIVE[match[1]]} {max(0.0, float(match[2]) - now):.1f} s"

    return _TIME_IN_TEXT.sub(relative, text)


def plan_json(plan: RoutePlan, *, now: float) -> dict[str, Any]:
    """The plan as JSON, its times relative to `now`."""
    return {
        "summary": relative_times(plan.summary, now),
        "lines": [relative_times(line, now) for line in plan.explain()],
        "levels": [_level(level, now) for level in plan.levels],
    }


def _level(level: LevelPlan, now: float) -> dict[str, Any]:
    return {
        "level": level.level,
        "candidates": [_candidate(c) for c in level.candidates],
        "exclusions": [_exclusion(e, now) for e in level.exclusions],
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


def _exclusion(exclusion: Exclusion, now: float) -> dict[str, Any]:
    return {
        "provider": exclusion.provider,
        "reason": relative_times(exclusion.reason, now),
        "cause": exclusion.cause.value,
    }
