"""What happened during a run, in compact columns: every request's outcome, every attempt, each
provider's breaker states over time, the faults as applied, and periodic samples of the runtime.

The recorder only stores; `runtime.scenario.report` does the arithmetic. Per-request data lives in
`array.array` columns (about 60 bytes a request with its attempts), so an hour at 50 requests per
second costs the recorder some 10 MB and nothing per request is kept as a Python object.
All times are seconds from the start of the run on the trio clock, so virtual runs record the
same numbers every time.
"""

from __future__ import annotations

import enum
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs
import trio

from actors.config import ModelInfo
from actors.errors import AllLevelsFailed, RequestRejected, StreamInterrupted
from actors.messages import Attempt, Reply
from actors.prices import baseline_cost


class Result(enum.IntEnum):
    """How one request ended. Everything but REPLY is a typed error, except LOST and UNTYPED."""

    REPLY = 0
    ALL_LEVELS_FAILED = 1
    REJECTED = 2
    STREAM_INTERRUPTED = 3
    #: Raised something that is not one of the runtime's typed errors: a bug.
    UNTYPED = 4
    #: Never ended (still pending when the drain time ran out).
    LOST = 5


RESULT_NAMES = {
    Result.REPLY: "reply",
    Result.ALL_LEVELS_FAILED: "all_levels_failed",
    Result.REJECTED: "rejected",
    Result.STREAM_INTERRUPTED: "stream_interrupted",
    Result.UNTYPED: "untyped_error",
    Result.LOST: "lost",
}

#: Attempt outcomes that mean the call never went out (the provider refused it locally).
NOT_SENT = frozenset({"unavailable"})


def result_of(error: BaseException) -> Result:
    if isinstance(error, StreamInterrupted):
        return Result.STREAM_INTERRUPTED
    if isinstance(error, AllLevelsFailed):
        return Result.ALL_LEVELS_FAILED
    if isinstance(error, RequestRejected):
        return Result.REJECTED
    return Result.UNTYPED


#: The reason recorded for a breaker state read from a status sample rather than an event.
SAMPLED = "sampled"


@attrs.frozen
class BreakerChange:
    at: float
    state: str
    reason: str = ""


@attrs.frozen
class AppliedFault:
    """A fault window as the timeline applied it (flapping yields one per down period)."""

    step: int
    provider: str
    kind: str
    start: float
    #: None: still active when the run ended.
    end: float | None
    title: str


@attrs.frozen
class MemoryCheckpoint:
    at: float
    #: Requests finished by then.
    requests: int
    #: Live memory blocks (`sys.getallocatedblocks`) and gc-tracked objects, after a collection.
    blocks: int
    objects: int
    #: Bytes held by allocations made in the runtime's and actors' code (tracemalloc only).
    runtime_bytes: int | None = None


class _Codes(dict[str, int]):
    """Name -> code, where looking up a new name gives it the next code: a hit is one C-level
    dict lookup, which is what the recorder does several times a request."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self._names = names

    def __missing__(self, name: str) -> int:
        code = self[name] = len(self._names)
        self._names.append(name)
        return code


class Interner:
    """Small integers for repeated strings (provider, level, outcome names)."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: list[str] = []
        #: ``codes[name]`` is `code(name)`, without the call.
        self.codes = _Codes(self.names)
        for name in names:
            self.code(name)

    def code(self, name: str) -> int:
        return self.codes[name]

    def __getitem__(self, code: int) -> str:
        return self.names[code]

    def __len__(self) -> int:
        return len(self.names)


