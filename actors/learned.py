"""Learned selection (`[routing] mode = "learned"`): discounted Thompson sampling per provider and
model, with the seed's numbers as its prior.

Each (provider, model) arm keeps discounted sums of what its calls did: successes and failures
(a Beta posterior on the success rate) and the log-latency of its successes (a Normal posterior
on the mean log-latency, i.e. a lognormal latency). Every observation's weight halves each
`half_life_s` of trio's clock, so an arm that drifts is followed and an arm left alone grows
uncertain again (discounted Thompson sampling for non-stationary bandits). The prior is what
the seed's score is made of, the heartbeat's latency and error rate, weighing `prior_weight`
calls: with no recent calls an arm is ranked as the score would rank it.

An arm's value is the expected time per answer within the request's horizon: the latency over
the chance of answering in time, ``E[L] / (p * P(L <= horizon))``, raised to the age of its
oldest call in flight (a brownout shows before its slow calls end), plus its estimated price at
`ms_per_cent`. Lower is better.

The learner only reorders candidates the ranker admitted, and only among those the ranker put
in the same tier (`Candidate.tier`: fitness, pinned models, cost tier, a demotion): an open
breaker, an exhausted budget, a Retry-After or a missing capability has already excluded a
provider, and a demoted one stays behind. A level is ordered by the posterior means; a sampled
order that puts another candidate first is an exploration, taken only while explorations stay
within `explore_share` of the requests planned. Draws come from a `random.Random` seeded from
the config, so a scenario run is a function of its seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, NamedTuple

import attrs
import trio

from actors.config import Config
from actors.messages import ProviderSnapshot
from actors.ranking import Candidate, Fitness, LevelPlan, RoutePlan

__all__ = ["ArmEstimate", "Learner", "LearnerSettings"]

#: The log-latency standard deviation an arm is assumed to have before its calls say (a
#: lognormal sigma of 0.3: the 95th percentile some 1.6 times the median).
PRIOR_LOG_SD = 0.3
#: The smallest log-latency standard deviation: no arm is ever taken as perfectly regular.
MIN_LOG_SD = 0.05
#: The error rate assumed of a provider without a heartbeat.
NEUTRAL_ERROR_RATE = 0.05
#: The floor of the chance of answering in time, so that a value stays finite.
MIN_SUCCESS = 1e-3
_SQRT2 = math.sqrt(2.0)
_PROBE_FIT = Fitness(None, None)


@attrs.frozen
class LearnerSettings:
    """`[routing] learned_*`: see `actors.config.RoutingConfig`."""

    explore_share: float = 0.02
    half_life_s: float = 15.0
    prior_weight: float = 10.0
    ms_per_cent: float = 0.0
    seed: int = 0
    #: The latency of a provider never measured (the seed's neutral latency score).
    neutral_latency_ms: float = 500.0

    @classmethod
    def of(cls, config: Config) -> LearnerSettings:
        routing = config.routing
        return cls(
            explore_share=routing.learned_explore_share,
            half_life_s=routing.learned_half_life_s,
            prior_weight=routing.learned_prior_weight,
            ms_per_cent=routing.learned_ms_per_cent,
            seed=routing.learned_seed,
            neutral_latency_ms=routing.latency_zero_ms / 2.0,
        )


@attrs.frozen
class ArmEstimate:
    """What the learner believes of one provider's model now."""

    provider: str
    model: str
    #: Posterior mean of the success rate.
    success: float
    #: Posterior mean latency of a success, in ms (lognormal mean).
    latency_ms: float
    #: The discounted number of calls behind the estimate (the prior not counted).
    weight: float
    #: Expected ms per answer within the horizon, price included: lower ranks first.
    value_ms: float

    def describe(self) -> str:
        return (
            f"learned p={self.success:.3f} lat~{self.latency_ms:.0f}ms "
            f"n={self.weight:.1f} value={self.value_ms:.0f}ms"
        )


class _Arm:
    """Discounted sums of one (provider, model)'s calls."""

    __slots__ = ("at", "fail", "lat_n", "lat_sq", "lat_sum", "ok")

    def __init__(self, now: float) -> None:
        self.at = now
        self.ok = self.fail = 0.0
        self.lat_n = self.lat_sum = self.lat_sq = 0.0

    def decay(self, now: float, half_life_s: float) -> None:
        if now <= self.at:
            return
        keep = 0.5 ** ((now - self.at) / half_life_s)
        self.at = now
        self.ok *= keep
        self.fail *= keep
        self.lat_n *= keep
        self.lat_sum *= keep
        self.lat_sq *= keep


