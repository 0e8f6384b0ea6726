"""The router's ranking: which providers (and which of their models) to try, in what order, and why.

Pure and synchronous: `Ranker` reads the config once and turns a request plus the latest
heartbeats into a plan. Everything that does not depend on live health (which models a provider
offers for a complexity/quality pair, in what order, their prices and context windows) is
precomputed at construction, so `plan` does a few comparisons and multiplications per provider.

Order within a level:

1. **Fitness** of the provider's chosen model: named by both the complexity and the quality
   matrix, then by one, then by none (a provider with no listed model is still a candidate, after
   the fitting ones).
2. **Score**, the seed's formula: ``max(0, 100 - latency_ms/10) * w.latency
   + (100 - error_rate*100) * w.reliability + quota_remaining*100 * w.quota``, highest first.
3. Matrix position (earlier in the rows first), then provider name, so equal inputs always give
   the same plan.

Excluded, each with a reason: unavailable providers, breakers open or forced open (half-open is
allowed: the breaker itself limits its probes), providers inside a Retry-After window, and
providers none of whose models fits the context window or the budget. A provider with no
heartbeat yet is assumed available with a neutral score: the router may just have started.

What the request needs (`actors.capabilities`: tools, a forced tool choice, vision, image URLs,
JSON, a JSON schema, its max_tokens against a model's output limit) is checked before health: a
model lacking a need is skipped, and a provider with no model left, or whose wire format (or last
resort kind) cannot carry a need, is excluded as `UNSUPPORTED`, naming the model and what it
lacks ("gemini-flash: no JSON schema"). Hints a provider ignores (seed, penalties, user, metadata)
are noted on its candidate, never a reason to exclude.

`Request.model` pins one model: only providers offering it are candidates (the others are
excluded as `NOT_OFFERED`), with that model and no other. `Request.models` is a preference list:
each provider is asked with the first listed model it offers that fits, and candidates order by
that model's place in the list first, then as above. Last-resort providers stay candidates (they
are the last resort). A pin that no provider of any level offers is `ModelNotOffered`, raised
before any call.

With predictive detection on (`[routing] predict`), a provider whose change detector has fired
(`actors.detect`) is demoted: it stays a candidate, behind every peer of its level that is not
demoted, with the detector's evidence as its reason ("predicted degradation: latency +4.1 sd
over 38 calls"). Like a lower score, a demotion does not make the reply a fallback
(`Reply.fallback_used`), so the fallback rate means the same with detection on or off.

Like Envoy's panic threshold, `plan` never lets open breakers exclude everything: when no
provider outside the last resort is left and some were excluded only by an open breaker, the
least-bad one (earliest half-open time, then lowest error rate) is added back as a panic
candidate. `RoutePlan.earliest_available` tells the cascade when waiting would help (the end of
the first Retry-After); `RoutePlan.earliest_half_open` only reports, in `explain`, when the first
such breaker turns half-open.

The seed's cost matrix is used only by a request that asks for a cost tier (`Request.cost`; see
`actors.tiers`): each provider is then asked with the model of the fewest tiers over the asked one
among those up to the request's complexity and quality (so a critical request never moves to a
draft model), and within a fitness tier those candidates rank first, each tier over costing
`COST_TIER_POINTS` of score. Each candidate's notes say what the tier did ("cost low: gpt-4o is
medium, 1 over: -3 points, instead of o1-preview (high), moved up from #2"). Without a tier,
price plays no part in the order: the budget check uses real prices.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import attrs

from actors.adapters.shaping import ModelShape, left_out_sampling, model_shape
from actors.capabilities import (
    NO_LIMITS,
    NO_NEEDS,
    KindLimits,
    Needs,
    kind_limits,
    missing,
    model_capabilities,
    request_needs,
)
from actors.config import (
    COMPLEXITIES,
    COST_TIERS,
    LAST_RESORT_KINDS,
    QUALITIES,
    Config,
    LevelConfig,
)
from actors.errors import ModelNotOffered
from actors.kinds import kind_named
from actors.messages import (
    BreakerState,
    Complexity,
    CostTier,
    ProviderSnapshot,
    Quality,
    Request,
)
from actors.sizing import request_chars
from actors.tiers import COST_TIER_POINTS, CostTiers, ModelGrade

if TYPE_CHECKING:
    from actors.brownout import Brownout
    from actors.detect import Demotion

#: Who is demoted at a given time (`actors.detect.DegradationWatch.demotions`).
Demotions = Callable[[float], "Mapping[str, Demotion]"]
_NOT_DEMOTED: Mapping[str, Demotion] = {}
#: Who is browned out at a given time (`actors.brownout.BrownoutWatch.brownouts`).
Brownouts = Callable[[float], "Mapping[str, Brownout]"]

__all__ = [
    "Candidate",
    "Exclusion",
    "ExclusionCause",
    "Fitness",
    "LevelPlan",
    "PlanMemo",
    "Ranker",
    "RoutePlan",
]

_UNLISTED = 1_000_000  # sorts after any real matrix position
_NO_LIMIT = 1 << 62  # the output limit of a model that has none


def _fitness_key(fitness: Fitness) -> tuple[int, int, int, int]:
    c, q = fitness.complexity_rank, fitness.quality_rank
    matches = (c is not None) + (q is not None)
    positions = (c or 0) + (q or 0)
    return (-matches, positions, _UNLISTED if c is None else c, _UNLISTED if q is None else q)


def _fitness_label(fitness: Fitness) -> str:
    c, q = fitness.complexity_rank is not None, fitness.quality_rank is not None
    if c and q:
        return "complexity+quality"
    if c:
        return "complexity"
    if q:
        return "quality"
    return "none"


@attrs.frozen
class Fitness:
    """Where a model stands in the request's complexity and quality matrix rows (0 = first)."""

    complexity_rank: int | None
    quality_rank: int | None
    #: Smaller is fitter: more matrices naming the model, then earlier positions.
    sort_key: tuple[int, int, int, int] = attrs.field(
        init=False,
        eq=False,
        repr=False,
        default=attrs.Factory(_fitness_key, takes_self=True),
    )
    #: "complexity+quality", "complexity", "quality" or "none".
    label: str = attrs.field(
        init=False, eq=False, repr=False, default=attrs.Factory(_fitness_label, takes_self=True)
    )

    def __str__(self) -> str:
        return self.label