class Recorder:
    """Collects a run. `record_*` methods are synchronous and cheap; times are trio times."""

    def __init__(
        self,
        *,
        providers: Sequence[str],
        levels: Sequence[str],
        baseline_price: ModelInfo,
        chars_per_token: float = 4.0,
        clock: Callable[[], float] = trio.current_time,
        quality_prices: Mapping[str, ModelInfo] | None = None,
        baseline_model: str = "",
        quality_models: Mapping[str, str] | None = None,
    ) -> None:
        self.clock = clock
        self.t0 = clock()
        self.providers = Interner(providers)
        self.levels = Interner(levels)
        self.outcomes = Interner(["ok"])
        self.baseline_price = baseline_price
        #: Per request quality, the price of the baseline at that quality (see
        #: `actors.prices.quality_baseline_model`); a quality missing here takes `baseline_price`.
        self.quality_prices = dict(quality_prices or {})
        self.baseline_model = baseline_model
        #: The model behind each of `quality_prices`, so a price step reaches them too.
        self.quality_models = dict(quality_models or {})
        self.chars_per_token = chars_per_token
        # One entry per finished request, in the order they finished.
        self.index = array("q")
        self.mix = array("h")
        self.stream = array("b")
        self.arrival = array("d")
        self.queue_ms = array("d")
        self.latency_ms = array("d")
        self.result = array("b")
        self.level = array("b")
        self.provider = array("h")
        self.fallback = array("b")
        self.failed_attempts = array("h")
        self.cost = array("d")
        self.baseline_cost = array("d")
        self.quality_baseline_cost = array("d")
        self.over_budget = array("b")
        # One entry per attempt.
        self.att_request = array("q")
        self.att_provider = array("h")
        self.att_level = array("b")
        self.att_outcome = array("h")
        self.att_start = array("d")
        self.att_latency_ms = array("d")
        # Requests issued, so lost ones are counted even if nothing else is.
        self.issued = 0
        self.breaker: dict[str, list[BreakerChange]] = {name: [] for name in providers}
        self.faults: list[AppliedFault] = []
        self.events: Counter[str] = Counter()
        self.events_dropped = 0
        self.restarts: dict[str, int] = {}
        self.actor_restarts: dict[str, int] = {}
        self.history_max = 0
        self.history_lengths: dict[str, int] = {}
        self.mailbox_max = 0
        self.memory: list[MemoryCheckpoint] = []
        self.end = 0.0
        #: In a fleet (``[fleet]``): each instance's breaker trips by provider, at the end.
        self.instance_trips: list[dict[str, int]] = []

    def now(self) -> float:
        return self.clock() - self.t0

    # --- requests ------------------------------------------------------------------------

    def _begin(self, index: int, mix: int, stream: bool, arrival: float, started: float) -> None:
        self.index.append(index)
        self.mix.append(mix)
        self.stream.append(1 if stream else 0)
        self.arrival.append(arrival)
        self.queue_ms.append(max(0.0, (started - arrival) * 1000.0))

    def record_reply(
        self,
        *,
        index: int,
        mix: int,
        stream: bool,
        arrival: float,
        started: float,
        finished: float,
        reply: Reply,
        budget_usd: float | None,
        prompt_chars: int,
        quality: str | None = None,
    ) -> None:
        self._begin(index, mix, stream, arrival, started)
        self.latency_ms.append((finished - arrival) * 1000.0)
        self.result.append(Result.REPLY)
        self.level.append(self.levels.codes[reply.level])
        self.provider.append(self.providers.codes[reply.provider])
        self.fallback.append(1 if reply.fallback_used else 0)
        self.cost.append(reply.cost_usd)
        self.baseline_cost.append(self._baseline(reply, prompt_chars))
        price = self.quality_prices.get(quality or "", self.baseline_price)
        self.quality_baseline_cost.append(self._baseline(reply, prompt_chars, price))
        self.over_budget.append(
            1 if budget_usd is not None and reply.cost_usd > budget_usd + 1e-12 else 0
        )
        self._attempts(index, reply.attempts, finished)

    def record_error(
        self,
        *,
        index: int,
        mix: int,
        stream: bool,
        arrival: float,
        started: float,
        finished: float,
        error: BaseException | None,
        result: Result | None = None,
    ) -> None:
        """A request that ended without a reply: a typed error, an untyped one, or lost."""
        self._begin(index, mix, stream, arrival, started)
        self.latency_ms.append((finished - arrival) * 1000.0)
        code = result if result is not None else result_of(error) if error else Result.UNTYPED
        self.result.append(code)
        self.level.append(-1)
        provider = getattr(error, "provider", None)
        self.provider.append(self.providers.code(provider) if isinstance(provider, str) else -1)
        self.fallback.append(0)
        self.cost.append(0.0)
        self.baseline_cost.append(0.0)
        self.quality_baseline_cost.append(0.0)
        self.over_budget.append(0)
        attempts: tuple[Attempt, ...] = getattr(error, "attempts", ())
        self._attempts(index, attempts, finished)

    def _attempts(self, index: int, attempts: Sequence[Attempt], finished: float) -> None:
        """Book attempts, timing them backwards from the end: the last attempt ended when the
        request did, and each one before it ended when the next began (exact for sequential
        levels in virtual time; an estimate for raced levels)."""
        failed = 0
        end = finished
        providers, levels, outcomes = self.providers.codes, self.levels.codes, self.outcomes.codes
        for attempt in reversed(attempts):
            start = end - attempt.latency_ms / 1000.0
            self.att_request.append(index)
            self.att_provider.append(providers[attempt.provider])
            self.att_level.append(levels[attempt.level])
            self.att_outcome.append(outcomes[attempt.outcome])
            self.att_start.append(start)
            self.att_latency_ms.append(attempt.latency_ms)
            if attempt.outcome != "ok":
                failed += 1
            end = start
        self.failed_attempts.append(failed)

    def _baseline(self, reply: Reply, prompt_chars: int, price: ModelInfo | None = None) -> float:
        """What this reply would have cost on the primary's default model (or at `price`)."""
        return baseline_cost(
            reply,
            self.baseline_price if price is None else price,
            prompt_chars=prompt_chars,
            chars_per_token=self.chars_per_token,
        )

    def reprice(self, model: str, price: ModelInfo) -> None:
        """A model's price changed: when it is the baseline's (the single one, or the baseline
        of some quality), replies from now on are compared with what they would cost on it at
        the new price."""
        if model == self.baseline_model:
            self.baseline_price = price
        for quality, baseline in self.quality_models.items():
            if baseline == model:
                self.quality_prices[quality] = price

    # --- the runtime's state -------------------------------------------------------------

    def record_breaker(self, provider: str, at: float, state: str, reason: str = "") -> None:
        """A breaker state, from an event or a status sample (reason `SAMPLED`); repeats are
        ignored.

        A sample only fills in what events missed. On a busy machine the event consumer can lag
        behind the sampler, which then sees a state before the event that says when and why it
        began; that event replaces the early glimpse, so a Retry-After hold is not taken for a
        trip and no change is recorded out of order.
        """
        changes = self.breaker.setdefault(provider, [])
        self.providers.code(provider)
        if reason != SAMPLED:
            while changes and changes[-1].reason == SAMPLED and changes[-1].at >= at:
                changes.pop()
        if changes and changes[-1].state == state:
            return
        changes.append(BreakerChange(at, state, reason))

    def record_fault(self, fault: AppliedFault) -> None:
        self.faults.append(fault)

    def end_fault(self, step: int, at: float) -> None:
        """Close the latest open window of timeline step `step`."""
        for position in range(len(self.faults) - 1, -1, -1):
            fault = self.faults[position]
            if fault.step == step and fault.end is None:
                self.faults[position] = attrs.evolve(fault, end=at)
                return

    def record_history(self, lengths: dict[str, int]) -> None:
        self.history_lengths = dict(lengths)
        if lengths:
            self.history_max = max(self.history_max, *lengths.values())

    @property
    def requests(self) -> int:
        return len(self.result)
