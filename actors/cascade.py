"""The cascade supervisor: walks the levels for each request until something answers.

Each level runs inside its own cancel scope with an absolute deadline (the level's `timeout_s`
from when it starts, never past the request's overall deadline). Within a level the router's
candidates are tried one after another (`sequential`) or all at once (`race`: first success
wins, the others are cancelled). Calls run in tasks the level owns, so when a level's deadline
passes every call in it is cancelled and none outlives it. A request ends in exactly one
`Reply` or one typed error: `RequestRejected` (the request itself is wrong, no fallback) or
`AllLevelsFailed` (with every attempt).

A level with a brownout policy (`actors.brownout`) changes the walk when its every provider
is far slower than its baseline: `demote` walks it after the next level (but for one probe
request in `brownout_probe_s`, run first and hedged into the next level); `hedge` starts the
next level beside a call that outlasts the threshold, within a budget. A hedge runs both
levels in one nursery: the first answer cancels the other level's calls.

`complete` and `stream` share one walk (`_Walk`): the plan, the levels and their deadlines,
the recovery waits and the Retry-After re-walk, attempt recording, stats and how a request
ends. The walk is a plain iterator of steps driven by its caller, so the stream, an async
generator that must not yield inside a cancel scope, drives it as well as `complete` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Collection, Iterator, Sequence
from typing import NamedTuple, NoReturn

import attrs
import trio

from actors.adapters.lastresort import ResponseCache
from actors.brownout import BrownoutWatch
from actors.config import LAST_RESORT_KINDS, Config, LevelConfig
from actors.detect import DegradationWatch
from actors.directory import ProviderDirectory, RoutePlanner
from actors.errors import (
    AllLevelsFailed,
    FailureKind,
    ProviderError,
    RequestRejected,
    RuntimeClosed,
    StreamInterrupted,
)
from actors.learned import Learner
from actors.messages import (
    Attempt,
    Completion,
    Reply,
    ReplyDone,
    Request,
    StreamDone,
    TextDelta,
    ToolCallDelta,
)
from actors.ranking import Candidate, ExclusionCause, LevelPlan
from actors.stats import FallbackStats, PerformanceHistory, RequestEnded
from actors.tracing import RequestTrace, Tracing
from runtime.kernel.events import EventBus


class _Prices:
    """USD per token per model, computed once from the config."""

    def __init__(self, config: Config) -> None:
        self._prices: dict[str, tuple[float, float]] = {}
        for model, info in config.models.items():
            self._prices[model] = (info.input_usd_per_mtok / 1e6, info.output_usd_per_mtok / 1e6)

    def cost(self, completion: Completion) -> float:
        prices = self._prices.get(completion.model)
        if prices is None:
            return 0.0
        usage = completion.usage
        return usage.input_tokens * prices[0] + usage.output_tokens * prices[1]


#: How many times one request goes back to the first level after waiting for a provider.
MAX_RECOVERY_ROUNDS = 3
#: How many providers a request asks, one at a time, after its walk, before it fails.
MAX_LAST_TRIES = 3


class _Call:
    """One call to one model of one provider: what its `Attempt` is made of, and its span."""

    __slots__ = ("level", "model", "provider", "span", "started")

    def __init__(self, walk: _Walk, provider: str, model: str, level: LevelConfig) -> None:
        self.provider = provider
        self.model = model
        self.level = level
        self.started = trio.current_time()
        self.span = walk.trace.attempt(provider, model, level.name)


class _Level(NamedTuple):
    """One level to try: its place, config, candidates, and when it started and must end."""

    position: int
    level: LevelConfig
    candidates: Sequence[Candidate]
    started: float
    deadline: float


#: Why a provider may be held out of a plan for its health rather than for the request.
_HEALTH_CAUSES = frozenset(
    {
        ExclusionCause.UNAVAILABLE,
        ExclusionCause.FORCED_OPEN,
        ExclusionCause.BREAKER_OPEN,
        ExclusionCause.RATE_LIMITED,
    }
)

#: Failures that say nothing of the provider's health: the request was wrong for it, or the
#: call never reached it (breaker open, actor restarting or crashed). The change detectors do
#: not count them.
_NOT_HEALTH = frozenset(
    {
        FailureKind.CLIENT_ERROR,
        FailureKind.CONTEXT_TOO_LONG,
        FailureKind.UNSUPPORTED,
        FailureKind.UNAVAILABLE,
        FailureKind.CRASHED,
        FailureKind.NO_MATCH,
    }
)

#: Why a provider may be held out for what the request asks (a capability, a pinned model): a
#: level holding only such providers is no fallback from, since the request could never use it.
_REQUEST_CAUSES = frozenset({ExclusionCause.UNSUPPORTED, ExclusionCause.NOT_OFFERED})

#: Attempt outcomes that do not keep a provider out of a re-walk: it answered, lost a race, or
#: asked us to wait (which is what the re-walk waited for).
_NOT_FAILED = frozenset({"ok", "cancelled", FailureKind.RATE_LIMITED.value, "unavailable"})


class _Walk:
    """One request's way through the levels, whichever way its reply is delivered.

    `steps()` yields each level to try (`_Level`), or a time to sleep until (a float) before
    walking again from the first level with a fresh plan; the caller tries the level, and ends
    the request with `reply` or `failed`. Every attempt is recorded here."""

    __slots__ = (
        "attempts",
        "cascade",
        "deadline",
        "first_choice_held_out",
        "first_level",
        "hedged",
        "order",
        "plan",
        "probes",
        "rank_order",
        "request",
        "reserve_cap",
        "reserves",
        "rounds",
        "start",
        "trace",
        "waited",
    )

    def __init__(
        self, cascade: CascadeSupervisor, request: Request, *, stream: bool = False
    ) -> None:
        self.cascade = cascade
        self.request = request
        self.start = start = trio.current_time()
        limit = request.deadline_s
        if limit is None:
            limit = cascade.deadline_s
        self.deadline = start + limit
        #: The last resort's time is kept back from the levels before it, up to half the deadline.
        self.reserve_cap = limit / 2
        self.attempts: list[Attempt] = []
        self.plan = plan = cascade.planner.plan(request, explore=True)
        levels = plan.levels
        #: Recovery rounds walked, and the time this request spent waiting for them.
        self.rounds = 0
        self.waited = 0.0
        #: The levels' indexes in the order they are walked (see `_walk_order`).
        order = (
            _walk_order(levels, request.models, cascade.last_resort_levels)
            if request.models
            else cascade.configured_order
        )
        #: Per level, the time kept back for the last resort after it: its levels that this
        #: request may use (`Request.levels`), so a policy without it gives the levels it all.
        self.reserves = cascade.reserves_s
        if request.levels:
            allowed = request.levels
            order = tuple(i for i in order if cascade.levels[i].name in allowed)
            self.reserves = _reserves(cascade.levels, cascade.last_resort_levels, allowed)
        #: The first level this request can use at all (one not emptied by its needs or pins).
        self.first_level = first_level = _first_usable(levels, order)
        #: Whether that level's plan left out a provider for its health: only then can a
        #: first try at it be other than the request's first choice.
        first = levels[first_level].exclusions if levels else ()
        self.first_choice_held_out = bool(first) and any(
            exclusion.cause in _HEALTH_CAUSES for exclusion in first
        )
        #: The order before browned-out levels are demoted: what makes a reply a fallback.
        self.rank_order = order
        #: Demoted levels this request tries first anyway, hedged (`brownout_probe_s`).
        self.probes: set[int] = set()
        #: Levels a hedge already walked in this pass: not walked again.
        self.hedged: set[int] = set()
        self.order = self._demote_browned_out(order) if cascade.brownout is not None else order
        #: The request's spans (last: nothing after it can fail and leave its span open).
        self.trace: RequestTrace = cascade.tracing.request(request, stream=stream)

    def steps(self) -> Iterator[_Level | float]:
        """The levels still reachable, each with its deadline counted from when it starts and,
        before the last resort, ending early enough to leave the last resort its time; and the
        recovery waits (see `_recovery_time`)."""
        cascade = self.cascade
        levels, last_resort = cascade.levels, cascade.last_resort_levels
        deadline, reserves, cap = self.deadline, self.reserves, self.reserve_cap
        while True:
            for index in self.order:
                now = trio.current_time()
                end = deadline - min(reserves[index], cap)
                if now >= end:  # too late for it; past the deadline, for every level
                    continue
                if index in last_resort:
                    back = self._recovery_time()
                    if back is not None:
                        yield back
                        self._walk_again()
                        break
                if index in self.hedged:
                    continue
                candidates = self.plan.levels[index].candidates
                if self.rounds:
                    # A re-walk: what already failed this request is not asked again.
                    failed = self._failed_providers()
                    candidates = tuple(c for c in candidates if c.provider not in failed)
                if candidates:
                    level = levels[index]
                    yield _Level(index, level, candidates, now, min(now + level.timeout_s, end))
            else:
                back = self._recovery_time()
                if back is None:
                    break
                yield back
                self._walk_again()
        yield from self._last_tries()

    def _walk_again(self) -> None:
        """After a recovery wait: from the first level, with a fresh plan."""
        self.hedged.clear()
        self.plan = self.cascade.planner.plan(self.request, explore=True)

    def _demote_browned_out(self, order: tuple[int, ...]) -> tuple[int, ...]:
        """`order` with each browned-out level (`LevelPlan.brownout`, policy demote) moved
        behind the next level it could hedge into, except for the one request in
        `brownout_probe_s` that tries it first, hedged (`probes`)."""
        watch = self.cascade.brownout
        if watch is None:
            return order
        walked = list(order)
        levels = self.plan.levels
        for index in order:
            browned = levels[index].brownout
            if browned is None:
                continue
            into = self._next_level(index, walked)
            if into is None:
                continue
            if watch.probe_due(self.cascade.levels[index]):
                self.probes.add(index)
                continue
            walked.remove(index)
            walked.insert(walked.index(into) + 1, index)
            self.cascade.events.emit(
                "level_demoted",
                level=self.cascade.levels[index].name,
                behind=self.cascade.levels[into].name,
                provider=browned.provider,
                task_id=self.request.task_id,
            )
        return tuple(walked)

    def _next_level(self, index: int, order: Sequence[int]) -> int | None:
        """The level after `index` in `order` that a brownout moves to: not the last resort,
        with candidates for this request, not already walked by a hedge."""
        last_resort = self.cascade.last_resort_levels
        for later in order[order.index(index) + 1 :]:
            if later in last_resort:
                return None
            if self.plan.levels[later].candidates and later not in self.hedged:
                return later
        return None

    def hedge_into(self, step: _Level) -> tuple[_Level, float] | None:
        """The level to hedge `step` into, and after how long, when its brownout policy asks
        for one: hedge, or a demoted level's probe."""
        level, watch = step.level, self.cascade.brownout
        probe = step.position in self.probes
        if watch is None or not (level.brownout == "hedge" or probe):
            return None
        if level.brownout == "hedge":
            budget = watch.budget(level.name)
            if budget is not None:
                budget.deposit()
        patience = watch.threshold_s(step.candidates[0].provider)
        into = self._next_level(step.position, self.order)
        if patience is None or into is None:
            return None
        now = trio.current_time()
        end = self.deadline - min(self.reserves[into], self.reserve_cap)
        later = self.cascade.levels[into]
        deadline = min(now + patience + later.timeout_s, end, step.deadline)
        candidates = self.plan.levels[into].candidates
        return _Level(into, later, candidates, now, deadline), patience

    def _failed_providers(self) -> set[str]:
        return {a.provider for a in self.attempts if a.outcome not in _NOT_FAILED}

    def _recovery_time(self) -> float | None:
        """Before settling for the last resort (or failing), wait for the first provider that
        asked us to wait (Retry-After) when that is soon: while the first level can still run
        and within the request's recovery budget. Returns when to walk again from the first
        level, or None to go on without waiting. Open breakers are not waited for: their
        half-open time is a guess, and during a real outage the wait would only delay the last
        resort."""
        back = self.plan.earliest_available
        now = trio.current_time()
        if back is None or self.rounds >= MAX_RECOVERY_ROUNDS:
            return None
        if back >= self.deadline - min(self.reserves[0], self.reserve_cap):
            return None
        wait = max(0.0, back - now)
        if self.waited + wait > self.cascade.recovery_wait_s:
            return None
        self.rounds += 1
        self.waited += wait
        self.cascade.events.emit(
            "waiting_for_provider",
            wait_s=round(wait, 3),
            round=self.rounds,
            task_id=self.request.task_id,
        )
        return back

    def _last_tries(self) -> Iterator[_Level]:
        """Before giving up, up to `MAX_LAST_TRIES` more providers, one at a time: breakers guard
        providers from load, they must not turn an answerable request into a failure."""
        asked: set[str] = set()
        for _ in range(MAX_LAST_TRIES):
            level = self._last_try(asked)
            if level is None:
                return
            asked.add(level.candidates[0].provider)
            yield level

    def _last_try(self, asked: set[str]) -> _Level | None:
        """The best provider this request has not reached, from a fresh plan: one that is a
        candidate again (its breaker turned half-open while the request walked), else the
        least-bad one kept out only by its open breaker (earliest half-open, then best score).
        Either is called in panic: past an open breaker, and waiting for a half-open one to
        have room."""
        now = trio.current_time()
        if now >= self.deadline:
            return None
        # Calls a provider turned away ("unavailable": its breaker had just opened) never went
        # out; a fresh plan shows the breakers that opened or half-opened meanwhile.
        tried = asked | {a.provider for a in self.attempts if a.outcome != "unavailable"}
        plan = self.cascade.planner.plan(self.request)
        last_resort = self.cascade.last_resort_levels
        for index, level_plan in enumerate(plan.levels):
            if index in last_resort:
                continue
            for candidate in level_plan.candidates:
                if candidate.provider not in tried:
                    return self._single(index, attrs.evolve(candidate, panic=True), now)
        best: tuple[tuple[float, float, str], int, Candidate] | None = None
        for index, level_plan in enumerate(plan.levels):
            for exclusion in level_plan.exclusions:
                standby = exclusion.standby
                if standby is None or exclusion.open_until is None or standby.provider in tried:
                    continue
                key = (exclusion.open_until, -standby.score, standby.provider)
                if best is None or key < best[0]:
                    best = (key, index, standby)
        if best is None:
            return None
        _, index, standby = best
        candidate = attrs.evolve(
            standby, panic=True, reason="panic: every other candidate failed this request"
        )
        return self._single(index, candidate, now)

    def _single(self, index: int, candidate: Candidate, now: float) -> _Level:
        level = self.cascade.levels[index]
        return _Level(index, level, (candidate,), now, min(now + level.timeout_s, self.deadline))

    # -- attempts ---------------------------------------------------------------------------

    def _record(
        self,
        call: _Call,
        outcome: str,
        elapsed_ms: float,
        detail: str = "",
        *,
        model: str | None = None,
        answer: Completion | None = None,
    ) -> None:
        """The call's `Attempt` (with the `model` that answered, if another), and the end of
        its span, with the cost of its `answer` (priced only when the span records)."""
        attempt = Attempt(
            call.provider, model or call.model, call.level.name, outcome, elapsed_ms, detail
        )
        self.attempts.append(attempt)
        trace = self.trace
        if trace.recording:
            cost = self.cascade.prices.cost(answer) if answer is not None else 0.0
            trace.attempt_ended(call.span, attempt, cost)

    def _observe(self, call: _Call, elapsed_ms: float, *, ok: bool, health: bool = True) -> None:
        """The call's outcome into the performance history, and into the change detectors and
        the learner unless it says nothing of the provider's health."""
        cascade = self.cascade
        cascade.history.record(call.provider, call.started, elapsed_ms, ok=ok)
        if health:
            if cascade.watch is not None:
                cascade.watch.record(call.provider, elapsed_ms, ok=ok)
            if cascade.learner is not None:
                cascade.learner.record(call.provider, call.model, elapsed_ms, ok=ok)
        if cascade.brownout is not None and ok:
            cascade.brownout.observe(call.provider, elapsed_ms)

    def unavailable(self, candidate: Candidate, level: LevelConfig) -> None:
        call = _Call(self, candidate.provider, candidate.model, level)
        self._record(call, "unavailable", 0.0, "restarting")

    def accepted(self, call: _Call, completion: Completion) -> bool:
        """Record a call that answered. False when the answer is a refusal and the level falls
        back on refusals (`fallback_on_refusal`): then the walk goes on."""
        elapsed = (trio.current_time() - call.started) * 1000.0
        self._observe(call, elapsed, ok=True)
        if completion.refusal is not None and call.level.fallback_on_refusal:
            self._record(call, "refused", elapsed, "refused", model=completion.model)
            return False
        self._record(call, "ok", elapsed, model=completion.model, answer=completion)
        return True

    def cancelled(self, call: _Call, deadline: float) -> None:
        """A call cancelled because the level's deadline passed (a timeout) or a race was won."""
        now = trio.current_time()
        outcome = "timeout" if now >= deadline else "cancelled"
        elapsed = (now - call.started) * 1000.0
        self._record(call, outcome, elapsed)
        if outcome == "timeout":
            self._observe(call, elapsed, ok=False)
        if self.cascade.brownout is not None:
            # Ran at least this long: evidence of a brownout, never of its end.
            self.cascade.brownout.observe(call.provider, elapsed, lower_bound=True)

    def failed_attempt(self, call: _Call, error: ProviderError) -> None:
        elapsed = (trio.current_time() - call.started) * 1000.0
        self._record(call, error.kind.value, elapsed, error.message)
        self._observe(call, elapsed, ok=False, health=error.kind not in _NOT_HEALTH)

    def reject_if_client_error(self, provider: str, error: ProviderError) -> None:
        """The request itself is wrong: no other provider would take it either."""
        if error.kind is FailureKind.CLIENT_ERROR:
            self.record_error("request_rejected")
            raise RequestRejected(
                f"{provider} rejected the request: {error.message}",
                provider,
                error.status,
                self.attempts,
            ) from None

    # -- endings ----------------------------------------------------------------------------

    def reply(self, step: _Level, candidate: Candidate, completion: Completion) -> Reply:
        """The reply. It used fallback unless it is the request's first choice with every
        provider healthy: the first try at the first level it can use, from the provider that
        level would rank first if no provider were held out for its health
        (`RoutePlanner.first_choice`)."""
        fallback = self.is_fallback(step, candidate, len(self.attempts) - 1)
        reply = self.cascade.reply(
            self.request, step.level, candidate, completion, self.attempts, self.start, fallback
        )
        if self.trace.recording:
            self.trace.answered(reply)
        return reply

    def is_fallback(self, step: _Level, candidate: Candidate, earlier_attempts: int) -> bool:
        """Whether an answer from `candidate` at `step`, after `earlier_attempts` other tries,
        is a fallback (see `reply`)."""
        if earlier_attempts > 0:
            return True
        position, first_level = step.position, self.first_level
        if position != first_level:
            order = self.rank_order
            if order.index(position) > order.index(first_level):
                return True
        if self.first_choice_held_out:
            first = self.cascade.planner.first_choice(self.request, first_level)
            return candidate.provider != first
        return False

    def cancelled_request(self) -> None:
        """The request was cancelled, by its caller or by the runtime closing: counted once,
        as its own outcome."""
        self.record_error("runtime_closed" if self.cascade.closed else "cancelled")

    def record_error(self, kind: str) -> None:
        """Count the request as ended in error `kind`, and tell the request listeners."""
        stats = self.cascade.stats
        attempts = tuple(self.attempts)
        stats.record_error(attempts, kind)
        self.trace.failed(kind, len(attempts))
        if stats.listening:
            latency_ms = (trio.current_time() - self.start) * 1000.0
            stats.notify(RequestEnded(self.request, None, kind, attempts, latency_ms))

    def interrupted(
        self, provider: str, level: LevelConfig, error: ProviderError, delivered: list[str]
    ) -> StreamInterrupted:
        cascade = self.cascade
        self.record_error("stream_interrupted")
        cascade.events.emit(
            "stream_interrupted",
            provider=provider,
            level=level.name,
            delivered_chars=sum(map(len, delivered)),
            kind=error.kind.value,
        )
        return StreamInterrupted(
            f"{provider} failed mid-stream: {error.message}",
            provider,
            "".join(delivered),
            self.attempts,
        )

    def failed(self) -> AllLevelsFailed:
        attempts = self.attempts
        error = AllLevelsFailed(_summary(attempts, trio.current_time() >= self.deadline), attempts)
        self.record_error("all_levels_failed")
        self.cascade.events.emit(
            "request_failed", attempts=len(attempts), task_id=self.request.task_id
        )
        return error