_NO_FIT = Fitness(None, None)


class ExclusionCause(enum.StrEnum):
    UNAVAILABLE = "unavailable"
    FORCED_OPEN = "forced_open"
    BREAKER_OPEN = "breaker_open"
    RATE_LIMITED = "rate_limited"
    CONTEXT_TOO_LONG = "context_too_long"
    OVER_BUDGET = "over_budget"
    #: No model of the provider (or its wire format) can do what the request needs.
    UNSUPPORTED = "unsupported"
    #: The provider offers none of the models the request pins.
    NOT_OFFERED = "not_offered"


@attrs.frozen
class Candidate:
    """One provider to try, with the model chosen for this request."""

    provider: str
    #: "" for last-resort providers (cache, templates), which have no models.
    model: str
    #: Models of the same provider with larger context windows, in preference order, within the
    #: budget: what to try when the provider says the context is too long.
    fallback_models: tuple[str, ...]
    score: float
    fitness: Fitness
    estimated_cost_usd: float
    #: Added back although its breaker is open, because nothing else was left (Envoy's panic).
    panic: bool = False
    #: Anything notable about why it is here ("" when nothing is).
    reason: str = ""
    #: What the request asks that this candidate leaves out or treats differently ("ignores
    #: seed", "skipped o1-mini: no tools").
    notes: tuple[str, ...] = ()
    #: Ranked behind its level's peers because its change detector saw it degrade.
    demoted: bool = False
    #: The learner's estimate of it, in learned mode ("" otherwise).
    estimate: str = ""


@attrs.frozen
class Exclusion:
    """A provider left out of a level, and why."""

    provider: str
    reason: str
    cause: ExclusionCause
    #: When the breaker turns half-open (cause BREAKER_OPEN only).
    open_until: float | None = None
    #: The candidate it would be if its breaker were closed: set only when an open breaker is the
    #: one thing keeping it out, which makes it eligible for panic.
    standby: Candidate | None = attrs.field(default=None, repr=False)
    #: When a provider that asked us to wait (Retry-After) may be asked again. Set for that
    #: cause only: a Retry-After is the provider's own word, where an open breaker's half-open
    #: time is a guess that panic already covers.
    available_at: float | None = None


@attrs.frozen
class LevelPlan:
    level: str
    candidates: tuple[Candidate, ...]
    exclusions: tuple[Exclusion, ...]
    #: Set when the level's brownout policy is `demote` and every candidate is browned out:
    #: the walk tries the next level first (`actors.brownout`).
    brownout: Brownout | None = None
    #: What the level's brownout policy does for this request ("" when it is off).
    brownout_note: str = ""
    #: In learned mode, each candidate's tier: where the ranker placed it before health (pins,
    #: demotion, fitness, cost tier). `actors.learned` reorders only candidates of equal tier.
    tiers: tuple[tuple[float, ...], ...] = attrs.field(default=(), eq=False, repr=False)

    def explain(self) -> list[str]:
        """One line per candidate in rank order, then one per exclusion, then the level's
        brownout policy."""
        lines = []
        for index, c in enumerate(self.candidates, 1):
            line = (
                f"{self.level} #{index} {c.provider} {c.model or '-'} score={c.score:.1f} "
                f"fit={c.fitness.label} est={_usd(c.estimated_cost_usd)}"
            )
            if c.fallback_models:
                line += f" fallbacks={','.join(c.fallback_models)}"
            if c.estimate:
                line += f" {c.estimate}"
            if c.panic:
                line += " PANIC"
            if c.reason:
                line += f" ({c.reason})"
            if c.notes:
                line += f" [{'; '.join(c.notes)}]"
            lines.append(line)
        for e in self.exclusions:
            lines.append(f"{self.level} excluded {e.provider}: {e.reason}")
        if self.brownout_note:
            lines.append(f"{self.level} {self.brownout_note}")
        return lines


@attrs.frozen
class RoutePlan:
    """The candidates of every level for one request."""

    #: What was ranked, without the prompt text (which may hold anything): the text, or what
    #: makes it when read (`summary`). Most plans are never explained: the ranker passes a
    #: function, not the formatted line.
    _summary: str | Callable[[], str] = attrs.field(alias="summary", eq=False, repr=False)
    levels: tuple[LevelPlan, ...]
    #: The earliest time a breaker that alone keeps a provider out turns half-open, if any.
    earliest_half_open: float | None
    #: The earliest time a provider that asked us to wait (Retry-After) may be asked again: the
    #: cascade waits for it, within the deadline, before it settles for the last resort.
    earliest_available: float | None = None

    @property
    def summary(self) -> str:
        summary = self._summary
        return summary if isinstance(summary, str) else summary()

    def explain(self) -> list[str]:
        lines = [self.summary]
        for level in self.levels:
            lines.extend(level.explain())
        if self.earliest_half_open is not None:
            lines.append(f"earliest half-open at t={self.earliest_half_open:.1f}s")
        if self.earliest_available is not None:
            lines.append(f"earliest Retry-After ends at t={self.earliest_available:.1f}s")
        return lines

    def level(self, name: str) -> LevelPlan:
        for level in self.levels:
            if level.level == name:
                return level
        raise KeyError(name)


