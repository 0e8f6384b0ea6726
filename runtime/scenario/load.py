"""The seeded load generator: when each request arrives, and what it asks for.

Everything is drawn from one `random.Random(seed)` in arrival order, so a seed fixes the whole
schedule: arrival times, the mix entry, the prompt, and whether the request streams.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import random
from collections.abc import Iterator
from typing import Any

import attrs

from actors.messages import Request
from runtime.scenario.format import LoadProfile, MixEntry

_FILLER = (
    "summarise the quarterly filing and list the deductions that apply to a small business "
    "with two employees, explaining each in plain words and citing the relevant rule "
)


@attrs.frozen
class PlannedRequest:
    """One request of the schedule: its arrival (seconds from the start) and what it asks."""

    index: int
    at: float
    mix: int
    stream: bool
    request: Request


def prompt_text(mix: int, number: int, length: int) -> str:
    """A deterministic prompt of `length` characters; equal (mix, number) give equal prompts,
    which is what lets the last-resort cache answer repeats."""
    head = f"Request {mix}-{number}: "
    body = (_FILLER * (length // len(_FILLER) + 1))[: max(0, length - len(head))]
    return head + body


class LoadGenerator:
    """Iterates the planned requests of a load profile in arrival order."""

    def __init__(self, profile: LoadProfile, seed: int) -> None:
        self.profile = profile
        self.seed = seed
        weights = [entry.weight for entry in profile.mix]
        self._cumulative = list(itertools.accumulate(weights))
        #: Per (mix, number): the fields of its first request but the task id (`_COPIED_SLOTS`).
        self._templates: dict[tuple[int, int], tuple[Any, ...]] = {}

    def __iter__(self) -> Iterator[PlannedRequest]:
        rng = random.Random(self.seed)
        profile = self.profile
        t = 0.0
        for index in itertools.count():
            next_t = self._next_arrival(rng, t)
            if next_t is None or next_t >= profile.duration_s:
                return
            t = next_t
            mix = bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
            mix = min(mix, len(profile.mix) - 1)
            entry = profile.mix[mix]
            number = rng.randrange(profile.prompts)
            fraction = (
                entry.stream_fraction
                if entry.stream_fraction is not None
                else profile.stream_fraction
            )
            stream = fraction > 0 and rng.random() < fraction
            yield PlannedRequest(index, t, mix, stream, self._request(index, mix, number, entry))

    def _next_arrival(self, rng: random.Random, t: float) -> float | None:
        """The arrival after `t`; a phase at rate 0 skips to the next phase with traffic."""
        profile = self.profile
        while True:
            rate = profile.rate_at(t)
            if rate > 0:
                gap = rng.expovariate(rate) if profile.arrivals == "poisson" else 1.0 / rate
                candidate = t + gap
                boundary = self._next_phase_start(t)
                if boundary is not None and candidate > boundary:
                    # The rate changes before this arrival: draw again from the new phase on.
                    t = boundary
                    continue
                return candidate
            boundary = self._next_phase_start(t)
            if boundary is None:
                return None
            t = boundary

    def _next_phase_start(self, t: float) -> float | None:
        for phase in self.profile.phases:
            if phase.at_s > t:
                return phase.at_s
        return None

    def _request(self, index: int, mix: int, number: int, entry: MixEntry) -> Request:
        """The request of arrival `index`: its (mix, number)'s, with the arrival's task id.

        Building a `Request` runs every field's converter and validator (some 100 µs); the
        requests of one (mix, number) differ only in their task id, so each is a copy of the
        first one built, validated once, with its own id (a string, as the validator wants)."""
        key = (mix, number)
        fields = self._templates.get(key)
        if fields is None:
            template = Request(
                prompt=prompt_text(mix, number, entry.prompt_chars),
                complexity=entry.complexity,
                quality=entry.quality,
                budget_usd=entry.budget_usd,
                cost=entry.cost,
                max_tokens=entry.max_tokens,
                deadline_s=self.profile.deadline_s,
                task_id=f"scenario-{index}",
            )
            self._templates[key] = _copied_fields(template)
            return template
        return _with_task_id(fields, f"scenario-{index}")


#: Every slot of a `Request` but its task id (and `__weakref__`, which is not a field).
_COPIED_SLOTS = tuple(field.name for field in attrs.fields(Request) if field.name != "task_id")
#: A request's values of `_COPIED_SLOTS`, as a tuple.
_copied_fields = operator.attrgetter(*_COPIED_SLOTS)
#: The slots' own setters (what ``object.__setattr__(request, name, value)`` calls), in the
#: order of `_COPIED_SLOTS`.
_COPIED_SETTERS = tuple(vars(Request)[name].__set__ for name in _COPIED_SLOTS)
_SET_TASK_ID = vars(Request)["task_id"].__set__


def _with_task_id(fields: tuple[Any, ...], task_id: str) -> Request:
    """A request with `fields` (a template's, by `_COPIED_SLOTS`) and `task_id`, as
    `attrs.evolve` of the template would make it, without validating again the fields it
    shares with the template (frozen: the copy sets them as attrs does, through the slots)."""
    request = object.__new__(Request)
    for set_slot, value in zip(_COPIED_SETTERS, fields, strict=True):
        set_slot(request, value)
    _SET_TASK_ID(request, task_id)
    return request