class CascadeSupervisor:
    def __init__(
        self,
        config: Config,
        *,
        planner: RoutePlanner,
        providers: ProviderDirectory,
        cache: ResponseCache | None,
        stats: FallbackStats,
        history: PerformanceHistory,
        events: EventBus,
        tracing: Tracing | None = None,
        watch: DegradationWatch | None = None,
        brownout: BrownoutWatch | None = None,
        learner: Learner | None = None,
    ) -> None:
        self.config = config
        #: The brownout watch of the levels with a `brownout` policy, or None.
        self.brownout = brownout
        #: Learned selection's sampler, fed every call's outcome (`[routing] mode`), or None.
        self.learner = learner
        #: The change detectors that calls' outcomes feed (`[routing] predict`), or None.
        self.watch = watch
        self.levels: Sequence[LevelConfig] = config.levels
        self.deadline_s = config.runtime.deadline_s
        self.planner = planner
        self.providers = providers
        self.stats = stats
        self.history = history
        self.events = events
        self._cache = cache
        self.prices = _Prices(config)
        self.tracing = tracing or Tracing()
        self._last_resort = frozenset(
            p.name for p in config.providers if p.kind in LAST_RESORT_KINDS
        )
        #: Levels served only by the last resort (cache, templates).
        self.last_resort_levels = frozenset(
            index
            for index, level in enumerate(config.levels)
            if all(name in self._last_resort for name in level.providers)
        )
        #: Per level, the time kept back for the last-resort levels after it.
        self.reserves_s = _reserves(config.levels, self.last_resort_levels)
        #: The levels' indexes as configured: the walk order of a request with no `models`.
        self.configured_order = tuple(range(len(config.levels)))
        self.recovery_wait_s = config.runtime.recovery_wait_s
        self.in_flight = 0
        self.hedges = 0
        self.hedges_in_flight = 0
        self.closed = False
        #: The cancel scope of each whole-reply request's current step and of each stream, for
        #: `close` to cancel.
        self._scopes: set[trio.CancelScope] = set()
        self._drained: trio.Event | None = None

    def reprice(self, config: Config) -> None:
        """Price replies from now on at `config`'s model prices (repriced while running)."""
        self.config = config
        self.prices = _Prices(config)

    async def close(self, grace_s: float) -> None:
        """Refuse new requests, give those in flight `grace_s` to finish, then cancel them:
        each ends in `RuntimeClosed`. Shield the call when closing from a cancelled scope."""
        self.closed = True
        if self.in_flight:
            self._drained = trio.Event()
            with trio.move_on_after(grace_s):
                await self._drained.wait()
        for scope in self._scopes:
            scope.cancel()

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeClosed("the runtime has closed: open a new one to send requests")

    def _request_ended(self) -> None:
        self.in_flight -= 1
        if self._drained is not None and not self.in_flight:
            self._drained.set()

    # -- complete ---------------------------------------------------------------------------

    async def complete(self, request: Request) -> Reply:
        """Walk the levels for `request`. Each step runs in a cancel scope with its deadline,
        which `close` cancels too; a level is hedged into the next one when its brownout policy
        asks for it. (One coroutine, not two: every frame of it is resumed at each checkpoint
        of the provider call.)"""
        self._check_open()
        walk = _Walk(self, request)
        self.in_flight += 1
        scopes = self._scopes
        try:
            for step in walk.steps():
                deadline = step.deadline if isinstance(step, _Level) else step
                scope = trio.CancelScope(deadline=deadline)
                scopes.add(scope)
                try:
                    with scope:
                        if not isinstance(step, _Level):
                            await trio.sleep_forever()  # until the Retry-After ends
                        hedge = walk.hedge_into(step) if self.brownout is not None else None
                        if hedge is not None:
                            hedged = await self._hedge_levels(walk, step, *hedge)
                            if hedged is not None:
                                return walk.reply(*hedged)
                        else:
                            won = await self._try_level(walk, step)
                            if won is not None:
                                return walk.reply(step, *won)
                finally:
                    scopes.discard(scope)
                if self.closed and scope.cancelled_caught:
                    walk.cancelled_request()
                    raise RuntimeClosed("the runtime closed while the request was in flight")
            raise walk.failed()
        except BaseException as error:
            if _is_cancellation(error):
                walk.cancelled_request()
            walk.trace.end(error)
            raise
        finally:
            self._request_ended()

    async def _hedge_levels(
        self, walk: _Walk, step: _Level, into: _Level, patience: float
    ) -> tuple[_Level, Candidate, Completion] | None:
        """Dean & Barroso's hedge across levels: `into` starts beside `step` once `step` has
        run `patience` without answering (within the level's budget unless this request is a
        demoted level's probe); the first answer wins and the other level's calls are cancelled
        (recorded as cancelled). A level that failed before then is left to the walk."""
        winner: list[tuple[_Level, Candidate, Completion]] = []

        async def run(level: _Level, done: trio.Event, scope: trio.CancelScope) -> None:
            try:
                with trio.move_on_at(level.deadline):
                    won = await self._try_level(walk, level)
                if won is not None and not winner:
                    winner.append((level, *won))
                    scope.cancel()
            finally:
                done.set()

        try:
            async with trio.open_nursery() as nursery:
                done = trio.Event()
                nursery.start_soon(run, step, done, nursery.cancel_scope)
                with trio.move_on_after(patience):
                    await done.wait()
                if not done.is_set() and self._may_hedge(walk, step):
                    walk.hedged.add(into.position)
                    self.events.emit(
                        "level_hedged",
                        level=step.level.name,
                        into=into.level.name,
                        slow=step.candidates[0].provider,
                        after_s=round(patience, 3),
                        probe=step.position in walk.probes,
                        task_id=walk.request.task_id,
                    )
                    nursery.start_soon(run, into, trio.Event(), nursery.cancel_scope)
        except BaseExceptionGroup as group:
            _raise_rejected(group)
        return winner[0] if winner else None

    def _may_hedge(self, walk: _Walk, step: _Level) -> bool:
        """A demoted level's probe always hedges; the hedge policy within its budget."""
        if step.position in walk.probes:
            return True
        budget = self.brownout.budget(step.level.name) if self.brownout else None
        return budget is not None and budget.withdraw()

    async def _try_level(self, walk: _Walk, step: _Level) -> tuple[Candidate, Completion] | None:
        """The level's candidates raced, hedged, or (one, or by default) one after another."""
        level, candidates, deadline = step.level, step.candidates, step.deadline
        if len(candidates) > 1 and _side_by_side(walk.request, level):
            if (walk.request.strategy or level.strategy) == "race":
                return await self._race(walk, level, candidates, deadline)
            return await self._hedge(walk, level, candidates, deadline)
        for candidate in candidates:
            completion = await self._attempt(walk, level, candidate, deadline)
            if completion is not None:
                return candidate, completion
        return None

    async def _race(
        self, walk: _Walk, level: LevelConfig, candidates: Sequence[Candidate], deadline: float
    ) -> tuple[Candidate, Completion] | None:
        winner: list[tuple[Candidate, Completion]] = []

        async def run(candidate: Candidate, scope: trio.CancelScope) -> None:
            completion = await self._attempt(walk, level, candidate, deadline)
            if completion is not None and not winner:
                winner.append((candidate, completion))
                scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                for candidate in candidates:
                    nursery.start_soon(run, candidate, nursery.cancel_scope)
        except BaseExceptionGroup as group:
            _raise_rejected(group)
        return winner[0] if winner else None

    async def _hedge(
        self, walk: _Walk, level: LevelConfig, candidates: Sequence[Candidate], deadline: float
    ) -> tuple[Candidate, Completion] | None:
        """Start the next candidate when the current one fails, or when it has taken longer than
        its provider's p95 latency (at least `hedge_after_s`) and the hedge budget allows; the
        first success wins and the rest are cancelled. The budget (Envoy's retry budget: hedges
        in flight at most 20 % of requests in flight, at least 3) keeps an outage from doubling
        the load on whoever is left."""
        winner: list[tuple[Candidate, Completion]] = []

        async def run(candidate: Candidate, done: trio.Event, scope: trio.CancelScope) -> None:
            try:
                completion = await self._attempt(walk, level, candidate, deadline)
                if completion is not None and not winner:
                    winner.append((candidate, completion))
                    scope.cancel()
            finally:
                done.set()

        try:
            async with trio.open_nursery() as nursery:
                last = len(candidates) - 1
                for index, candidate in enumerate(candidates):
                    done = trio.Event()
                    nursery.start_soon(run, candidate, done, nursery.cancel_scope)
                    if index == last:
                        break
                    actor = self.providers.live(candidate.provider)
                    patience = max(level.hedge_after_s, actor.latency_p95_s if actor else 0.0)
                    with trio.move_on_after(patience):
                        await done.wait()
                    if winner:
                        break
                    if not done.is_set():
                        # The candidate is slow: hedge only within budget, else wait it out.
                        if self.hedges_in_flight >= max(3, self.in_flight // 5):
                            await done.wait()
                            if winner:
                                break
                            continue
                        self.hedges += 1
                        self.events.emit(
                            "request_hedged",
                            level=level.name,
                            slow=candidate.provider,
                            next=candidates[index + 1].provider,
                            after_s=round(patience, 3),
                        )
                        self.hedges_in_flight += 1
                        nursery.start_soon(self._release_hedge, done)
        except BaseExceptionGroup as group:
            _raise_rejected(group)
        return winner[0] if winner else None

    async def _release_hedge(self, slow_call_done: trio.Event) -> None:
        """A hedge counts as in flight for as long as the slow call it hedges does."""
        try:
            await slow_call_done.wait()
        finally:
            self.hedges_in_flight -= 1

    async def _attempt(
        self, walk: _Walk, level: LevelConfig, candidate: Candidate, deadline: float
    ) -> Completion | None:
        """Try one candidate (and its larger-context models); record every try. It runs
        within its level's cancel scope, whose deadline is `deadline`: a call that must end
        then needs no scope of its own (`ProviderActor.complete`'s `scoped`)."""
        name = candidate.provider
        level_deadline, deadline = deadline, _attempt_deadline(level, deadline)
        actor = self.providers.live(name)
        if actor is None:
            walk.unavailable(candidate, level)
            return None
        for model in (candidate.model, *candidate.fallback_models):
            call = _Call(walk, name, model, level)
            try:
                with walk.trace.active(call.span):
                    completion = await actor.complete(
                        walk.request,
                        model,
                        deadline=deadline,
                        panic=candidate.panic,
                        scoped=deadline == level_deadline,
                    )
            except trio.Cancelled:
                walk.cancelled(call, deadline)
                raise
            except ProviderError as error:
                walk.failed_attempt(call, error)
                if error.kind is FailureKind.CONTEXT_TOO_LONG:
                    continue
                walk.reject_if_client_error(name, error)
                return None
            except BaseException as error:  # a bug: no attempt to record, but the span ends
                walk.trace.attempt_broke(call.span, error)
                raise
            return completion if walk.accepted(call, completion) else None
        return None

    def reply(
        self,
        request: Request,
        level: LevelConfig,
        candidate: Candidate,
        completion: Completion,
        attempts: list[Attempt],
        start: float,
        fallback: bool,
    ) -> Reply:
        """The reply to `request`, recorded in stats and, when it is a real answer from a real
        provider, in the last-resort cache: never an empty text, a refusal or a filtered one."""
        reply = Reply(
            text=completion.text,
            provider=candidate.provider,
            model=completion.model,
            level=level.name,
            fallback_used=fallback,
            attempts=tuple(attempts),
            latency_ms=(trio.current_time() - start) * 1000.0,
            cost_usd=self.prices.cost(completion),
            usage=completion.usage,
            finish_reason=completion.finish_reason,
            refusal=completion.refusal,
            tool_calls=completion.tool_calls,
            raw_finish_reason=completion.raw_finish_reason,
        )
        stats = self.stats
        stats.record_reply(reply)
        if stats.listening:
            ended = RequestEnded(request, reply, "reply", reply.attempts, reply.latency_ms)
            stats.notify(ended)
        if fallback:
            self.events.emit(
                "fallback_used",
                provider=candidate.provider,
                level=level.name,
                failed_attempts=len(attempts) - 1,
            )
        if (
            self._cache is not None
            and candidate.provider not in self._last_resort
            and completion.text
            and not completion.tool_calls
            and completion.refusal is None
            and completion.finish_reason != "content_filter"
        ):
            self._cache.put(request, completion.text, completion.model)
        return reply

    # -- stream -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def open_stream(self, request: Request) -> AsyncIterator[ReplyStream]:
        """The stream handle, inside a cancel scope that `close` cancels: then the stream ends
        in `RuntimeClosed`."""
        self._check_open()
        stream = ReplyStream(self, request)
        scope = trio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                yield stream
        finally:
            self._scopes.discard(scope)
            await stream.aclose()
        if scope.cancelled_caught:
            raise RuntimeClosed("the runtime closed while the stream was in flight")

    async def stream_events(
        self, request: Request, out: ReplyStream
    ) -> AsyncGenerator[TextDelta | ToolCallDelta, None]:
        """Text and tool-call deltas from the first candidate that starts streaming, with
        `out.reply` set once the stream has ended; fallback before the first delta,
        `StreamInterrupted` after it. The walk is `complete`'s; within a level candidates are always tried one after
        another, because two streams racing would hand the caller text from both. Deadlines
        are passed down rather than wrapped in cancel scopes, because a generator must not
        yield inside a cancel scope."""
        walk = _Walk(self, request, stream=True)
        self.in_flight += 1
        try:
            for step in walk.steps():
                if not isinstance(step, _Level):
                    await trio.sleep_until(step)
                    continue
                for candidate in step.candidates:
                    if trio.current_time() >= step.deadline:
                        break
                    deltas = self._stream_candidate(walk, step, candidate, out)
                    async with contextlib.aclosing(deltas):
                        async for delta in deltas:
                            yield delta
                    if out.reply is not None:
                        return
            raise walk.failed()
        except BaseException as error:
            if isinstance(error, GeneratorExit) or _is_cancellation(error):
                walk.cancelled_request()
            walk.trace.end(error)
            raise
        finally:
            self._request_ended()

    async def _stream_candidate(
        self, walk: _Walk, step: _Level, candidate: Candidate, out: ReplyStream
    ) -> AsyncGenerator[TextDelta | ToolCallDelta, None]:
        """One candidate's stream, trying its larger-context models as `complete` does; sets
        `out.reply` when it answered."""
        level, name = step.level, candidate.provider
        actor = self.providers.live(name)
        if actor is None:
            walk.unavailable(candidate, level)
            return
        deadline = _attempt_deadline(level, step.deadline)
        first_chunk = (
            step.started + level.first_chunk_timeout_s
            if level.first_chunk_timeout_s is not None
            else None
        )
        for model in (candidate.model, *candidate.fallback_models):
            delivered: list[str] = []
            any_delivered = False
            call = _Call(walk, name, model, level)
            try:
                async with actor.open_stream(
                    walk.request,
                    model,
                    deadline=deadline,
                    first_chunk_deadline=first_chunk,
                    panic=candidate.panic,
                ) as events:
                    async for event in events:
                        if isinstance(event, TextDelta | ToolCallDelta) and not any_delivered:
                            if isinstance(event, TextDelta) and not event.text:
                                continue
                            out.answering = Answering(
                                name,
                                model,
                                level.name,
                                walk.is_fallback(step, candidate, len(walk.attempts)),
                                len(walk.attempts) + 1,
                            )
                        if isinstance(event, TextDelta):
                            if event.text:
                                delivered.append(event.text)
                                any_delivered = True
                                yield event
                        elif isinstance(event, ToolCallDelta):
                            any_delivered = True
                            yield event
                        elif isinstance(event, StreamDone):
                            completion = event.completion
                            if walk.accepted(call, completion) or any_delivered:
                                out.reply = walk.reply(step, candidate, completion)
                            return
            except ProviderError as error:
                walk.failed_attempt(call, error)
                if any_delivered:
                    raise walk.interrupted(name, level, error, delivered) from None
                walk.reject_if_client_error(name, error)
                if error.kind is not FailureKind.CONTEXT_TOO_LONG:
                    return
            except BaseException as error:  # cancelled, or its reader left: no attempt recorded
                walk.trace.attempt_broke(call.span, error)
                raise
            walk.trace.attempt_broke(call.span)  # the stream ended without a reply


@attrs.frozen
class Answering:
    """The provider a stream's deltas come from, known at its first delta."""

    provider: str
    model: str
    level: str
    #: Whether the reply will count as a fallback (see `_Walk.reply`).
    fallback_used: bool
    #: Attempts so far, this one included.
    attempts: int


class ReplyStream:
    """What `rt.stream()` yields: an async iterator of text (tool-call deltas skipped);
    `events()` for every typed event; `reply` once it has ended."""

    def __init__(self, cascade: CascadeSupervisor, request: Request) -> None:
        self.reply: Reply | None = None
        #: Who is answering, from the first delta on (None before it): what a server must say
        #: in its response headers before the reply is whole.
        self.answering: Answering | None = None
        self._deltas = cascade.stream_events(request, self)

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> str:
        while True:
            delta = await self._deltas.__anext__()
            if isinstance(delta, TextDelta):
                return delta.text

    def events(self) -> StreamEvents:
        """`TextDelta`s and `ToolCallDelta`s as they arrive, then one `ReplyDone` with the
        whole message, usage and cost. Iterate either this or the stream itself, not both."""
        return StreamEvents(self)

    async def aclose(self) -> None:
        await self._deltas.aclose()


class StreamEvents:
    """The typed events of a `ReplyStream` (see `ReplyStream.events`)."""

    def __init__(self, stream: ReplyStream) -> None:
        self._stream = stream
        self._done = False

    def __aiter__(self) -> StreamEvents:
        return self

    async def __anext__(self) -> TextDelta | ToolCallDelta | ReplyDone:
        if self._done:
            raise StopAsyncIteration
        try:
            return await self._stream._deltas.__anext__()
        except StopAsyncIteration:
            self._done = True
            if self._stream.reply is None:
                raise
            return ReplyDone(self._stream.reply)


def _attempt_deadline(level: LevelConfig, deadline: float) -> float:
    """When one candidate's try must end: the level's deadline, or sooner by the level's
    `attempt_timeout_s`."""
    if level.attempt_timeout_s is None:
        return deadline
    return min(deadline, trio.current_time() + level.attempt_timeout_s)


def _side_by_side(request: Request, level: LevelConfig) -> bool:
    """Whether `level` tries its candidates for `request` side by side (race or hedge) rather
    than one after another: the request's strategy if it has one (a tenant's), else the
    level's."""
    return (request.strategy or level.strategy) in ("race", "hedge")


def _raise_rejected(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Calls run side by side fail as a group; a rejection reaches the caller as itself."""
    rejected, rest = group.split(RequestRejected)
    if rejected is not None and rest is None:
        raise rejected.exceptions[0] from None
    raise group


def _reserves(
    levels: Sequence[LevelConfig], last_resort: Collection[int], allowed: Collection[str] = ()
) -> tuple[float, ...]:
    """Per level, the time kept back for the last-resort levels after it (those in `allowed`
    when it names any)."""
    return tuple(
        sum(
            later.timeout_s
            for position, later in enumerate(levels)
            if position > index
            and position in last_resort
            and (not allowed or later.name in allowed)
        )
        for index in range(len(levels))
    )


def _first_usable(levels: Sequence[LevelPlan], order: Sequence[int]) -> int:
    """The first level in walk `order` not emptied by what the request asks (the first of
    `order` when every one is)."""
    for index in order:
        level = levels[index]
        if level.candidates or any(e.cause not in _REQUEST_CAUSES for e in level.exclusions):
            return index
    return order[0] if order else 0


def _walk_order(
    levels: Sequence[LevelPlan], models: Sequence[str], last_resort: Collection[int]
) -> tuple[int, ...]:
    """The order to walk the levels in: as configured, except that for a `models=[...]`
    request (an ordered preference list, as OpenRouter's `models`) the levels before the last
    resort go by the best-placed model each offers, so the first listed model is tried first
    wherever it is served; ties, and the last resort, keep the configured order."""
    order = range(len(levels))
    if not models:
        return tuple(order)
    rank = {model: position for position, model in enumerate(models)}

    def key(index: int) -> tuple[int, int, int]:
        if index in last_resort:
            return (1, 0, index)
        offered = (rank.get(c.model, len(rank)) for c in levels[index].candidates)
        return (0, min(offered, default=len(rank)), index)

    return tuple(sorted(order, key=key))


def _is_cancellation(error: BaseException) -> bool:
    if isinstance(error, trio.Cancelled):
        return True
    if isinstance(error, BaseExceptionGroup):
        return error.split(trio.Cancelled)[1] is None
    return False


def _summary(attempts: Sequence[Attempt], deadline_passed: bool) -> str:
    if not attempts:
        return "no provider could be asked" + (" before the deadline" if deadline_passed else "")
    tried = ", ".join(f"{a.provider}:{a.outcome}" for a in attempts[-8:])
    more = f" (+{len(attempts) - 8} earlier)" if len(attempts) > 8 else ""
    why = "deadline passed" if deadline_passed else "every level failed"
    return f"{why} after {len(attempts)} attempt(s): {tried}{more}"