class _BrownoutPolicies:
    """The levels' brownout policies, read once from the config: each level with a policy, the
    levels after it that are not the last resort, and the notes that depend on nothing else."""

    def __init__(self, config: Config) -> None:
        kinds = {p.name: p.kind for p in config.providers}
        real = [
            index
            for index, level in enumerate(config.levels)
            if not all(kinds[name] in LAST_RESORT_KINDS for name in level.providers)
        ]
        self._levels = config.levels
        #: (index, level, the later levels it may move to) per level with a policy.
        self._watched = tuple(
            (index, level, tuple(i for i in real if i > index))
            for index, level in enumerate(config.levels)
            if level.brownout != "off"
        )
        self._notes: dict[tuple[int, int], str] = {}

    def apply(self, plans: list[LevelPlan], brownouts: Mapping[str, Brownout]) -> None:
        """Each level's plan (in place) with what its brownout policy does: the level is
        browned out when every candidate is; it is demoted behind, or hedged into, the next
        level that is not the last resort."""
        for index, level, later in self._watched:
            plan = plans[index]
            if not plan.candidates:
                continue
            into = next((i for i in later if plans[i].candidates), None)
            if into is None:
                continue
            browned: Brownout | None = None
            if not brownouts:
                note = self._note(index, into)
            else:
                browned, note = self._browned(level, into, plan, brownouts)
            plans[index] = LevelPlan(
                plan.level, plan.candidates, plan.exclusions, browned, note, plan.tiers
            )

    def _note(self, index: int, into: int) -> str:
        """The note of a level none of whose candidates is browned out."""
        note = self._notes.get((index, into))
        if note is None:
            level, name = self._levels[index], self._levels[into].name
            factor = f"{level.brownout_factor:g}x"
            if level.brownout == "hedge":
                note = (
                    f"brownout hedge: a call over {factor} its provider's baseline latency "
                    f"starts {name} beside it, within {level.brownout_hedge_budget:.0%} of "
                    "requests"
                )
            else:
                note = (
                    f"brownout demote: walked after {name} once every provider is over "
                    f"{factor} its baseline latency"
                )
            self._notes[(index, into)] = note
        return note

    def _browned(
        self, level: LevelConfig, into: int, plan: LevelPlan, brownouts: Mapping[str, Brownout]
    ) -> tuple[Brownout | None, str]:
        """The level's brownout (demote only) and note while some provider is browned out."""
        name = self._levels[into].name
        found = [brownouts.get(c.provider) for c in plan.candidates]
        browned = found[0] if all(found) else None
        factor = f"{level.brownout_factor:g}x"
        if level.brownout == "hedge":
            note = (
                f"brownout hedge: a call over {factor} its provider's baseline latency starts "
                f"{name} beside it, within {level.brownout_hedge_budget:.0%} of requests"
            )
            if found[0] is not None:
                note += f"; {found[0].note}"
            return None, note  # hedged, not demoted
        if browned is not None:
            note = (
                f"brownout demote: tried after {name}, {browned.note}; one request every "
                f"{level.brownout_probe_s:g} s tries it first, hedged into {name} after {factor} "
                f"its baseline ({browned.threshold_ms / 1000:.3g} s)"
            )
            return browned, note
        return None, (
            f"brownout demote: walked after {name} once every provider is over {factor} "
            "its baseline latency"
        )


def _usd(amount: float) -> str:
    if amount == 0 or amount >= 0.0001:
        return f"${amount:.4f}"
    return f"${amount:.2e}"


_PLAIN_SHAPE = ModelShape()


@attrs.frozen
class _ModelEntry:
    """A model as a provider offers it for one complexity/quality pair, prices per token."""

    model: str
    fitness: Fitness
    input_per_token: float
    output_per_token: float
    context_window: int
    #: The `Need` mask the model meets, and its output limit (`_NO_LIMIT` when none is known).
    supports: int = -1
    max_output: int = _NO_LIMIT
    #: The model's request shape: what `request_shape` sends it (its sampling parameters).
    shape: ModelShape = _PLAIN_SHAPE
    #: Entries of the same provider with a larger window, in the same preference order.
    larger: tuple[_ModelEntry, ...] = ()
    # For a request with a cost tier only (see `actors.tiers`): the model's grade, whether it
    # is up to the request's complexity and quality, how many tiers over the asked one it is,
    # and its place in the order the request would have without a tier.
    grade: ModelGrade | None = None
    fits: bool = True
    over: int = 0
    plain_rank: int = 0


@attrs.frozen
class _ProviderRoute:
    """A provider's models for one complexity/quality pair, fittest first."""

    provider: str
    last_resort: bool
    models: tuple[_ModelEntry, ...]
    limits: KindLimits = NO_LIMITS
    #: The needs every model meets, and the smallest output limit: a request within both needs
    #: no per-model check.
    common_supports: int = -1
    output_floor: int = _NO_LIMIT
    #: Per request (see `Ranker._fit`): what the candidate's explanation notes, and where its
    #: chosen model stands in `Request.models`.
    notes: tuple[str, ...] = ()


