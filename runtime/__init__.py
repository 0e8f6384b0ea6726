"""UpTax Fallback runtime: the actor kernel, and the public API that embeds it."""

from actors.errors import (
    AllLevelsFailed,
    ConfigError,
    FallbackError,
    RequestRejected,
    StreamInterrupted,
)
from actors.messages import Attempt, Complexity, Quality, Reply, Request, Usage
from runtime.config import Config, load_config, parse_config

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
    "StreamInterrupted",
    "Usage",
    "load_config",
    "parse_config",
]
