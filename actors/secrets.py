"""Secrets never reach a log line: every value shaped like a provider key is masked.

Keys reach logs by accident: a provider echoing the key in an error body, a header dict logged
while debugging, a traceback's message. `redact_secrets` is therefore a processor in the chain
(after exceptions are formatted, before rendering) rather than a rule callers must remember; it
masks anything shaped like a known provider key, bearer tokens, values under secret-sounding keys,
and the exact values registered with `register_secret` (the keys adapters read from the
environment).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = [
    "redact_secrets",
    "redact_text",
    "register_secret",
]

#: Shorter registered values are ignored: masking a 3-character "key" would shred ordinary text.
_MIN_SECRET_LENGTH = 8

_registered: set[str] = set()
_registered_pattern: re.Pattern[str] | None = None

#: What provider keys look like. Each match keeps only its well-known prefix.
_KEY_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"), "sk-ant-***"),
    (re.compile(r"sk-[A-Za-z0-9_\-]{16,}"), "sk-***"),
    (re.compile(r"AIza[0-9A-Za-z_\-]{20,}"), "AIza***"),
    (re.compile(r"hf_[A-Za-z0-9]{16,}"), "hf_***"),
    (re.compile(r"gsk_[A-Za-z0-9]{16,}"), "gsk_***"),
    (re.compile(r"\b([Bb]earer|BEARER)\s+[A-Za-z0-9._~+/\-]+=*"), r"\1 ***"),
)

#: Field names whose values are secret whatever they look like.
_SECRET_FIELD = re.compile(
    r"(^|[_\-])(api[_\-]?key|authorization|token|secret|password|x[_\-](api|goog[_\-]api)[_\-]key)$",
    re.IGNORECASE,
)

_PLAIN_TYPES = (int, float, bool, type(None))


def register_secret(value: str | None) -> None:
    """Mask this exact value wherever it appears in a log event from now on."""
    global _registered_pattern
    if not value or len(value) < _MIN_SECRET_LENGTH or value in _registered:
        return
    _registered.add(value)
    alternatives = sorted(_registered, key=len, reverse=True)
    _registered_pattern = re.compile("|".join(re.escape(secret) for secret in alternatives))


def redact_text(text: str) -> str:
    """`text` with registered secrets and anything that looks like a key masked."""
    if _registered_pattern is not None:
        text = _registered_pattern.sub("***", text)
    for pattern, replacement in _KEY_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, _PLAIN_TYPES):
        return value
    if isinstance(value, Mapping):
        return {key: _redact_field(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(_redact_value(item) for item in value)
    # Anything else is rendered through repr(): check that rendering, not the object.
    rendered = repr(value)
    redacted = redact_text(rendered)
    return value if redacted == rendered else redacted


def _redact_field(key: object, value: Any) -> Any:
    if isinstance(key, str) and _SECRET_FIELD.search(key) and value not in (None, ""):
        return "***"
    return _redact_value(value)


def redact_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets in every field of the event, recursively."""
    for key in list(event_dict):
        event_dict[key] = _redact_field(key, event_dict[key])
    return event_dict
