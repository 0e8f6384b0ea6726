"""The interface every provider adapter implements, and the table of adapter kinds.

An adapter is built by its provider actor when the actor starts and closed when it stops, so a
restarted actor never inherits a half-broken connection pool. Adapters raise only `ProviderError`
(classified) for failures; cancellation passes through untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol

from actors.messages import Completion, Request, StreamEvent

if TYPE_CHECKING:
    from actors.config import Config, ProviderConfig


class Adapter(Protocol):
    async def complete(self, request: Request, model: str) -> Completion:
        """One whole completion, or a `ProviderError`."""
        ...

    def stream(self, request: Request, model: str) -> AsyncIterator[StreamEvent]:
        """Text deltas, then exactly one `StreamDone`. Callers close it with `aclosing`."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...


class AdapterContext(Protocol):
    """What the runtime lends an adapter: objects that outlive a single actor incarnation."""

    @property
    def config(self) -> Config:
        """The whole runtime config (the template adapter reads `templates`, the cache its size,
        HTTP adapters the model table for request shaping)."""
        ...

    def shared(self, provider: str, kind: str, factory: Callable[[], Any]) -> Any:
        """The long-lived object for `provider` (a simulated backend, the reply cache)."""
        ...


#: kind -> factory(config, context) -> Adapter. Adapter modules register themselves here with
#: `register_kind` when imported (HTTP wire formats through `actors.adapters.http.register_wire`);
#: `actors.kinds` says which module serves each kind.
AdapterFactory = Callable[["ProviderConfig", AdapterContext], Adapter]
ADAPTER_KINDS: dict[str, AdapterFactory] = {}


def register_kind(kind: str) -> Callable[[AdapterFactory], AdapterFactory]:
    def register(factory: AdapterFactory) -> AdapterFactory:
        ADAPTER_KINDS[kind] = factory
        return factory

    return register
