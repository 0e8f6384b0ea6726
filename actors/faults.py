"""Faults that can be injected into a provider: one vocabulary for the simulated backend, the fake
provider server, chaos scenarios and the debug REPL."""

from __future__ import annotations

import collections
import enum
import math
import typing
from collections.abc import Mapping
from typing import Protocol

import attrs


class FaultKind(enum.StrEnum):
    #: Every call fails as a server error (`status`, 503 by default).
    OUTAGE = "outage"
    #: A fraction `rate` of calls fail as server errors.
    ERRORS = "errors"
    #: Latency multiplied by `factor`, plus `delay_s`.
    LATENCY = "latency"
    #: Calls are accepted and never answered.
    HANG = "hang"
    #: Calls answered 429 with Retry-After `retry_after_s`.
    RATE_LIMIT = "rate_limit"
    #: Quota exhausted: 429 and quota remaining 0 until healed.
    QUOTA = "quota"
    #: Streams are cut after `after_chunks` chunks.
    DROP_STREAM = "drop_stream"
    #: Replies are not valid JSON / not the expected shape.
    MALFORMED = "malformed"
    #: Streamed chunks arrive `delay_s` apart.
    SLOW_DRIP = "slow_drip"
    #: Streams break off after `after_chunks` chunks with the provider's in-band error event
    #: (Anthropic `event: error` overloaded_error, OpenAI `data: {"error": ...}`, an Ollama
    #: `{"error": ...}` line); whole replies fail as server errors with `status`.
    STREAM_ERROR = "stream_error"
    #: A hidden rate limit: calls beyond `rps` in any one second are answered 429 with a
    #: Retry-After of the time until the window has room again; calls within it are untouched.
    RATE_CAP = "rate_cap"


@attrs.frozen
class Fault:
    kind: FaultKind = attrs.field(converter=FaultKind)
    rate: float = 1.0
    factor: float = 1.0
    retry_after_s: float = 1.0
    status: int = 503
    after_chunks: int = 1
    #: LATENCY: seconds added after the factor; SLOW_DRIP: the gap between chunks (0.5 s
    #: unless given; 0 for every other kind).
    delay_s: float = attrs.field(
        default=attrs.Factory(
            lambda self: 0.5 if self.kind is FaultKind.SLOW_DRIP else 0.0, takes_self=True
        )
    )
    #: RATE_CAP: calls admitted in any one-second window (whole calls: 2.5 admits 2).
    rps: float = 1.0


#: A fault's settings besides its kind, and the type of each (int or float): what a fault given
#: as text or JSON may set.
FAULT_FIELDS: Mapping[str, type] = {
    field.name: typing.get_type_hints(Fault)[field.name]
    for field in attrs.fields(Fault)
    if field.name != "kind"
}


class SlidingWindow:
    """The calls admitted in the last second, for a RATE_CAP fault: both the simulated backend
    and the fake provider server count with it, on the clock they are given (trio's)."""

    WINDOW_S = 1.0

    def __init__(self) -> None:
        self._admitted: collections.deque[float] = collections.deque()

    def admit(self, rps: float, now: float) -> float | None:
        """Count a call arriving at `now`: None if it is admitted, else the seconds until the
        window has room again (its Retry-After)."""
        admitted = self._admitted
        while admitted and admitted[0] <= now - self.WINDOW_S:
            admitted.popleft()
        if len(admitted) < math.floor(rps):
            admitted.append(now)
            return None
        if not admitted:  # rps < 1: nothing is ever admitted
            return self.WINDOW_S
        return admitted[-math.floor(rps)] + self.WINDOW_S - now


class FaultTarget(Protocol):
    """Something faults can be injected into: a simulated backend or a fake-server provider."""

    def inject(self, fault: Fault) -> None:
        """Add a fault; a fault of the same kind replaces the earlier one."""
        ...

    def heal(self) -> None:
        """Lift every fault."""
        ...

    def faults(self) -> tuple[Fault, ...]: ...
