"""UpTax Fallback runtime: the actor kernel, and the public API that embeds it."""

from typing import TYPE_CHECKING, Any

from actors.errors import (
    AllLevelsFailed,
    ConfigError,
    FallbackError,
    RequestRejected,
    StreamInterrupted,
)
from actors.messages import Attempt, Complexity, Quality, Reply, Request, Usage
from runtime.config import Config, load_config, parse_config

if TYPE_CHECKING:
    from runtime.embed import Runtime, RuntimeStatus, open_runtime


def __getattr__(name: str) -> Any:
    # The embedding layer imports the domain actors, which import the kernel modules of this
    # package: importing it lazily lets `import actors.cascade` come first without a cycle.
    if name in ("Runtime", "RuntimeStatus", "open_runtime"):
        from runtime import embed

        return getattr(embed, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")


__all__ = [
    "AllLevelsFailed",
    "Attempt",
    "Complexity",
    "Config",
    "ConfigError",
    "FallbackError",
    "Quality",
    "Reply",
    "Request",
    "RequestRejected",
    "Runtime",
    "RuntimeStatus",
    "StreamInterrupted",
    "Usage",
    "load_config",
    "open_runtime",
    "parse_config",
]
