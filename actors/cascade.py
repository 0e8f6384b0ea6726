"""The cascade supervisor: walks the levels for each request until something answers.

Each level runs inside its own cancel scope with an absolute deadline (the level's `timeout_s`
from when it starts, never past the request's overall deadline). Within a level the router's
candidates are tried one after another (`sequential`) or all at once (`race`: first success
wins, the others are cancelled). Calls run in tasks the level owns, so when a level's deadline
passes every call in it is cancelled and none outlives it. A request ends in exactly one
`Reply` or one typed error: `RequestRejected` (the request itself is wrong, no fallback) or
`AllLevelsFailed` (with every attempt).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence

import trio

from actors.adapters.lastresort import ResponseCache
from actors.config import LAST_RESORT_KINDS, Config, LevelConfig
from actors.errors import (
    AllLevelsFailed,
    FailureKind,
    ProviderError,
    RequestRejected,
    StreamInterrupted,
)
from actors.messages import Attempt, Completion, Reply, Request, StreamDone, TextDelta
from actors.provider import ProviderActor
from actors.ranking import Candidate, RoutePlan
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


class CascadeSupervisor:
    def __init__(
        self,
        config: Config,
        *,
        plan: Callable[[Request], RoutePlan],
        provider: Callable[[str], ProviderActor | None],
        cache: ResponseCache | None,
        stats: FallbackStats,
        history: PerformanceHistory,
        events: EventBus,
    ) -> None:
        self.config = config
        self.levels: Sequence[LevelConfig] = config.levels
        self.deadline_s = config.runtime.deadline_s
        self._plan = plan
        self._provider = provider
        self._cache = cache
        self._stats = stats
        self._history = history
        self._events = events
        self._prices = _Prices(config)
        self._last_resort = frozenset(
            p.name for p in config.providers if p.kind in LAST_RESORT_KINDS
        )
        #: Levels served only by the last resort (cache, templates).
        self._last_resort_levels = frozenset(
            index
            for index, level in enumerate(config.levels)
            if all(name in self._last_resort for name in level.providers)
        )
        self.recovery_wait_s = config.runtime.recovery_wait_s
        self.in_flight = 0
        self.hedges = 0
        self.hedges_in_flight = 0

    async def _recover(
        self, request: Request, plan: RoutePlan, deadline: float, recovery: _Recovery
    ) -> RoutePlan | None:
        """Before settling for the last resort (or failing), wait for the first provider that
        asked us to wait (Retry-After) when that is soon: within the request's deadline and its
        recovery budget. Returns the fresh plan to walk again from the first level, or None to
        go on without waiting. Open breakers are not waited for: their half-open time is a
        guess, and during a real outage the wait would only delay the last resort."""
        back = plan.earliest_available
        now = trio.current_time()
        if back is None or back >= deadline or recovery.rounds >= MAX_RECOVERY_ROUNDS:
            return None
        wait = max(0.0, back - now)
        if recovery.waited + wait > recovery.budget_s:
            return None
        recovery.rounds += 1
        recovery.waited += wait
        self._events.emit(
            "waiting_for_provider",
            wait_s=round(wait, 3),
            round=recovery.rounds,
            task_id=request.task_id,
        )
        await trio.sleep_until(back)
        return self._plan(request)

    def _deadline(self, request: Request, start: float) -> float:
        return start + (request.deadline_s if request.deadline_s is not None else self.deadline_s)

    def _walk(self, deadline: float) -> Iterator[tuple[int, LevelConfig, float, float]]:
        """The levels still reachable before `deadline`: (index, level, now, level deadline),
        each level's deadline counted from when it starts."""
        for index, level in enumerate(self.levels):
            now = trio.current_time()
            if now >= deadline:
                return
            yield index, level, now, min(now + level.timeout_s, deadline)

    # -- complete ---------------------------------------------------------------------------

    async def complete(self, request: Request) -> Reply:
        start = trio.current_time()
        deadline = self._deadline(request, start)
        attempts: list[Attempt] = []
        plan = self._plan(request)
        self.in_flight += 1
        try:
            recovery = _Recovery(self.recovery_wait_s)
            while True:
                for index, level, _, level_deadline in self._walk(deadline):
                    if index in self._last_resort_levels:
                        recovered = await self._recover(request, plan, deadline, recovery)
                        if recovered is not None:
                            plan = recovered
                            break
                    candidates = plan.levels[index].candidates
                    if not candidates:
                        continue
                    with trio.move_on_at(level_deadline):
                        if level.strategy == "race" and len(candidates) > 1:
                            won = await self._race(
                                level, candidates, request, level_deadline, attempts
                            )
                        elif level.strategy == "hedge" and len(candidates) > 1:
                            won = await self._hedge(
                                level, candidates, request, level_deadline, attempts
                            )
                        else:
                            won = await self._sequential(
                                level, candidates, request, level_deadline, attempts
                            )
                        if won is not None:
                            candidate, completion = won
                            return self._reply(
                                request, level, index, candidate, completion, attempts, start
                            )
                else:
                    recovered = await self._recover(request, plan, deadline, recovery)
                    if recovered is None:
                        break
                    plan = recovered
            error = AllLevelsFailed(_summary(attempts, trio.current_time() >= deadline), attempts)
            self._stats.record_error(tuple(attempts), "all_levels_failed")
            self._events.emit("request_failed", attempts=len(attempts), task_id=request.task_id)
            raise error
        finally:
            self.in_flight -= 1

    async def _sequential(
        self,
        level: LevelConfig,
        candidates: Sequence[Candidate],
        request: Request,
        deadline: float,
        attempts: list[Attempt],
    ) -> tuple[Candidate, Completion] | None:
        for candidate in candidates:
            completion = await self._attempt(level, candidate, request, deadline, attempts)
            if completion is not None:
                return candidate, completion
        return None

    async def _race(
        self,
        level: LevelConfig,
        candidates: Sequence[Candidate],
        request: Request,
        deadline: float,
        attempts: list[Attempt],
    ) -> tuple[Candidate, Completion] | None:
        winner: list[tuple[Candidate, Completion]] = []

        async def run(candidate: Candidate, scope: trio.CancelScope) -> None:
            completion = await self._attempt(level, candidate, request, deadline, attempts)
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
        self,
        level: LevelConfig,
        candidates: Sequence[Candidate],
        request: Request,
        deadline: float,
        attempts: list[Attempt],
    ) -> tuple[Candidate, Completion] | None:
        """Start the next candidate when the current one fails, or when it has taken longer than
        its provider's p95 latency (at least `hedge_after_s`) and the hedge budget allows; the
        first success wins and the rest are cancelled. The budget (Envoy's retry budget: hedges
        in flight at most 20 % of requests in flight, at least 3) keeps an outage from doubling
        the load on whoever is left."""
        winner: list[tuple[Candidate, Completion]] = []

        async def run(candidate: Candidate, done: trio.Event, scope: trio.CancelScope) -> None:
            try:
                completion = await self._attempt(level, candidate, request, deadline, attempts)
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
                actor = self._provider(candidate.provider)
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
                    self._events.emit(
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
        self,
        level: LevelConfig,
        candidate: Candidate,
        request: Request,
        deadline: float,
        attempts: list[Attempt],
    ) -> Completion | None:
        """Try one candidate (and its larger-context models); record every try."""
        name = candidate.provider
        if level.attempt_timeout_s is not None:
            deadline = min(deadline, trio.current_time() + level.attempt_timeout_s)
        actor = self._provider(name)
        models = (candidate.model, *candidate.fallback_models)
        if actor is None:
            attempts.append(
                Attempt(name, candidate.model, level.name, "unavailable", 0.0, "restarting")
            )
            return None
        for model in models:
            started = trio.current_time()
            try:
                completion = await actor.complete(
                    request, model, deadline=deadline, panic=candidate.panic
                )
            except trio.Cancelled:
                # The level's deadline passed (a timeout), or a race was won by another call.
                now = trio.current_time()
                outcome = "timeout" if now >= deadline else "cancelled"
                elapsed = (now - started) * 1000.0
                attempts.append(Attempt(name, model, level.name, outcome, elapsed))
                if outcome == "timeout":
                    self._history.record(name, started, elapsed, ok=False)
                raise
            except ProviderError as error:
                elapsed = (trio.current_time() - started) * 1000.0
                attempts.append(
                    Attempt(name, model, level.name, error.kind.value, elapsed, error.message)
                )
                self._history.record(name, started, elapsed, ok=False)
                if error.kind is FailureKind.CONTEXT_TOO_LONG:
                    continue
                if error.kind is FailureKind.CLIENT_ERROR:
                    self._stats.record_error(tuple(attempts), "request_rejected")
                    raise RequestRejected(
                        f"{name} rejected the request: {error.message}",
                        name,
                        error.status,
                        attempts,
                    ) from None
                return None
            elapsed = (trio.current_time() - started) * 1000.0
            attempts.append(Attempt(name, completion.model, level.name, "ok", elapsed))
            self._history.record(name, started, elapsed, ok=True)
            return completion
        return None

    def _reply(
        self,
        request: Request,
        level: LevelConfig,
        level_index: int,
        candidate: Candidate,
        completion: Completion,
        attempts: list[Attempt],
        start: float,
    ) -> Reply:
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
        self._stats.record_reply(reply)
        if fallback:
            self._events.emit(
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

    async def _stream(self, request: Request, out: ReplyStream) -> AsyncGenerator[str, None]:
        """Text pieces from the first candidate that starts streaming; fallback before the first
        piece, `StreamInterrupted` after it. Deadlines are passed down rather than wrapped in
        cancel scopes, because a generator must not yield inside a cancel scope."""
        start = trio.current_time()
        deadline = self._deadline(request, start)
        attempts: list[Attempt] = []
        plan = self._plan(request)
        self.in_flight += 1
        try:
            recovery = _Recovery(self.recovery_wait_s)
            while True:
                for index, level, now, level_deadline in self._walk(deadline):
                    if index in self._last_resort_levels:
                        recovered = await self._recover(request, plan, deadline, recovery)
                        if recovered is not None:
                            plan = recovered
                            break
                    first_chunk = (
                        now + level.first_chunk_timeout_s
                        if level.first_chunk_timeout_s is not None
                        else None
                    )
                    for candidate in plan.levels[index].candidates:
                        actor = self._provider(candidate.provider)
                        if actor is None:
                            attempts.append(
                                Attempt(
                                    candidate.provider,
                                    candidate.model,
                                    level.name,
                                    "unavailable",
                                    0.0,
                                    "restarting",
                                )
                            )
                            continue
                        if trio.current_time() >= level_deadline:
                            break
                        delivered: list[str] = []
                        started = trio.current_time()
                        try:
                            async with actor.open_stream(
                                request,
                                candidate.model,
                                deadline=level_deadline,
                                first_chunk_deadline=first_chunk,
                                panic=candidate.panic,
                            ) as events:
                                async for event in events:
                                    if isinstance(event, TextDelta):
                                        if event.text:
                                            delivered.append(event.text)
                                            yield event.text
                                    elif isinstance(event, StreamDone):
                                        elapsed = (trio.current_time() - started) * 1000.0
                                        attempts.append(
                                            Attempt(
                                                candidate.provider,
                                                event.completion.model,
                                                level.name,
                                                "ok",
                                                elapsed,
                                            )
                                        )
                                        self._history.record(
                                            candidate.provider, started, elapsed, ok=True
                                        )
                                        out.reply = self._reply(
                                            request,
                                            level,
                                            index,
                                            candidate,
                                            event.completion,
                                            attempts,
                                            start,
                                        )
                                        return
                        except ProviderError as error:
                            elapsed = (trio.current_time() - started) * 1000.0
                            attempts.append(
                                Attempt(
                                    candidate.provider,
                                    candidate.model,
                                    level.name,
                                    error.kind.value,
                                    elapsed,
                                    error.message,
                                )
                            )
                            self._history.record(candidate.provider, started, elapsed, ok=False)
                            if delivered:
                                self._stats.record_error(tuple(attempts), "stream_interrupted")
                                self._events.emit(
                                    "stream_interrupted",
                                    provider=candidate.provider,
                                    level=level.name,
                                    delivered_chars=sum(map(len, delivered)),
                                    kind=error.kind.value,
                                )
                                raise StreamInterrupted(
                                    f"{candidate.provider} failed mid-stream: {error.message}",
                                    candidate.provider,
                                    "".join(delivered),
                                    attempts,
                                ) from None
                            if error.kind is FailureKind.CLIENT_ERROR:
                                self._stats.record_error(tuple(attempts), "request_rejected")
                                raise RequestRejected(
                                    f"{candidate.provider} rejected the request: {error.message}",
                                    candidate.provider,
                                    error.status,
                                    attempts,
                                ) from None
                else:
                    recovered = await self._recover(request, plan, deadline, recovery)
                    if recovered is None:
                        break
                    plan = recovered
            self._stats.record_error(tuple(attempts), "all_levels_failed")
            raise AllLevelsFailed(_summary(attempts, trio.current_time() >= deadline), attempts)
        finally:
            self.in_flight -= 1


class ReplyStream:
    """What `rt.stream()` yields: an async iterator of text; `reply` once it has ended."""

    def __init__(self, cascade: CascadeSupervisor, request: Request) -> None:
        self.reply: Reply | None = None
        self._pieces = cascade._stream(request, self)

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