class Ranker:
    """Ranks a level's providers for a request from the latest heartbeats. Pure and cheap."""

    def __init__(
        self,
        config: Config,
        *,
        demotions: Demotions | None = None,
        brownouts: Brownouts | None = None,
    ) -> None:
        self._config = config
        self._demotions = demotions
        self._brownouts = brownouts
        routing = config.routing
        self._chars_per_token = routing.chars_per_token
        self._learned = routing.mode == "learned"
        self._latency_points_per_ms = 100.0 / routing.latency_zero_ms
        w = routing.weights
        self._w_latency = w.latency
        self._w_reliability = w.reliability
        self._w_quota = w.quota
        #: The score of a provider we have no heartbeat from: 50 in every component.
        self._neutral_score = 50.0 * (w.latency + w.reliability + w.quota)
        self._kinds = {p.name: p.kind for p in config.providers}
        self._models = {p.name: p.models for p in config.providers}
        in_levels = {name for level in config.levels for name in level.providers}
        #: Every model a provider of some level offers, in config order (for `ModelNotOffered`).
        self._offered: dict[str, None] = {
            model: None for p in config.providers if p.name in in_levels for model in p.models
        }
        self._routes: dict[
            tuple[str, tuple[str, ...], str, str, str | None], tuple[_ProviderRoute, ...]
        ] = {}
        #: Counts the repricings: a plan ranked before the last one has the old prices.
        self.generation = 0
        self._precompute()

    def _precompute(self) -> None:
        """Everything the config can ask for, now, so the hot path only ever hits the cache.
        The cost tiers too: a model no cost row lists takes the tier its price falls in."""
        self._tiers = CostTiers(self._config)
        self._policies = _BrownoutPolicies(self._config)
        self._routes.clear()
        for level in self._config.levels:
            for complexity in Complexity:
                for quality in Quality:
                    for cost in (None, *CostTier):
                        self._level_routes(level, complexity, quality, cost)

    def reprice(self, config: Config) -> None:
        """Take `config`'s model prices (the same providers and levels, repriced while running):
        the routes, which carry each model's price, are computed again."""
        self._config = config
        self.generation += 1
        self._precompute()

    # --- precomputation -------------------------------------------------------------------

    def _level_routes(
        self, level: LevelConfig, complexity: str, quality: str, cost: str | None = None
    ) -> tuple[_ProviderRoute, ...]:
        key = (level.name, level.providers, complexity, quality, cost)
        routes = self._routes.get(key)
        if routes is None:
            routes = tuple(
                self._provider_route(name, level.name, complexity, quality, cost)
                for name in level.providers
            )
            self._routes[key] = routes
        return routes

    def _provider_route(
        self, provider: str, level: str, complexity: str, quality: str, cost: str | None
    ) -> _ProviderRoute:
        try:
            kind, models = self._kinds[provider], self._models[provider]
        except KeyError:
            raise ValueError(f"level {level!r} names unknown provider {provider!r}") from None
        complexity_row = self._config.routing.complexity.get(complexity, ())
        quality_row = self._config.routing.quality.get(quality, ())
        plain = []
        for order, model in enumerate(models):
            fitness = Fitness(
                complexity_row.index(model) if model in complexity_row else None,
                quality_row.index(model) if model in quality_row else None,
            )
            info = self._config.model_info(model)
            caps = model_capabilities(model, info)
            entry = _ModelEntry(
                model,
                fitness,
                info.input_usd_per_mtok / 1e6,
                info.output_usd_per_mtok / 1e6,
                info.context_window,
                caps.supports,
                _NO_LIMIT if caps.max_output_tokens is None else caps.max_output_tokens,
                model_shape(model, info),
            )
            plain.append((fitness.sort_key, order, entry))
        plain.sort(key=lambda item: (item[0], item[1]))
        ordered = [entry for _, _, entry in plain]
        if cost is not None:
            ordered = self._cost_order(ordered, complexity, quality, cost)
        entries = tuple(
            attrs.evolve(
                entry,
                larger=tuple(o for o in ordered if o.context_window > entry.context_window),
            )
            for entry in ordered
        )
        common, floor = -1, _NO_LIMIT
        for entry in entries:
            common &= entry.supports
            floor = min(floor, entry.max_output)
        limits = kind_limits(kind, kind_named(kind).wire)
        return _ProviderRoute(provider, kind in LAST_RESORT_KINDS, entries, limits, common, floor)

    def _cost_order(
        self, ordered: list[_ModelEntry], complexity: str, quality: str, cost: str
    ) -> list[_ModelEntry]:
        """`ordered` (fittest first) for a request with a cost tier: the models up to its
        complexity and quality first, the fewest tiers over the asked one first among them;
        the others after, in their own order."""
        wanted = (COMPLEXITIES.index(complexity), QUALITIES.index(quality))
        tier = COST_TIERS.index(cost)
        graded = []
        for rank, entry in enumerate(ordered):
            grade = self._tiers.grade(entry.model)
            fits = grade.fits(*wanted)
            over = grade.over(tier) if fits else 0
            graded.append(attrs.evolve(entry, grade=grade, fits=fits, over=over, plain_rank=rank))
        graded.sort(key=lambda entry: (not entry.fits, entry.over, entry.plain_rank))
        return graded

    # --- per request ------------------------------------------------------------------------

    def prompt_tokens(self, request: Request) -> float:
        """Estimated prompt size in tokens, before any call: the whole conversation, tools,
        output schema and images (`actors.sizing`). The context check adds max_tokens."""
        return request_chars(request) / self._chars_per_token

    def estimate_cost(self, request: Request, model: str) -> float:
        """Estimated USD cost: estimated prompt tokens at the input price, plus max_tokens at the
        output price."""
        info = self._config.model_info(model)
        return (
            self.prompt_tokens(request) * info.input_usd_per_mtok
            + request.max_tokens * info.output_usd_per_mtok
        ) / 1e6

    def score(self, snapshot: ProviderSnapshot | None) -> float:
        """The seed's score from a heartbeat; neutral (50 per component) without one.

        The latency is the measured average, raised to the age of the oldest call still in
        flight (a brownout shows before its slow calls finish). A provider never measured scores
        a neutral latency, not the perfect score a latency of 0 would give.
        """
        if snapshot is None:
            return self._neutral_score
        in_flight_ms = snapshot.oldest_call_s * 1000.0
        per_ms = self._latency_points_per_ms
        if snapshot.last_check is None:
            latency = min(50.0, 100.0 - in_flight_ms * per_ms)
        else:
            latency = 100.0 - max(snapshot.latency_ms, in_flight_ms) * per_ms
        if latency < 0.0:
            latency = 0.0
        return (
            latency * self._w_latency
            + (100.0 - snapshot.error_rate * 100.0) * self._w_reliability
            + snapshot.quota_remaining * 100.0 * self._w_quota
        )

    def rank(
        self,
        request: Request,
        level: LevelConfig,
        snapshots: Mapping[str, ProviderSnapshot],
        now: float,
    ) -> LevelPlan:
        """The candidates of one level, best first, and the exclusions. No panic: see `plan`."""
        pins = self._pins(request)
        tokens = self.prompt_tokens(request)
        return self._rank(request, tokens, request_needs(request), pins, level, snapshots, now)

    def plan(
        self,
        request: Request,
        levels: Sequence[LevelConfig],
        snapshots: Mapping[str, ProviderSnapshot],
        now: float,
    ) -> RoutePlan:
        """Rank every level; add a panic candidate when open breakers alone left nothing.
        A pinned model no provider offers raises `ModelNotOffered`."""
        return self._plan(request, levels, snapshots, now, self._inputs(request, now))

    def _inputs(self, request: Request, now: float) -> _PlanInputs:
        """What a plan derives from `request` and reads at `now` (asking for the demotions
        ends those that are over). A pinned model no provider offers raises `ModelNotOffered`."""
        return _PlanInputs(
            () if request.model is None and not request.models else self._pins(request),
            self.prompt_tokens(request),
            request_needs(request),
            self._demotions(now) if self._demotions is not None else _NOT_DEMOTED,
            self._brownouts(now) if self._brownouts is not None else None,
        )

    def _plan(
        self,
        request: Request,
        levels: Sequence[LevelConfig],
        snapshots: Mapping[str, ProviderSnapshot],
        now: float,
        inputs: _PlanInputs,
    ) -> RoutePlan:
        """`plan`, from what it derives from the request and reads at `now`."""
        pins, tokens, needs, demoted, browned = inputs
        allowed = request.levels
        plans = [
            self._rank(request, tokens, needs, pins, level, snapshots, now, demoted)
            if not allowed or level.name in allowed
            else LevelPlan(level.name, (), ())  # not this request's: nothing to try, or wait for
            for level in levels
        ]
        earliest = _add_panic(plans, snapshots)
        summary = functools.partial(_plan_summary, request, tokens, needs, pins)
        if browned is not None:
            self._policies.apply(plans, browned)
        times = [e.available_at for p in plans for e in p.exclusions if e.available_at is not None]
        return RoutePlan(summary, tuple(plans), earliest, min(times) if times else None)

    def _pins(self, request: Request) -> tuple[str, ...]:
        """The models `request` pins, in preference order (none: any model)."""
        pins: tuple[str, ...]
        if request.model is not None:
            field, pins = "model", (request.model,)
        elif request.models:
            field, pins = "models", request.models
        else:
            return ()
        if not any(model in self._offered for model in pins):
            raise ModelNotOffered(field, pins, tuple(self._offered))
        return pins

    def _rank(
        self,
        request: Request,
        tokens: float,
        needs: Needs,
        pins: tuple[str, ...],
        level: LevelConfig,
        snapshots: Mapping[str, ProviderSnapshot],
        now: float,
        demoted: Mapping[str, Demotion] = _NOT_DEMOTED,
    ) -> LevelPlan:
        routes = self._level_routes(level, request.complexity, request.quality, request.cost)
        ranked: list[tuple[tuple[float, ...], str, Candidate, tuple[float, ...]]] = []
        #: For a request with a cost tier: each candidate's order without it, and its choices.
        plain: dict[str, tuple[tuple[float, ...], _ModelEntry | None, _ModelEntry | None]] = {}
        exclusions: list[Exclusion] = []
        # A request that needs and pins nothing is checked only against the route's smallest
        # output limit; any other goes through `_fit` (the threshold beats every floor).
        threshold = request.max_tokens if needs is NO_NEEDS and not pins else _NO_LIMIT + 1
        for route in routes:
            # What the request needs rules a provider out whatever its health, so first.
            if threshold > route.output_floor:
                fitted = _fit(route, needs, request.max_tokens, pins)
                if isinstance(fitted, Exclusion):
                    exclusions.append(fitted)
                    continue
                route = fitted
            gate = self._gate(route.provider, snapshots.get(route.provider), now)
            if isinstance(gate, Exclusion):
                exclusions.append(gate)
                continue
            choice = _choose_model(route, tokens, request.max_tokens, request.budget_usd)
            if choice.entry is None and route.models:
                exclusions.append(_unfit_exclusion(route.provider, gate, choice, request, tokens))
                continue
            candidate = _candidate(route, gate, choice, request, tokens)
            if gate.breaker_open:
                exclusions.append(
                    _breaker_exclusion(route.provider, gate.open_until, standby=candidate)
                )
                continue
            demotion = demoted.get(route.provider) if demoted else None
            if demotion is not None:
                candidate = _demote(candidate, demotion.note)
            # A predicted degradation goes behind every peer, with a cost tier or without.
            behind: tuple[float, ...] = (demotion is not None,) if demoted else ()
            order = (*behind, *_order(candidate, pins))
            if request.cost is not None:
                without = (
                    choice.entry
                    if pins  # pinned models keep the pins' order, tier or not
                    else _plain_choice(route, tokens, request.max_tokens, request.budget_usd)
                )
                plain[route.provider] = (order, choice.entry, without)
                order = (*behind, *_order(candidate, pins, tiered=True, entry=choice.entry))
            tier: tuple[float, ...] = ()
            if self._learned:  # the tier the learner keeps it in; nothing to pay otherwise
                over = None
                if request.cost is not None:
                    over = 0 if choice.entry is None else choice.entry.over
                tier = _tier(order, over)
            ranked.append((order, route.provider, candidate, tier))

        ranked.sort(key=lambda item: item[:2])
        candidates = tuple(item[2] for item in ranked)
        if request.cost is not None:
            candidates = _with_cost_notes(candidates, plain, request.cost)
        tiers = tuple(item[3] for item in ranked) if self._learned else ()
        return LevelPlan(level.name, candidates, tuple(exclusions), tiers=tiers)

    def _gate(
        self, name: str, snapshot: ProviderSnapshot | None, now: float
    ) -> _Gate | Exclusion:
        """What the provider's heartbeat says before any model is chosen: an exclusion (out for
        a reason that no model choice changes), or its score and breaker state."""
        if snapshot is None:
            return _Gate(self._neutral_score, "no heartbeat yet: assumed available, neutral score")
        if not snapshot.available:
            return Exclusion(
                name,
                f"unavailable: {snapshot.reason or 'no reason given'}",
                ExclusionCause.UNAVAILABLE,
            )
        state = snapshot.breaker.state
        if state is BreakerState.FORCED_OPEN:
            return Exclusion(name, "breaker forced open", ExclusionCause.FORCED_OPEN)
        breaker_open = state is BreakerState.OPEN and not _open_period_over(snapshot, now)
        open_until = snapshot.breaker.open_until if breaker_open else None
        note = ""
        if state is BreakerState.HALF_OPEN:
            note = f"breaker half-open, {snapshot.breaker.half_open_probes_left} probes left"
        retry_until = snapshot.retry_after_until
        if retry_until is not None and retry_until > now:
            return _retry_after_exclusion(name, breaker_open, open_until, retry_until)
        return _Gate(self.score(snapshot), note, breaker_open, open_until)


