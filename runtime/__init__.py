"""UpTax Fallback: the public API an application embeds.

`runtime.kernel` holds the actor kernel; `actors` holds the domain; this package is the public
face on top of both (embed, cli, gateway, repl, scenario, testing).
"""

from actors.chat import ImagePart, Message, ResponseFormat, TextPart, Tool, ToolCall, ToolChoice
from actors.config import Config, load_config, parse_config
from actors.errors import (
    AllLevelsFailed,
    ConfigError,
    FallbackError,
    ModelNotOffered,
    RequestRejected,
    RuntimeClosed,
    StreamInterrupted,
)
from actors.messages import (
    Attempt,
    Complexity,
    CostTier,
    Quality,
    Reply,
    ReplyDone,
    Request,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from runtime.embed import Runtime, RuntimeStatus, open_runtime

__all__ = [
    "AllLevelsFailed",
    "Attempt",
    "Complexity",
    "Config",
    "ConfigError",
    "CostTier",
    "FallbackError",
    "ImagePart",
    "Message",
    "ModelNotOffered",
    "Quality",
    "Reply",
    "ReplyDone",
    "Request",
    "RequestRejected",
    "ResponseFormat",
    "Runtime",
    "RuntimeClosed",
    "RuntimeStatus",
    "StreamInterrupted",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "Usage",
    "load_config",
    "open_runtime",
    "parse_config",
]
