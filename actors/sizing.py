"""How big a request is before it is sent: characters of the whole conversation, the tool
definitions and the output schema, and a fixed allowance per image.

The router turns this into a token estimate (``chars / routing.chars_per_token``) for the
context-window check and the budget; the simulator bills by it. An estimate, not a tokenizer: it
must only be right enough that a request never goes to a model whose window it cannot fit.
"""

from __future__ import annotations

import json

from actors.messages import Request

__all__ = ["IMAGE_CHARS", "request_chars"]

#: An image's allowance, in characters: ~1,600 tokens at 4 characters a token, what Anthropic
#: bills a 1.15-megapixel image and more than OpenAI's high-detail 1024x1024 tile count (765).
IMAGE_CHARS = 6_400


def request_chars(request: Request) -> int:
    """The request's size in characters (see the module docstring)."""
    if request.prompt is not None and not request.tools and request.response_format is None:
        return len(request.prompt) + len(request.system or "")
    chars = 0
    for message in request.conversation:
        chars += len(message.text) + IMAGE_CHARS * len(message.images)
        for call in message.tool_calls:
            chars += len(call.name) + len(call.arguments)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(_dumps(tool.parameters))
    if request.response_format is not None and request.response_format.schema is not None:
        chars += len(_dumps(request.response_format.schema))
    return chars


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