class _PlanInputs(NamedTuple):
    """What a plan derives from its request, and the demotions and brownouts at its time
    (None: no level watches for brownouts)."""

    pins: tuple[str, ...]
    tokens: float
    needs: Needs
    demoted: Mapping[str, Demotion]
    browned: Mapping[str, Brownout] | None


class _Memo(NamedTuple):
    """A plan, and what it was ranked from that a request's shape does not say."""

    plan: RoutePlan
    #: When it was ranked, and the first instant after that a time test of the ranking flips
    #: for the table it was ranked from: it holds from the one up to the other.
    since: float
    until: float
    demoted: Mapping[str, Demotion]
    browned: Mapping[str, Brownout] | None


class PlanMemo:
    """A router's recent plans, by the shape of the request: between two heartbeats most requests
    ask the same thing, and ranking every level is most of what routing one costs.

    A plan is reused only while all it was ranked from is the same: every field of the request
    the ranking reads (its text only through the token estimate), the table (snapshot for
    snapshot, by identity or value), the demotions and brownouts (asked for on every request,
    as `Ranker.plan` does), the ranker's prices, and the time, up to the first instant an open
    period or a Retry-After of the table ends. So it returns exactly what `Ranker.plan` would;
    plans are frozen, and what a request does with its plan (exploration, learned order)
    makes a new one."""

    def __init__(self, ranker: Ranker, levels: Sequence[LevelConfig], size: int = 64) -> None:
        self._ranker = ranker
        self._levels = levels
        self._size = size
        self._plans: dict[tuple[object, ...], _Memo] = {}
        #: The table and the ranker's generation the plans were ranked from.
        self._table: tuple[tuple[str, ProviderSnapshot], ...] = ()
        self._generation = ranker.generation

    def plan(
        self, request: Request, snapshots: Mapping[str, ProviderSnapshot], now: float
    ) -> RoutePlan:
        """`Ranker.plan(request, levels, snapshots, now)`, ranked again only when it may differ."""
        ranker = self._ranker
        inputs = ranker._inputs(request, now)
        demoted, browned = inputs.demoted, inputs.browned
        table = tuple(snapshots.items())
        if table != self._table or ranker.generation != self._generation:
            self._plans.clear()
            self._generation = ranker.generation
        self._table = table  # equal, if not the same: identity makes the next test quick
        key = _shape(request, inputs.tokens, inputs.needs)
        memo = self._plans.get(key)
        if (
            memo is not None
            and memo.since <= now < memo.until
            and (memo.demoted is demoted or memo.demoted == demoted)
            and (memo.browned is browned or memo.browned == browned)
        ):
            return memo.plan
        plan = ranker._plan(request, self._levels, snapshots, now, inputs)
        if key not in self._plans and len(self._plans) >= self._size:
            del self._plans[next(iter(self._plans))]  # the oldest
        until = _valid_until(snapshots.values(), now)
        self._plans[key] = _Memo(plan, now, until, demoted, browned)
        return plan


