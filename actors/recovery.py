"""Active recovery probing: while a provider's breaker is open, ask it something cheap on a short
interval, so it rejoins within seconds of recovering instead of waiting out an open period that
doubles with each trip.

A probe is its models listing (`probe = "models"`: a GET, free) or a one-token completion of its
first model (`probe = "completion"`: counted in cost). It is not a call the breaker permits: it
goes out past the open breaker, at most one at a time, and only tells the breaker what it found
(`CircuitBreaker.on_recovery_probe`): a success turns it half-open at once, where real calls
confirm the recovery as after any open period; a failure keeps it open until the next probe,
without counting a trip. The task runs in the provider actor's nursery, so it stops with it.

A probe may also wait on a `ProbeGate`: the provider actor's, in a fleet, where the instances
take turns (`actors.state`) so that a provider that is down gets one probe per interval from
the whole fleet, not one from each instance, and never two at once (the gate hears when the
probe it let out has ended). An interval whose gate says no sends nothing; the
actor tells the others how long a failed probe keeps the breaker open (`on_still_down`), so
that theirs, which sent none, stay open until the next probe too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import trio

from actors.breaker import CircuitBreaker
from actors.config import ModelInfo, RecoveryConfig
from actors.errors import FailureKind, ProviderError
from actors.messages import Completion, Request
from runtime.kernel.events import EventBus

ProbeKind = Literal["models", "completion"]
#: A probe's call: its cost in USD, or a `ProviderError`.
ProbeCall = Callable[[], Awaitable[float]]
#: Whether this interval's probe may go out (asked just before it would).
ProbeGate = Callable[[], Awaitable[bool]]
#: Told that a probe the gate let out, sent at the given time, has ended.
ProbeEnded = Callable[[float], Awaitable[None]]
#: Told, after a probe that found the provider still down, how many seconds it keeps the
#: breaker open.
StillDown = Callable[[float], None]

#: The completion a `completion` probe asks for: one token, no sampling to speak of.
PROBE_REQUEST = Request(prompt="ping", max_tokens=1, temperature=0.0)
#: Failures that still prove the provider answered (a well-formed reply without text).
_ANSWERED = frozenset({FailureKind.EMPTY_REPLY, FailureKind.REFUSED})
#: Wait after a probe was rate limited without a Retry-After.
_RATE_LIMIT_WAIT_S = 1.0


def completion_cost(completion: Completion, price: ModelInfo) -> float:
    usage = completion.usage
    return (
        usage.input_tokens * price.input_usd_per_mtok
        + usage.output_tokens * price.output_usd_per_mtok
    ) / 1e6


class RecoveryProbes:
    """One provider actor's probing task: `run` in its nursery, `changed` on every breaker
    transition. Probes go out `interval_s` apart (the first one `interval_s` after the breaker
    opens), one at a time, while the breaker wants them (`wants_recovery_probe`) and the actor
    may ask the provider at all (`may_probe`: not held out, no Retry-After running) and the
    `gate`, if any, lets this one out."""

    def __init__(
        self,
        provider: str,
        kind: ProbeKind,
        settings: RecoveryConfig,
        *,
        breaker: CircuitBreaker,
        events: EventBus,
        call: ProbeCall,
        may_probe: Callable[[], bool],
        gate: ProbeGate | None = None,
        gate_ended: ProbeEnded | None = None,
        on_still_down: StillDown | None = None,
    ) -> None:
        self.provider = provider
        self.kind = kind
        self.interval_s = settings.interval_s
        self.timeout_s = settings.timeout_s
        self._breaker = breaker
        self._events = events
        self._call = call
        self._may_probe = may_probe
        self._gate = gate
        self._gate_ended = gate_ended
        self._on_still_down = on_still_down
        self._changed = trio.Event()
        self._opened_at = 0.0
        #: Probes sent, and what the completions among them cost (this runtime, all
        #: incarnations: the actor carries them over).
        self.probes = 0
        self.cost_usd = 0.0
        #: Whether a probe is out now (never more than one).
        self.in_flight = False

    def __repr__(self) -> str:
        return f"<RecoveryProbes {self.provider} {self.kind} every {self.interval_s}s>"

    def changed(self) -> None:
        """The breaker changed state: look again whether it wants probes."""
        self._changed.set()
        self._changed = trio.Event()

    async def run(self) -> None:
        while True:
            while not self._breaker.wants_recovery_probe:
                await self._changed.wait()
            self._opened_at = trio.current_time()
            await trio.sleep(self.interval_s)
            while self._breaker.wants_recovery_probe:
                started = trio.current_time()
                wait = 0.0
                if await self._may_send():
                    wait = await self._probe_once()
                    if self._gate_ended is not None:
                        await self._gate_ended(started)
                await trio.sleep_until(started + max(self.interval_s, wait))

    async def _may_send(self) -> bool:
        """Whether this interval's probe goes out: the actor may ask the provider, the gate
        lets it, and the breaker still wants it once the gate answered."""
        if not self._may_probe():
            return False
        if self._gate is None:
            return True
        return await self._gate() and self._breaker.wants_recovery_probe and self._may_probe()

    async def _probe_once(self) -> float:
        """Send one probe and tell the breaker; how long to wait before the next one."""
        breaker = self._breaker
        period = breaker.period
        started = trio.current_time()
        error, cost = await self._attempt()
        elapsed = trio.current_time() - started
        if error is None and elapsed > breaker.config.slow_call_s:
            error = ProviderError(FailureKind.TIMEOUT, f"{self.provider} probe was slow")
        self.probes += 1
        self.cost_usd += cost
        self._events.emit(
            "recovery_probe",
            provider=self.provider,
            probe=self.kind,
            ok=error is None,
            error=error.kind.value if error is not None else "",
            elapsed_ms=round(elapsed * 1000.0, 1),
            cost_usd=cost,
        )
        if breaker.period != period:
            return 0.0  # the breaker moved on meanwhile (its period ended, an operator)
        if error is None:
            if breaker.on_recovery_probe(success=True, hold_s=0.0):
                self._events.emit(
                    "provider_recovered",
                    provider=self.provider,
                    probe=self.kind,
                    open_for_s=round(trio.current_time() - self._opened_at, 3),
                )
        elif error.counts_against_breaker:
            hold_s = self.interval_s + self.timeout_s
            breaker.on_recovery_probe(success=False, hold_s=hold_s)
            if self._on_still_down is not None:
                self._on_still_down(hold_s)
        elif error.kind is FailureKind.RATE_LIMITED:
            return error.retry_after_s or _RATE_LIMIT_WAIT_S
        return 0.0

    async def _attempt(self) -> tuple[ProviderError | None, float]:
        """The probe's call within `timeout_s`: its error (None when the provider answered)
        and its cost."""
        self.in_flight = True
        try:
            with trio.move_on_after(self.timeout_s):
                try:
                    return None, await self._call()
                except ProviderError as error:
                    return (None if error.kind in _ANSWERED else error), 0.0
                except Exception as error:  # an adapter's bug must not stop the actor
                    detail = f"{self.provider} probe failed: {type(error).__name__}"
                    return ProviderError(FailureKind.MALFORMED, detail), 0.0
            return ProviderError(FailureKind.TIMEOUT, f"{self.provider} probe timed out"), 0.0
        finally:
            self.in_flight = False
