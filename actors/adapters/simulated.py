"""The `simulated` provider kind: an in-process fake LLM with seeded latency, errors and faults.

Two pieces, because a remote provider does not heal when our actor restarts:

- `SimulatedBackend` is the fake remote service. It lives in the runtime's shared objects
  (``context.shared(name, "simulated", ...)``), so it outlives any one provider actor, and it is the
  `FaultTarget` that scenarios and the REPL inject faults into. It owns the seeded RNG, the knobs
  (`latency_ms`, `latency_jitter`, `error_rate`, `hang_probability`, `rate_limit_rps`, which can be
  changed while it runs) and the token bucket behind `rate_limit_rps`.
- `SimulatedAdapter` is the client an actor builds on each start; it only asks the backend what to
  do and then sleeps, raises or answers.

Every random choice of a call (latency, error, hang, text) is drawn synchronously when the call
arrives at the backend, so a scenario that issues the same calls in the same order with the same
seed sees exactly the same latencies, failures and texts.

How faults act (`Fault.rate` is the fraction of calls affected where a fault is probabilistic):

===========  ===============================================================================
outage       every call fails at once: SERVER_ERROR, `Fault.status` (503)
errors       a fraction `rate` of calls fail after their latency: SERVER_ERROR, `status`
latency      latency multiplied by `factor`, plus `delay_s`
hang         a fraction `rate` of calls never answer (cancel them)
rate_limit   every call fails at once: RATE_LIMITED 429 with `retry_after_s`
quota        every call fails at once: RATE_LIMITED 429, quota_remaining 0
drop_stream  a fraction `rate` of streams fail (CONNECTION) after `after_chunks` text deltas
malformed    a fraction `rate` of calls fail after their latency: MALFORMED
slow_drip    streamed chunks arrive `delay_s` further apart
rate_cap     calls beyond `rps` in any one second fail at once: RATE_LIMITED 429 with a
             Retry-After of the time until the window has room (no RNG draw)
===========  ===============================================================================
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING

import attrs
import trio

from actors.adapters.base import AdapterContext, register_kind
from actors.errors import FailureKind, ProviderError
from actors.faults import Fault, FaultKind, SlidingWindow
from actors.messages import (
    Completion,
    Request,
    StreamDone,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from actors.sizing import request_chars
from actors.synthetic import synthetic_answer

if TYPE_CHECKING:
    from actors.config import ProviderConfig

_FILLER = (
    "the", "provider", "considered", "request", "carefully", "and", "returns", "a", "concise",
    "answer", "with", "relevant", "detail", "about", "context", "constraints", "options",
    "tradeoffs", "steps", "results", "next", "actions", "summary",
)  # fmt: skip

#: Knob name -> (lowest allowed, highest allowed or None, may be None).
_KNOBS: dict[str, tuple[float, float | None, bool]] = {
    "latency_ms": (0.0, None, False),
    "latency_jitter": (0.0, None, False),
    "error_rate": (0.0, 1.0, False),
    "hang_probability": (0.0, 1.0, False),
    "rate_limit_rps": (0.0, None, True),
}


@attrs.frozen
class CallPlan:
    """What the backend decided for one call, before any time passes."""

    #: Seconds until the answer (or the delayed error); 0 means answer at the next checkpoint.
    latency_s: float
    #: The call never answers.
    hang: bool = False
    #: Raised instead of answering, after `latency_s`.
    error: ProviderError | None = None
    completion: Completion | None = None
    #: For streams: text deltas delivered before the connection drops (None: no drop).
    drop_after: int | None = None
    #: For streams: what breaking off raises (None: a dropped connection).
    drop_error: ProviderError | None = None
    #: For streams: extra seconds between chunks.
    drip_s: float = 0.0


class SimulatedBackend:
    """The fake remote provider: seeded, tunable while running, and a `FaultTarget`."""

    def __init__(self, config: ProviderConfig, *, clock: Callable[[], float] = trio.current_time):
        self.name = config.name
        self.seed = config.seed
        self.rng = random.Random(config.seed)
        self.latency_ms = config.latency_ms
        self.latency_jitter = config.latency_jitter
        self.error_rate = config.error_rate
        self.hang_probability = config.hang_probability
        self.rate_limit_rps: float | None = config.rate_limit_rps
        #: Calls that reached the backend (including refused ones).
        self.calls = 0
        #: Recovery probes that reached it (`probe_plan`), counted apart from calls.
        self.probes = 0
        #: Probes draw from their own generator, so a run's calls draw the same numbers
        #: whether probes are on or off.
        self._probe_rng = random.Random(f"{config.seed}:probe")
        self._clock = clock
        self._faults: dict[FaultKind, Fault] = {}
        self._bucket_rps: float | None = None
        self._tokens = 0.0
        self._refilled_at = 0.0
        self._cap_window = SlidingWindow()

    def __repr__(self) -> str:
        faults = ",".join(self._faults) or "none"
        return f"<SimulatedBackend {self.name} latency_ms={self.latency_ms} faults={faults}>"

    # --- knobs and faults ---

    def configure(self, **knobs: float | None) -> None:
        """Change knobs while running; an unknown knob or bad value raises ValueError naming it."""
        for name, value in knobs.items():
            if name not in _KNOBS:
                raise ValueError(f"unknown knob {name!r} (known: {', '.join(_KNOBS)})")
            low, high, nullable = _KNOBS[name]
            if value is None:
                if not nullable:
                    raise ValueError(f"{name}=None is not allowed")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name}={value!r} is not a number")
            if nullable and not value > low:
                raise ValueError(f"{name}={value!r} must be > {low} (or None for no limit)")
            if not value >= low or (high is not None and value > high):
                limit = f"between {low} and {high}" if high is not None else f">= {low}"
                raise ValueError(f"{name}={value!r} must be {limit}")
        for name, value in knobs.items():
            setattr(self, name, float(value) if value is not None else None)

    def knobs(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in _KNOBS}

    def inject(self, fault: Fault) -> None:
        """Add a fault; a fault of the same kind replaces the earlier one."""
        self._faults[fault.kind] = fault

    def lift(self, kind: FaultKind | str) -> None:
        """Remove the fault of one kind, if present."""
        self._faults.pop(FaultKind(kind), None)

    def heal(self) -> None:
        """Lift every fault."""
        self._faults.clear()

    def faults(self) -> tuple[Fault, ...]:
        return tuple(self._faults.values())

    # --- one call ---

    def plan(self, request: Request, model: str, *, streaming: bool = False) -> CallPlan:
        """Decide everything about one call now, from the seeded RNG, so runs are reproducible.
        The RNG is drawn in one fixed order (latency, hang, errors, faults), whatever happens."""
        self.calls += 1
        faults = self._faults
        if faults:
            refused = self._refused_at_once(faults) or self._over_cap(faults)
            if refused is not None:
                return CallPlan(0.0, error=refused)
        quota: float | None = None
        if self.rate_limit_rps is not None:
            quota = self._take_token(self.rate_limit_rps)
            if quota is None:
                return CallPlan(0.0, error=self._over_rate_limit(self.rate_limit_rps))
        latency_s = self._latency_s(faults)
        if self._hangs(faults):
            return CallPlan(latency_s, hang=True)
        if self.error_rate > 0 and self.rng.random() < self.error_rate:
            return CallPlan(latency_s, error=_server_error(503, "simulated error"))
        plan = self._faulted(faults, latency_s, streaming=streaming) if faults else None
        if plan is not None and plan.error is not None:
            return plan
        completion = self._completion(request, model, quota)
        if plan is None:
            return CallPlan(latency_s, completion=completion)
        return attrs.evolve(plan, completion=completion)

    def probe_plan(self) -> CallPlan:
        """What a recovery probe (a models listing) meets now: the faults, as a call would,
        at the base latency without jitter. No completion, no rate-limit token, no draw from
        the calls' generator; a fault's rate is drawn from the probes' own."""
        self.probes += 1
        faults = self._faults
        refused = self._refused_at_once(faults)
        if refused is not None:
            return CallPlan(0.0, error=refused)
        latency_s = self.latency_ms / 1000.0
        if (fault := faults.get(FaultKind.LATENCY)) is not None:
            latency_s = latency_s * fault.factor + fault.delay_s
        rng = self._probe_rng
        if (fault := faults.get(FaultKind.HANG)) is not None and rng.random() < fault.rate:
            return CallPlan(latency_s, hang=True)
        if self.error_rate > 0 and rng.random() < self.error_rate:
            return CallPlan(latency_s, error=_server_error(503, "simulated error"))
        if (fault := faults.get(FaultKind.ERRORS)) is not None and rng.random() < fault.rate:
            return CallPlan(latency_s, error=_server_error(fault.status, "injected error"))
        return CallPlan(latency_s)

    @staticmethod
    def _refused_at_once(faults: Mapping[FaultKind, Fault]) -> ProviderError | None:
        """Faults that answer before any work: an outage, a spent quota, a rate limit."""
        if (fault := faults.get(FaultKind.OUTAGE)) is not None:
            return _server_error(fault.status, "outage")
        if (fault := faults.get(FaultKind.QUOTA)) is not None:
            return ProviderError(
                FailureKind.RATE_LIMITED,
                "quota exhausted",
                status=429,
                retry_after_s=fault.retry_after_s,
                quota_remaining=0.0,
            )
        if (fault := faults.get(FaultKind.RATE_LIMIT)) is not None:
            return ProviderError(
                FailureKind.RATE_LIMITED,
                "rate limited",
                status=429,
                retry_after_s=fault.retry_after_s,
            )
        return None

    def _over_cap(self, faults: Mapping[FaultKind, Fault]) -> ProviderError | None:
        """A hidden rate limit (RATE_CAP): the call is counted in the one-second window, or
        refused with the time until the window has room."""
        fault = faults.get(FaultKind.RATE_CAP)
        if fault is None:
            return None
        wait = self._cap_window.admit(fault.rps, self._clock())
        if wait is None:
            return None
        return ProviderError(
            FailureKind.RATE_LIMITED, "rate limited", status=429, retry_after_s=wait
        )

    def _over_rate_limit(self, rps: float) -> ProviderError:
        wait = (1.0 - self._tokens) / rps
        return ProviderError(
            FailureKind.RATE_LIMITED,
            "rate limited",
            status=429,
            retry_after_s=wait,
            quota_remaining=0.0,
        )

    def _latency_s(self, faults: Mapping[FaultKind, Fault]) -> float:
        latency_ms = self.latency_ms
        if latency_ms > 0 and self.latency_jitter > 0:
            latency_ms = _lognormal(self.rng, math.log(latency_ms), self.latency_jitter)
        latency_s = latency_ms / 1000.0
        if (fault := faults.get(FaultKind.LATENCY)) is not None:
            latency_s = latency_s * fault.factor + fault.delay_s
        return latency_s

    def _hangs(self, faults: Mapping[FaultKind, Fault]) -> bool:
        rng = self.rng
        hang = self.hang_probability > 0 and rng.random() < self.hang_probability
        if (fault := faults.get(FaultKind.HANG)) is not None:
            hang = hang or rng.random() < fault.rate
        return hang

    def _faulted(
        self, faults: Mapping[FaultKind, Fault], latency_s: float, *, streaming: bool
    ) -> CallPlan | None:
        """What the injected error and stream faults make of a call that would succeed: a plan
        with an error, or one that shapes the stream (no completion yet), or None."""
        rng = self.rng
        if (fault := faults.get(FaultKind.ERRORS)) is not None and rng.random() < fault.rate:
            return CallPlan(latency_s, error=_server_error(fault.status, "injected error"))
        if (fault := faults.get(FaultKind.MALFORMED)) is not None and rng.random() < fault.rate:
            error = ProviderError(FailureKind.MALFORMED, "reply is not the expected shape")
            return CallPlan(latency_s, error=error)
        drop_after: int | None = None
        drop_error: ProviderError | None = None
        drip_s = 0.0
        fault = faults.get(FaultKind.STREAM_ERROR)
        if fault is not None and rng.random() < fault.rate:
            error = _server_error(fault.status, "in-band stream error")
            if not streaming:
                return CallPlan(latency_s, error=error)
            drop_after, drop_error = fault.after_chunks, error
        if streaming:
            fault = faults.get(FaultKind.DROP_STREAM)
            if fault is not None and rng.random() < fault.rate:
                drop_after = fault.after_chunks
            if (fault := faults.get(FaultKind.SLOW_DRIP)) is not None:
                drip_s = fault.delay_s
        return CallPlan(latency_s, drop_after=drop_after, drop_error=drop_error, drip_s=drip_s)

    def _take_token(self, rps: float) -> float | None:
        """Token bucket (burst of one second's worth) on the trio clock; None when empty."""
        now = self._clock()
        capacity = max(1.0, rps)
        if self._bucket_rps != rps:
            if self._bucket_rps is None:
                self._tokens = capacity
            self._bucket_rps = rps
            self._refilled_at = now
        self._tokens = min(capacity, self._tokens + (now - self._refilled_at) * rps)
        self._refilled_at = now
        if self._tokens < 1.0:
            return None
        self._tokens -= 1.0
        return self._tokens / capacity

    def _completion(self, request: Request, model: str, quota: float | None) -> Completion:
        """The echo of the prompt's first words, then 8 to 32 filler words drawn at random."""
        if request.tools or request.response_format is not None:
            return self._synthetic_completion(request, model, quota)
        # A shorthand request's last user text is its prompt (see `Request.cache_key`).
        prompt = request.prompt if request.prompt is not None else request.last_user_text
        echo, echo_text = _echo(prompt)
        filler = _filler(self.rng)
        sender = f"[{self.name}/{model}]"
        count = 1 + len(echo) + len(filler)
        if count <= request.max_tokens:
            text = f"{sender} {echo_text} {' '.join(filler)}"
            finish_reason = "stop"
        else:
            count = request.max_tokens
            text = " ".join([sender, *echo, *filler][:count])
            finish_reason = "length"
        return Completion(
            text=text,
            model=model,
            finish_reason=finish_reason,
            usage=Usage(input_tokens=max(1, request_chars(request) // 4), output_tokens=count),
            quota_remaining=quota,
        )

    def _synthetic_completion(
        self, request: Request, model: str, quota: float | None
    ) -> Completion:
        """Tool calls and JSON by the convention of `actors.synthetic`, with seeded ids."""
        answer = synthetic_answer(request, lambda n: f"call_{self.rng.getrandbits(96):024x}")
        output = len(answer.text.split()) + sum(len(c.arguments) // 4 for c in answer.tool_calls)
        return Completion(
            text=answer.text,
            model=model,
            finish_reason="tool_calls" if answer.tool_calls else "stop",
            usage=Usage(input_tokens=max(1, request_chars(request) // 4), output_tokens=output),
            quota_remaining=quota,
            tool_calls=answer.tool_calls,
        )


@functools.lru_cache(maxsize=1024)
def _echo(prompt: str) -> tuple[tuple[str, ...], str]:
    """What an answer echoes of `prompt` (its first eight words, then a separator), as words
    and joined. Scenarios repeat their prompts, so the last thousand are kept."""
    echo = (*prompt.split(maxsplit=8)[:8], "--")
    return echo, " ".join(echo)


#: `_filler` draws as `random.choices(_FILLER, k=random.randint(8, 32))` does.
_FILLER_COUNT_LOW = 8
_FILLER_COUNT_SPAN = 32 - 8 + 1
_FILLER_COUNT_BITS = _FILLER_COUNT_SPAN.bit_length()
_FILLER_SIZE = float(len(_FILLER))


def _filler(rng: random.Random) -> list[str]:
    """``rng.choices(_FILLER, k=rng.randint(8, 32))`` without its calls in between: the same
    draws from `rng` in the same order (CPython's `randint` takes getrandbits of the span's bit
    length until one falls in the span; `choices` without weights indexes by
    ``floor(random() * len)``), so the same words and the same state after."""
    getrandbits = rng.getrandbits
    offset = getrandbits(_FILLER_COUNT_BITS)
    while offset >= _FILLER_COUNT_SPAN:
        offset = getrandbits(_FILLER_COUNT_BITS)
    draw, floor, size = rng.random, math.floor, _FILLER_SIZE
    return [_FILLER[floor(draw() * size)] for _ in range(_FILLER_COUNT_LOW + offset)]


#: `random.NV_MAGICCONST`, computed as `random` computes it.
_NV_MAGICCONST = 4 * math.exp(-0.5) / math.sqrt(2.0)


def _lognormal(rng: random.Random, mu: float, sigma: float) -> float:
    """``rng.lognormvariate(mu, sigma)`` in one call instead of three: CPython's
    `normalvariate` (Kinderman and Monahan's ratio of uniforms) inlined, so the same draws
    from `rng` give the same float."""
    draw = rng.random
    while True:
        u1 = draw()
        u2 = 1.0 - draw()
        z = _NV_MAGICCONST * (u1 - 0.5) / u2
        if z * z / 4.0 <= -math.log(u2):
            return math.exp(mu + z * sigma)


def _server_error(status: int, message: str) -> ProviderError:
    return ProviderError(FailureKind.SERVER_ERROR, f"{message} ({status})", status=status)


async def _play_out(plan: CallPlan) -> None:
    """Spend the call's time as planned (forever for a hang), then raise its error if any."""
    if plan.hang:
        await trio.sleep_forever()
    if plan.latency_s > 0:
        await trio.sleep(plan.latency_s)
    else:
        await trio.lowlevel.checkpoint()
    if plan.error is not None:
        raise plan.error


class SimulatedAdapter:
    """The client side of a simulated provider: sleeps, fails or answers as the backend decides."""

    def __init__(self, backend: SimulatedBackend) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"<SimulatedAdapter {self.backend.name}>"

    async def complete(self, request: Request, model: str) -> Completion:
        plan = self.backend.plan(request, model)
        await _play_out(plan)
        assert plan.completion is not None
        return plan.completion

    async def probe_models(self) -> None:
        """A recovery probe: answers, fails or hangs as the backend's faults say."""
        await _play_out(self.backend.probe_plan())

    async def stream(self, request: Request, model: str) -> AsyncIterator[StreamEvent]:
        """Words as text deltas spread over the call's latency, then `StreamDone`."""
        plan = self.backend.plan(request, model, streaming=True)
        if plan.hang:
            await trio.sleep_forever()
        if plan.error is not None:
            # A failing call fails before its first chunk, as an HTTP error status would.
            if plan.latency_s > 0:
                await trio.sleep(plan.latency_s)
            else:
                await trio.lowlevel.checkpoint()
            raise plan.error
        completion = plan.completion
        assert completion is not None
        words = completion.text.split(" ") if completion.text else []
        for index, call in enumerate(completion.tool_calls):
            yield ToolCallDelta(index, call.id, call.name, call.arguments)
        if not words:
            yield StreamDone(completion)
            return
        gap_s = plan.latency_s / len(words) + plan.drip_s
        for index, word in enumerate(words):
            if plan.drop_after is not None and index >= plan.drop_after:
                raise plan.drop_error or ProviderError(FailureKind.CONNECTION, "stream dropped")
            if gap_s > 0:
                await trio.sleep(gap_s)
            else:
                await trio.lowlevel.checkpoint()
            yield TextDelta(word if index == 0 else " " + word)
        if plan.drop_after is not None:
            raise plan.drop_error or ProviderError(FailureKind.CONNECTION, "stream dropped")
        yield StreamDone(completion)

    async def aclose(self) -> None:
        """Nothing to release: the backend belongs to the runtime, not to this actor."""


def simulated_adapter(config: ProviderConfig, context: AdapterContext) -> SimulatedAdapter:
    """Build the adapter on the provider's long-lived backend (created on first use)."""
    backend = context.shared(config.name, "simulated", lambda: SimulatedBackend(config))
    if not isinstance(backend, SimulatedBackend):
        raise TypeError(f"shared object for {config.name!r} is not a SimulatedBackend")
    return SimulatedAdapter(backend)


register_kind("simulated")(simulated_adapter)