def _shape(request: Request, tokens: float, needs: Needs) -> tuple[object, ...]:
    """Every field of `request` the ranking reads, its text as the prompt's token estimate."""
    return (
        request.complexity,
        request.quality,
        request.cost,
        request.budget_usd,
        request.max_tokens,
        request.model,
        request.models,
        request.levels,
        needs.mask,
        needs.hints,
        needs.one_call,
        tokens,
        # Whether `left_out_sampling` has a top_p to leave out (the penalties are hints).
        request.top_p is None,
    )


def _valid_until(snapshots: Iterable[ProviderSnapshot], now: float) -> float:
    """The first instant after `now` at which a time test of `Ranker._gate` flips for one of
    `snapshots`: an open breaker's open period, or a Retry-After, ending."""
    until = math.inf
    for snapshot in snapshots:
        breaker = snapshot.breaker
        open_until = breaker.open_until if breaker.state is BreakerState.OPEN else None
        if open_until is not None and now < open_until < until:
            until = open_until
        retry = snapshot.retry_after_until
        if retry is not None and now < retry < until:
            until = retry
    return until


def _add_panic(plans: list[LevelPlan], snapshots: Mapping[str, ProviderSnapshot]) -> float | None:
    """Add the least-bad provider kept out by its open breaker alone to its level's plan (in
    place), when no level has a candidate; return the earliest half-open time of those."""
    eligible: list[tuple[float, float, str, int, Exclusion]] = []
    has_candidate = False
    for index, level_plan in enumerate(plans):
        # A last resort counts too: panic does not apply while one can answer (if it has
        # nothing, the cascade makes its own panic attempt before giving up).
        if level_plan.candidates:
            has_candidate = True
        for exclusion in level_plan.exclusions:
            if exclusion.standby is not None and exclusion.open_until is not None:
                snapshot = snapshots.get(exclusion.provider)
                error_rate = snapshot.error_rate if snapshot is not None else 0.0
                eligible.append(
                    (exclusion.open_until, error_rate, exclusion.provider, index, exclusion)
                )
    earliest = min(item[0] for item in eligible) if eligible else None
    if eligible and not has_candidate:
        open_until, error_rate, _, index, exclusion = min(eligible, key=lambda item: item[:3])
        assert exclusion.standby is not None
        panic = attrs.evolve(
            exclusion.standby,
            panic=True,
            reason=(
                f"panic: every provider is out on an open breaker; least bad: "
                f"half-open at t={open_until:.1f}s, error rate {error_rate:.0%}"
            ),
        )
        level_plan = plans[index]
        plans[index] = LevelPlan(
            level_plan.level,
            (panic, *level_plan.candidates),
            tuple(e for e in level_plan.exclusions if e is not exclusion),
        )
    return earliest