class _Posterior(NamedTuple):
    """An arm's posterior: Beta(a, b) on success, Normal(mean, sd^2 / n) on mean log-latency."""

    a: float
    b: float
    mean: float
    sd: float
    n: float
    weight: float


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / _SQRT2))


class Learner:
    """The arms of every provider and model: fed each call by the cascade, read by the router."""

    def __init__(
        self,
        settings: LearnerSettings,
        *,
        ignore: Collection[str] = (),
        emit: Callable[..., Any] | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.settings = settings
        #: Providers not learned: the last resort (a cache or a template has no health).
        self._ignore = frozenset(ignore)
        self._emit = emit
        self._clock = clock
        self._rng = random.Random(f"learned:{settings.seed}")
        self._arms: dict[tuple[str, str], _Arm] = {}
        #: Exploration credit: `explore_share` per request planned, one per exploration.
        self._credit = 1.0
        self.planned = 0
        self.explorations = 0
        #: Each level's first choice by the estimates, to announce a change once.
        self._leaders: dict[str, str] = {}

    # -- learning ---------------------------------------------------------------------------

    def record(self, provider: str, model: str, latency_ms: float, *, ok: bool) -> None:
        """One call's outcome (a failure's latency says nothing of a success's)."""
        if provider in self._ignore:
            return
        now = self._clock()
        key = (provider, model)
        arm = self._arms.get(key)
        if arm is None:
            arm = self._arms[key] = _Arm(now)
        arm.decay(now, self.settings.half_life_s)
        if not ok:
            arm.fail += 1.0
            return
        arm.ok += 1.0
        log_latency = math.log(max(latency_ms, 1.0))
        arm.lat_n += 1.0
        arm.lat_sum += log_latency
        arm.lat_sq += log_latency * log_latency

    def _posterior(self, key: tuple[str, str], snapshot: ProviderSnapshot | None) -> _Posterior:
        settings = self.settings
        w0 = settings.prior_weight
        error_rate, latency = NEUTRAL_ERROR_RATE, settings.neutral_latency_ms
        if snapshot is not None:
            error_rate = snapshot.error_rate
            if snapshot.last_check is not None and snapshot.latency_ms > 0:
                latency = snapshot.latency_ms
        ok = fail = lat_n = lat_sum = lat_sq = 0.0
        arm = self._arms.get(key)
        if arm is not None:
            arm.decay(self._clock(), settings.half_life_s)
            ok, fail, lat_n, lat_sum, lat_sq = arm.ok, arm.fail, arm.lat_n, arm.lat_sum, arm.lat_sq
        a = 0.5 + w0 * (1.0 - error_rate) + ok
        b = 0.5 + w0 * error_rate + fail
        prior_mean = math.log(latency)
        n = w0 + lat_n
        mean = (w0 * prior_mean + lat_sum) / n
        spread = w0 * (PRIOR_LOG_SD**2 + prior_mean**2) + lat_sq - n * mean * mean
        sd = max(MIN_LOG_SD, math.sqrt(max(spread, 0.0) / n))
        return _Posterior(a, b, mean, sd, n, ok + fail)

    def _value(
        self, post: _Posterior, success: float, mean: float, candidate: Candidate, ctx: _Context
    ) -> tuple[float, float]:
        """(expected latency ms, expected ms per answer) for a success rate and mean log-latency."""
        latency = math.exp(mean + post.sd * post.sd / 2.0)
        snapshot = ctx.snapshots.get(candidate.provider)
        if snapshot is not None:
            latency = max(latency, snapshot.oldest_call_s * 1000.0)
        in_time = _phi((ctx.log_horizon - mean) / post.sd)
        value = latency / max(MIN_SUCCESS, success * in_time)
        value += candidate.estimated_cost_usd * 100.0 * self.settings.ms_per_cent
        return latency, value

    def estimate(
        self,
        candidate: Candidate,
        snapshots: Mapping[str, ProviderSnapshot],
        horizon_s: float,
    ) -> ArmEstimate:
        """The posterior means of `candidate`'s arm, and its value for a request's horizon."""
        ctx = _Context(snapshots, math.log(horizon_s * 1000.0))
        return self._estimate(candidate, ctx)

    def _estimate(self, candidate: Candidate, ctx: _Context) -> ArmEstimate:
        key = (candidate.provider, candidate.model)
        post = self._posterior(key, ctx.snapshots.get(candidate.provider))
        success = post.a / (post.a + post.b)
        latency, value = self._value(post, success, post.mean, candidate, ctx)
        return ArmEstimate(*key, success, latency, post.weight, value)

    def _mean_value(self, candidate: Candidate, ctx: _Context) -> float:
        post = self._posterior(
            (candidate.provider, candidate.model), ctx.snapshots.get(candidate.provider)
        )
        return self._value(post, post.a / (post.a + post.b), post.mean, candidate, ctx)[1]

    def _sample(self, candidate: Candidate, ctx: _Context) -> float:
        key = (candidate.provider, candidate.model)
        post = self._posterior(key, ctx.snapshots.get(candidate.provider))
        success = self._rng.betavariate(post.a, post.b)
        mean = self._rng.gauss(post.mean, post.sd / math.sqrt(post.n))
        return self._value(post, success, mean, candidate, ctx)[1]

    # -- ordering ---------------------------------------------------------------------------

    def reorder(
        self,
        plan: RoutePlan,
        snapshots: Mapping[str, ProviderSnapshot],
        horizons_s: Sequence[float],
        *,
        explore: bool,
    ) -> RoutePlan:
        """`plan` with each level's tiers ordered by the estimates. With `explore` (a real
        request), the first level's first choice may be a sampled one, within the exploration
        share; without (an explanation), nothing is drawn and each candidate notes its estimate."""
        if explore:
            self.planned += 1
            self._credit = min(1.0, self._credit + self.settings.explore_share)
        levels = []
        # Only the first level with candidates may explore: the one the request will use.
        may_explore = explore
        for level, horizon_s in zip(plan.levels, horizons_s, strict=True):
            ctx = _Context(snapshots, math.log(horizon_s * 1000.0))
            levels.append(
                self._order_level(level, ctx, may_explore=may_explore, explain=not explore)
            )
            may_explore = may_explore and not level.candidates
        return attrs.evolve(plan, levels=tuple(levels))

    def _order_level(
        self, level: LevelPlan, ctx: _Context, *, may_explore: bool, explain: bool
    ) -> LevelPlan:
        candidates, tiers = level.candidates, level.tiers
        if (
            not candidates
            or len(tiers) != len(candidates)
            or any(c.provider in self._ignore for c in candidates)
        ):
            return level  # no tiers: a panic candidate alone, or nothing
        out: list[Candidate] = []
        explored = False
        start = 0
        while start < len(candidates):
            end = start + 1
            while end < len(candidates) and tiers[end] == tiers[start]:
                end += 1
            group, did = self._order_group(candidates[start:end], ctx, may_explore and not start)
            out.extend(group)
            explored = explored or did
            start = end
        if not explored and out[0].provider != self._leaders.get(level.level):
            self._leader_changed(level.level, out[0])
        if explain:
            out = [attrs.evolve(c, estimate=self._estimate(c, ctx).describe()) for c in out]
        return attrs.evolve(level, candidates=tuple(out))

    def _order_group(
        self, group: Sequence[Candidate], ctx: _Context, may_explore: bool
    ) -> tuple[list[Candidate], bool]:
        """A tier's candidates by value, best first; or, within the exploration share, the
        one a sample puts first, then the others by value."""
        if len(group) < 2:
            return list(group), False
        values = [self._mean_value(c, ctx) for c in group]
        ranked = sorted(range(len(group)), key=values.__getitem__)
        if not may_explore:
            return [group[i] for i in ranked], False
        samples = [self._sample(c, ctx) for c in group]
        first = min(range(len(group)), key=samples.__getitem__)
        if first == ranked[0] or self._credit < 1.0:
            return [group[i] for i in ranked], False
        self._credit -= 1.0
        self.explorations += 1
        chosen = group[first]
        chosen = attrs.evolve(chosen, reason=_with(chosen.reason, "exploring: sampled first"))
        return [chosen, *(group[i] for i in ranked if i != first)], True

    def _leader_changed(self, level: str, first: Candidate) -> None:
        previous = self._leaders.get(level)
        self._leaders[level] = first.provider
        if self._emit is not None:
            self._emit(
                "learned_leader_changed",
                level=level,
                provider=first.provider,
                model=first.model,
                previous=previous,
                estimate=first.estimate,
            )

    def estimates(self, snapshots: Mapping[str, ProviderSnapshot]) -> tuple[ArmEstimate, ...]:
        """Every arm's estimate (its value for the runtime's default horizon of 30 s), by
        provider and model, for status."""
        ctx = _Context(snapshots, math.log(30_000.0))
        out = []
        for provider, model in sorted(self._arms):
            probe = Candidate(provider, model, (), 0.0, _PROBE_FIT, 0.0)
            out.append(self._estimate(probe, ctx))
        return tuple(out)


@attrs.frozen
class _Context:
    snapshots: Mapping[str, ProviderSnapshot]
    log_horizon: float


def _with(reason: str, note: str) -> str:
    return f"{note}; {reason}" if reason else note
