"""The cascade supervisor: walks the levels for each request until something answers.

Each level runs inside its own cancel scope with an absolute deadline (the level's `timeout_s`
from when it starts, never past the request's overall deadline). Within a level the router's
candidates are tried one after another (`sequential`) or all at once (`race`: first success
wins, the others are cancelled). Calls run in tasks the level owns, so when a level's deadline
passes every call in it is cancelled and none outlives it. A request ends in exactly one
`Reply` or one typed error: `RequestRejected` (the request itself is wrong, no fallback) or
`AllLevelsFailed` (with every attempt).

`complete` and `stream` share one walk (`_Walk`): the plan, the levels and their deadlines,
the recovery waits and the Retry-After re-walk, attempt recording, stats and how a request
ends. The walk is a plain iterator of steps driven by its caller, so the stream, an async
generator that must not yield inside a cancel scope, drives it as well as `complete` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import NamedTuple

import trio

from actors.adapters.lastresort import ResponseCache
from actors.config import LAST_RESORT_KINDS, Config, LevelConfig
from actors.directory import ProviderDirectory, RoutePlanner
from actors.errors import (
    AllLevelsFailed,
    FailureKind,
    ProviderError,
    RequestRejected,
    StreamInterrupted,
)
from actors.messages import Attempt, Completion, Reply, Request, StreamDone, TextDelta
from actors.ranking import Candidate
from actors.stats import FallbackStats, PerformanceHistory
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


class _Recovery:
    """What one request has spent waiting for excluded providers to come back."""

    __slots__ = ("budget_s", "rounds", "waited")

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.waited = 0.0
        self.rounds = 0


class _Level(NamedTuple):
    """One level to try: its place, config, candidates, and when it started and must end."""

    position: int
    level: LevelConfig
    candidates: Sequence[Candidate]
    started: float
    deadline: float


class _Walk:
    """One request's way through the levels, whichever way its reply is delivered.

    `steps()` yields each level to try (`_Level`), or a time to sleep until (a float) before
    walking again from the first level with a fresh plan; the caller tries the level, and ends
    the request with `reply` or `failed`. Every attempt is recorded here."""

    __slots__ = ("attempts", "cascade", "deadline", "plan", "recovery", "request", "start")

    def __init__(self, cascade: CascadeSupervisor, request: Request) -> None:
        self.cascade = cascade
        self.request = request
        self.start = trio.current_time()
        limit = request.deadline_s if request.deadline_s is not None else cascade.deadline_s
        self.deadline = self.start + limit
        self.attempts: list[Attempt] = []
        self.plan = cascade.planner.plan(request, explore=True)
        self.recovery = _Recovery(cascade.recovery_wait_s)

    def steps(self) -> Iterator[_Level | float]:
        cascade = self.cascade
        while True:
            for index, level, now, level_deadline in self._levels():
                if index in cascade.last_resort_levels:
                    back = self._recovery_time()
                    if back is not None:
                        yield back
                        self.plan = cascade.planner.plan(self.request, explore=True)
                        break
                candidates = self.plan.levels[index].candidates
                if candidates:
                    yield _Level(index, level, candidates, now, level_deadline)
            else:
                back = self._recovery_time()
                if back is None:
                    return
                yield back
                self.plan = cascade.planner.plan(self.request, explore=True)

    def _levels(self) -> Iterator[tuple[int, LevelConfig, float, float]]:
        """The levels still reachable before the deadline: (index, level, now, level deadline),
        each level's deadline counted from when it starts."""
        deadline = self.deadline
        for index, level in enumerate(self.cascade.levels):
            now = trio.current_time()
            if now >= deadline:
                return
            yield index, level, now, min(now + level.timeout_s, deadline)

    def _recovery_time(self) -> float | None:
        """Before settling for the last resort (or failing), wait for the first provider that
        asked us to wait (Retry-After) when that is soon: within the request's deadline and its
        recovery budget. Returns when to walk again from the first level, or None to go on
        without waiting. Open breakers are not waited for: their half-open time is a guess, and
        during a real outage the wait would only delay the last resort."""
        back = self.plan.earliest_available
        recovery = self.recovery
        now = trio.current_time()
        if back is None or back >= self.deadline or recovery.rounds >= MAX_RECOVERY_ROUNDS:
            return None
        wait = max(0.0, back - now)
        if recovery.waited + wait > recovery.budget_s:
            return None
        recovery.rounds += 1
        recovery.waited += wait
        self.cascade.events.emit(
            "waiting_for_provider",
            wait_s=round(wait, 3),
            round=recovery.rounds,
            task_id=self.request.task_id,
        )
        return back

    # -- attempts ---------------------------------------------------------------------------

    def unavailable(self, candidate: Candidate, level: LevelConfig) -> None:
        self.attempts.append(
            Attempt(
                candidate.provider, candidate.model, level.name, "unavailable", 0.0, "restarting"
            )
        )

    def succeeded(self, provider: str, model: str, level: LevelConfig, started: float) -> None:
        elapsed = (trio.current_time() - started) * 1000.0
        self.attempts.append(Attempt(provider, model, level.name, "ok", elapsed))
        self.cascade.history.record(provider, started, elapsed, ok=True)

    def cancelled(
        self, provider: str, model: str, level: LevelConfig, started: float, deadline: float
    ) -> None:
        """A call cancelled because the level's deadline passed (a timeout) or a race was won."""
        now = trio.current_time()
        outcome = "timeout" if now >= deadline else "cancelled"
        elapsed = (now - started) * 1000.0
        self.attempts.append(Attempt(provider, model, level.name, outcome, elapsed))
        if outcome == "timeout":
            self.cascade.history.record(provider, started, elapsed, ok=False)

    def failed_attempt(
        self, provider: str, model: str, level: LevelConfig, error: ProviderError, started: float
    ) -> None:
        elapsed = (trio.current_time() - started) * 1000.0
        self.attempts.append(
            Attempt(provider, model, level.name, error.kind.value, elapsed, error.message)
        )
        self.cascade.history.record(provider, started, elapsed, ok=False)

    def reject_if_client_error(self, provider: str, error: ProviderError) -> None:
        """The request itself is wrong: no other provider would take it either."""
        if error.kind is FailureKind.CLIENT_ERROR:
            self.cascade.stats.record_error(tuple(self.attempts), "request_rejected")
            raise RequestRejected(
                f"{provider} rejected the request: {error.message}",
                provider,
                error.status,
                self.attempts,
            ) from None

    # -- endings ----------------------------------------------------------------------------

    def reply(self, step: _Level, candidate: Candidate, completion: Completion) -> Reply:
        return self.cascade.reply(
            self.request,
            step.level,
            step.position,
            candidate,
            completion,
            self.attempts,
            self.start,
        )

    def interrupted(
        self, provider: str, level: LevelConfig, error: ProviderError, delivered: list[str]
    ) -> StreamInterrupted:
        cascade = self.cascade
        cascade.stats.record_error(tuple(self.attempts), "stream_interrupted")
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
        self.cascade.stats.record_error(tuple(attempts), "all_levels_failed")
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
    ) -> None:
        self.config = config
        self.levels: Sequence[LevelConfig] = config.levels
        self.deadline_s = config.runtime.deadline_s
        self.planner = planner
        self.providers = providers
        self.stats = stats
        self.history = history
        self.events = events
        self._cache = cache
        self._prices = _Prices(config)
        self._last_resort = frozenset(
            p.name for p in config.providers if p.kind in LAST_RESORT_KINDS
        )
        #: Levels served only by the last resort (cache, templates).
        self.last_resort_levels = frozenset(
            index
            for index, level in enumerate(config.levels)
            if all(name in self._last_resort for name in level.providers)
        )
        self.recovery_wait_s = config.runtime.recovery_wait_s
        self.in_flight = 0
        self.hedges = 0
        self.hedges_in_flight = 0

    # -- complete ---------------------------------------------------------------------------

    async def complete(self, request: Request) -> Reply:
        walk = _Walk(self, request)
        self.in_flight += 1
        try:
            for step in walk.steps():
                if not isinstance(step, _Level):
                    await trio.sleep_until(step)
                    continue
                level, candidates = step.level, step.candidates
                with trio.move_on_at(step.deadline):
                    if level.strategy == "race" and len(candidates) > 1:
                        won = await self._race(walk, level, candidates, step.deadline)
                    elif level.strategy == "hedge" and len(candidates) > 1:
                        won = await self._hedge(walk, level, candidates, step.deadline)
                    else:
                        won = await self._sequential(walk, level, candidates, step.deadline)
                    if won is not None:
                        return walk.reply(step, *won)
            raise walk.failed()
        finally:
            self.in_flight -= 1

    async def _sequential(
        self, walk: _Walk, level: LevelConfig, candidates: Sequence[Candidate], deadline: float
    ) -> tuple[Candidate, Completion] | None:
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
            rejected, rest = group.split(RequestRejected)
            if rejected is not None and rest is None:
                raise rejected.exceptions[0] from None
            raise
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
        """Try one candidate (and its larger-context models); record every try."""
        name = candidate.provider
        if level.attempt_timeout_s is not None:
            deadline = min(deadline, trio.current_time() + level.attempt_timeout_s)
        actor = self.providers.live(name)
        if actor is None:
            walk.unavailable(candidate, level)
            return None
        for model in (candidate.model, *candidate.fallback_models):
            started = trio.current_time()
            try:
                completion = await actor.complete(
                    walk.request, model, deadline=deadline, panic=candidate.panic
                )
            except trio.Cancelled:
                walk.cancelled(name, model, level, started, deadline)
                raise
            except ProviderError as error:
                walk.failed_attempt(name, model, level, error, started)
                if error.kind is FailureKind.CONTEXT_TOO_LONG:
                    continue
                walk.reject_if_client_error(name, error)
                return None
            walk.succeeded(name, completion.model, level, started)
            return completion
        return None

    def reply(
        self,
        request: Request,
        level: LevelConfig,
        level_index: int,
        candidate: Candidate,
        completion: Completion,
        attempts: list[Attempt],
        start: float,
    ) -> Reply:
        """The reply to `request`, recorded in stats and, from a real provider, in the cache."""
        fallback = level_index > 0 or len(attempts) > 1
        reply = Reply(
            text=completion.text,
            provider=candidate.provider,
            model=completion.model,
            level=level.name,
            fallback_used=fallback,
            attempts=tuple(attempts),
            latency_ms=(trio.current_time() - start) * 1000.0,
            cost_usd=self._prices.cost(completion),
            usage=completion.usage,
            finish_reason=completion.finish_reason,
        )
        self.stats.record_reply(reply)
        if fallback:
            self.events.emit(
                "fallback_used",
                provider=candidate.provider,
                level=level.name,
                failed_attempts=len(attempts) - 1,
            )
        if self._cache is not None and candidate.provider not in self._last_resort:
            self._cache.put(request, completion.text, completion.model)
        return reply

    # -- stream -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def open_stream(self, request: Request) -> AsyncIterator[ReplyStream]:
        stream = ReplyStream(self, request)
        try:
            yield stream
        finally:
            await stream.aclose()

    async def stream_text(self, request: Request, out: ReplyStream) -> AsyncGenerator[str, None]:
        """Text pieces from the first candidate that starts streaming, with `out.reply` set
        once the stream has ended; fallback before the first piece, `StreamInterrupted` after
        it. Deadlines are passed down rather than wrapped in cancel scopes, because a generator
        must not yield inside a cancel scope."""
        walk = _Walk(self, request)
        self.in_flight += 1
        try:
            for step in walk.steps():
                if not isinstance(step, _Level):
                    await trio.sleep_until(step)
                    continue
                level = step.level
                first_chunk = (
                    step.started + level.first_chunk_timeout_s
                    if level.first_chunk_timeout_s is not None
                    else None
                )
                for candidate in step.candidates:
                    actor = self.providers.live(candidate.provider)
                    if actor is None:
                        walk.unavailable(candidate, level)
                        continue
                    if trio.current_time() >= step.deadline:
                        break
                    delivered: list[str] = []
                    started = trio.current_time()
                    try:
                        async with actor.open_stream(
                            request,
                            candidate.model,
                            deadline=step.deadline,
                            first_chunk_deadline=first_chunk,
                            panic=candidate.panic,
                        ) as events:
                            async for event in events:
                                if isinstance(event, TextDelta):
                                    if event.text:
                                        delivered.append(event.text)
                                        yield event.text
                                elif isinstance(event, StreamDone):
                                    completion = event.completion
                                    walk.succeeded(
                                        candidate.provider, completion.model, level, started
                                    )
                                    out.reply = walk.reply(step, candidate, completion)
                                    return
                    except ProviderError as error:
                        walk.failed_attempt(
                            candidate.provider, candidate.model, level, error, started
                        )
                        if delivered:
                            raise walk.interrupted(
                                candidate.provider, level, error, delivered
                            ) from None
                        walk.reject_if_client_error(candidate.provider, error)
            raise walk.failed()
        finally:
            self.in_flight -= 1


class ReplyStream:
    """What `rt.stream()` yields: an async iterator of text; `reply` once it has ended."""

    def __init__(self, cascade: CascadeSupervisor, request: Request) -> None:
        self.reply: Reply | None = None
        self._pieces = cascade.stream_text(request, self)

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> str:
        return await self._pieces.__anext__()

    async def aclose(self) -> None:
        await self._pieces.aclose()


def _summary(attempts: Sequence[Attempt], deadline_passed: bool) -> str:
    if not attempts:
        return "no provider could be asked" + (" before the deadline" if deadline_passed else "")
    tried = ", ".join(f"{a.provider}:{a.outcome}" for a in attempts[-8:])
    more = f" (+{len(attempts) - 8} earlier)" if len(attempts) > 8 else ""
    why = "deadline passed" if deadline_passed else "every level failed"
    return f"{why} after {len(attempts)} attempt(s): {tried}{more}"