def _plan_summary(request: Request, tokens: float, needs: Needs, pins: tuple[str, ...]) -> str:
    """`RoutePlan.summary`: what was ranked, the request's text left out."""
    budget = "unlimited" if request.budget_usd is None else _usd(request.budget_usd)
    if request.cost is not None:
        budget += f" cost={request.cost.value}"
    summary = (
        f"request complexity={request.complexity.value} quality={request.quality.value} "
        f"budget={budget} prompt~{tokens:.0f}tok max_tokens={request.max_tokens}"
    )
    if needs is not NO_NEEDS or pins:
        summary += _needs_summary(request, needs)
    return summary


def _order(
    candidate: Candidate,
    pins: tuple[str, ...],
    *,
    tiered: bool = False,
    entry: _ModelEntry | None = None,
) -> tuple[float, ...]:
    """Where a candidate ranks in its level, smallest first. Fitness tier (how many matrices
    name the model), then health, then matrix position: position alone must never outrank a
    provider that is answering better right now. With a cost tier (`tiered`; `entry` is the
    chosen model, None for a last resort), models up to the request come first within a
    fitness tier, and each tier over the asked one costs `COST_TIER_POINTS` of score. A
    preference list (`pins`) orders before all of it."""
    key = candidate.fitness.sort_key
    order: tuple[float, ...]
    if not tiered:
        order = (key[0], -candidate.score, *key[1:])
    else:
        fits, over = (True, 0) if entry is None else (entry.fits, entry.over)
        order = (key[0], not fits, over * COST_TIER_POINTS - candidate.score, *key[1:])
    if pins:
        place = pins.index(candidate.model) if candidate.model in pins else len(pins)
        order = (place, *order)
    return order


def _tier(order: tuple[float, ...], over: int | None) -> tuple[float, ...]:
    """A candidate's `_order` before the score (and, for a request with a cost tier, how many
    tiers over it the model is): where learned selection keeps it."""
    tier = order[:-4]  # the score, then the three matrix positions of `Fitness.sort_key`
    return tier if over is None else (*tier, over)


class _Gate(NamedTuple):
    """A provider past the heartbeat checks: its score, and whether only its breaker is open.
    (A named tuple, as `_ModelChoice`: made for every provider of every plan.)"""

    score: float
    note: str
    breaker_open: bool = False
    open_until: float | None = None


class _ModelChoice(NamedTuple):
    """The fittest model that fits the context window and the budget (None: none does), with
    what the exclusion message needs when none does."""

    entry: _ModelEntry | None
    cost: float
    #: The cheapest estimate over budget, and its model.
    cheapest: tuple[float, str] | None
    largest: _ModelEntry | None


def _choose_model(
    route: _ProviderRoute, tokens: float, max_tokens: int, budget: float | None
) -> _ModelChoice:
    needed = tokens + max_tokens
    cheapest: tuple[float, str] | None = None
    largest: _ModelEntry | None = None
    for entry in route.models:
        if largest is None or entry.context_window > largest.context_window:
            largest = entry
        if needed > entry.context_window:
            continue
        estimate = tokens * entry.input_per_token + max_tokens * entry.output_per_token
        if budget is not None and estimate > budget:
            if cheapest is None or estimate < cheapest[0]:
                cheapest = (estimate, entry.model)
            continue
        return _ModelChoice(entry, estimate, cheapest, largest)
    return _ModelChoice(None, 0.0, cheapest, largest)


def _plain_choice(
    route: _ProviderRoute, tokens: float, max_tokens: int, budget: float | None
) -> _ModelEntry | None:
    """The model `_choose_model` would pick from a tiered route if the request had no tier."""
    best: _ModelEntry | None = None
    for entry in route.models:
        if tokens + max_tokens > entry.context_window:
            continue
        estimate = tokens * entry.input_per_token + max_tokens * entry.output_per_token
        if budget is not None and estimate > budget:
            continue
        if best is None or entry.plain_rank < best.plain_rank:
            best = entry
    return best


def _with_cost_notes(
    candidates: tuple[Candidate, ...],
    plain: Mapping[str, tuple[tuple[float, ...], _ModelEntry | None, _ModelEntry | None]],
    cost: str,
) -> tuple[Candidate, ...]:
    """Each candidate with a model, with a note on what the request's cost tier did to it."""
    before = sorted(plain, key=lambda name: (plain[name][0], name))
    noted = []
    for rank, candidate in enumerate(candidates, 1):
        _, entry, without = plain[candidate.provider]
        if entry is not None:
            note = _cost_note(cost, entry, without, rank, before.index(candidate.provider) + 1)
            candidate = attrs.evolve(candidate, notes=(*candidate.notes, note))
        noted.append(candidate)
    return tuple(noted)


def _cost_note(
    cost: str, entry: _ModelEntry, without: _ModelEntry | None, rank: int, plain_rank: int
) -> str:
    """``cost low: gpt-4o is medium, 1 over: -3 points, instead of o1-preview (high), moved
    up from #2``: the tier of the chosen model, and what the cost tier changed."""
    assert entry.grade is not None
    parts = [f"{entry.model} is {entry.grade.describe()}"]
    if not entry.fits:
        parts.append("below the request's complexity or quality: not moved")
    elif entry.over:
        parts.append(f"{entry.over} over: -{entry.over * COST_TIER_POINTS:g} points")
    if without is not None and without.model != entry.model and without.grade is not None:
        below = "" if without.fits else ", below the request"
        parts.append(f"instead of {without.model} ({without.grade.describe()}{below})")
    if rank != plain_rank:
        parts.append(f"moved {'up' if rank < plain_rank else 'down'} from #{plain_rank}")
    return f"cost {cost}: {', '.join(parts)}"


def _retry_after_exclusion(
    name: str, breaker_open: bool, open_until: float | None, retry_until: float
) -> Exclusion:
    if breaker_open:
        exclusion = _breaker_exclusion(name, open_until)
        if open_until is not None:
            exclusion = attrs.evolve(exclusion, available_at=max(open_until, retry_until))
        return exclusion
    return Exclusion(
        name,
        f"rate-limited until t={retry_until:.1f}s",
        ExclusionCause.RATE_LIMITED,
        available_at=retry_until,
    )


def _unfit_exclusion(
    name: str, gate: _Gate, choice: _ModelChoice, request: Request, tokens: float
) -> Exclusion:
    """Why a provider none of whose models fits is out: its breaker, the budget or the context."""
    if gate.breaker_open:
        return _breaker_exclusion(name, gate.open_until)
    budget = request.budget_usd
    if choice.cheapest is not None:
        assert budget is not None
        return Exclusion(
            name,
            f"over budget: cheapest estimate {_usd(choice.cheapest[0])} ({choice.cheapest[1]}) "
            f"> budget {_usd(budget)}",
            ExclusionCause.OVER_BUDGET,
        )
    largest = choice.largest
    assert largest is not None
    return Exclusion(
        name,
        f"context too long: ~{tokens + request.max_tokens:.0f} tokens (prompt + max_tokens) > "
        f"largest window {largest.context_window} ({largest.model})",
        ExclusionCause.CONTEXT_TOO_LONG,
    )


def _candidate(
    route: _ProviderRoute, gate: _Gate, choice: _ModelChoice, request: Request, tokens: float
) -> Candidate:
    name, notes = route.provider, route.notes
    chosen = choice.entry
    if chosen is None:  # a last-resort provider: no models, nothing to pay
        return Candidate(name, "", (), gate.score, _NO_FIT, choice.cost, False, gate.note, notes)
    budget, max_tokens = request.budget_usd, request.max_tokens
    fallbacks = tuple(
        o.model
        for o in chosen.larger
        if budget is None or tokens * o.input_per_token + max_tokens * o.output_per_token <= budget
    )
    left_out = left_out_sampling(request, chosen.shape)
    if left_out:
        notes = (*notes, f"{chosen.model} takes no {', '.join(left_out)}")
    return Candidate(
        name,
        chosen.model,
        fallbacks,
        gate.score,
        chosen.fitness,
        choice.cost,
        False,
        gate.note,
        notes,
    )


def _demote(candidate: Candidate, note: str) -> Candidate:
    reason = f"{note}; {candidate.reason}" if candidate.reason else note
    return attrs.evolve(candidate, demoted=True, reason=reason)


def _open_period_over(snapshot: ProviderSnapshot, now: float) -> bool:
    """An open breaker whose open period has ended is half-open by now, whether or not its
    heartbeat saying so has arrived: the provider's own breaker admits its probes."""
    until = snapshot.breaker.open_until
    return until is not None and until <= now


def _breaker_exclusion(
    provider: str, open_until: float | None, standby: Candidate | None = None
) -> Exclusion:
    until = "" if open_until is None else f" until t={open_until:.1f}s"
    return Exclusion(
        provider,
        f"breaker open{until}",
        ExclusionCause.BREAKER_OPEN,
        open_until=open_until,
        standby=standby if open_until is not None else None,
    )


def _fit(
    route: _ProviderRoute, needs: Needs, max_tokens: int, pins: tuple[str, ...]
) -> _ProviderRoute | Exclusion:
    """`route` cut down to the models that can answer: the pinned ones (in pin order) that meet
    every need and take `max_tokens`; or why the provider cannot answer at all."""
    name, limits = route.provider, route.limits
    blocked = needs.mask & limits.cannot
    if blocked:
        return Exclusion(name, limits.why(blocked), ExclusionCause.UNSUPPORTED)
    if route.last_resort:  # no models; a last resort is never pinned away
        return route
    models = route.models
    if pins:
        models = tuple(entry for pin in pins for entry in models if entry.model == pin)
        if not models:
            return Exclusion(name, _not_offered(pins), ExclusionCause.NOT_OFFERED)
    usable: list[_ModelEntry] = []
    skipped: list[str] = []
    for entry in models:
        lacking = needs.mask & ~entry.supports
        if lacking:
            skipped.append(f"{entry.model}: {missing(lacking)}")
        elif max_tokens > entry.max_output:
            skipped.append(
                f"{entry.model}: max_tokens {max_tokens} > max output {entry.max_output}"
            )
        else:
            usable.append(entry)
    if not usable:
        return Exclusion(name, "; ".join(skipped), ExclusionCause.UNSUPPORTED)
    entries = route.models
    if skipped or pins:  # fallback models only from among the usable ones
        entries = tuple(
            attrs.evolve(
                entry,
                larger=tuple(o for o in usable if o.context_window > entry.context_window),
            )
            for entry in usable
        )
    notes = (*_hint_notes(limits, needs), *(f"skipped {reason}" for reason in skipped))
    return attrs.evolve(route, models=entries, notes=notes)


def _hint_notes(limits: KindLimits, needs: Needs) -> tuple[str, ...]:
    """What the provider's wire format leaves out of, or does its own way for, the request."""
    notes = []
    ignored = [hint for hint in needs.hints if hint in limits.ignores]
    if ignored:
        notes.append(f"ignores {', '.join(ignored)}")
    if needs.one_call and limits.first_call_only:
        notes.append("parallel_tool_calls=false: keeps the first tool call only")
    return tuple(notes)


def _not_offered(pins: tuple[str, ...]) -> str:
    if len(pins) == 1:
        return f"does not offer {pins[0]}"
    return f"offers none of {', '.join(pins)}"


def _needs_summary(request: Request, needs: Needs) -> str:
    """The summary's tail for a request that needs or pins something."""
    parts = []
    if needs.labels:
        parts.append(f"needs={needs.labels}")
    if needs.hints:
        parts.append(f"hints={','.join(needs.hints)}")
    if request.model is not None:
        parts.append(f"model={request.model}")
    elif request.models:
        parts.append(f"models={','.join(request.models)}")
    return "".join(f" {part}" for part in parts)
