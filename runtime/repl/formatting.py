"""The console's plain-text formatting: aligned tables, nested `key: value` lines, event lines.

Times are shown as seconds since the runtime started: trio's clock has an arbitrary offset.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import cattrs

from runtime.kernel.events import Event


def format_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 1:
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"


def format_value(value: Any) -> str:
    """One scalar (or a flat list of scalars) as the console prints it."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, Mapping):
        if not value:
            return "(none)"
        return " ".join(f"{key}={format_value(item)}" for key, item in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        if not value:
            return "(none)"
        return ", ".join(format_value(item) for item in value)
    return str(value)


def _is_nested(value: Any) -> bool:
    if isinstance(value, Mapping):
        return bool(value)
    if isinstance(value, list | tuple):
        return any(isinstance(item, Mapping | list | tuple) for item in value)
    return False


def format_mapping(data: Mapping[Any, Any], indent: str = "") -> list[str]:
    """Nested `key: value` lines, values aligned within each block; lists of records as `- `."""
    lines: list[str] = []
    width = max((len(str(key)) for key in data), default=0)
    for key, value in data.items():
        label = f"{key}:"
        if not _is_nested(value):
            lines.append(f"{indent}{label.ljust(width + 1)} {format_value(value)}")
            continue
        lines.append(f"{indent}{label}")
        if isinstance(value, Mapping):
            lines.extend(format_mapping(value, indent + "  "))
            continue
        for item in value:
            if isinstance(item, Mapping) and item:
                block = format_mapping(item, indent + "    ")
                block[0] = f"{indent}  - " + block[0][len(indent) + 4 :]
                lines.extend(block)
            else:
                lines.append(f"{indent}  - {format_value(item)}")
    return lines


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """An aligned table: numbers right-aligned, everything else left-aligned."""
    raw = [list(row) for row in rows]
    cells = [[format_value(value) for value in row] for row in raw]
    numeric = [True] * len(headers)
    for row in raw:
        for index, value in enumerate(row):
            if value is not None and not (
                isinstance(value, int | float) and not isinstance(value, bool)
            ):
                numeric[index] = False
    widths = [len(header) for header in headers]
    for row in cells:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))

    def line(values: Sequence[str], align_numbers: bool) -> str:
        parts = [
            text.rjust(widths[index]) if align_numbers and numeric[index] else text.ljust(widths[index])
            for index, text in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers, align_numbers=True), *(line(row, align_numbers=True) for row in cells)]


def format_records(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Records with the same keys as a table, one column per key."""
    rows = list(records)
    headers = list(rows[0]) if rows else []
    return format_table(
        [header.upper() for header in headers], [[row.get(key) for key in headers] for row in rows]
    )


def _field(value: Any) -> str:
    text = format_value(value)
    if not text or any(char.isspace() for char in text) or "=" in text:
        return repr(text)
    return text


def format_event(event: Event, origin: float = 0.0) -> str:
    """`t=12.345 breaker_opened provider=openai ...`: one line per state change."""
    values = relative_times(event.fields, origin)
    fields = " ".join(f"{key}={_field(value)}" for key, value in values.items())
    return f"t={event.at - origin:.3f} {event.event}" + (f" {fields}" if fields else "")


def _is_time_key(key: object) -> bool:
    return isinstance(key, str) and (
        key in ("at", "last_check") or key.endswith(("_at", "_until"))
    )


def relative_times(data: Mapping[Any, Any], origin: float) -> dict[Any, Any]:
    """Trio timestamps (`at`, `*_at`, `*_until`, `last_check`) as seconds since `origin`.

    trio's clock starts at an arbitrary offset; seconds since the runtime started can be read and
    compared with `watch`'s `t=`.
    """
    result: dict[Any, Any] = {}
    for key, value in data.items():
        if _is_time_key(key) and isinstance(value, int | float) and not isinstance(value, bool):
            result[key] = round(value - origin, 3)
        elif isinstance(value, Mapping):
            result[key] = relative_times(value, origin)
        elif isinstance(value, list | tuple):
            result[key] = [
                relative_times(item, origin) if isinstance(item, Mapping) else item
                for item in value
            ]
        else:
            result[key] = value
    return result


_TIME_IN_TEXT = re.compile(r"\bt=(-?\d+(?:\.\d+)?)s\b")


def relative_time_text(text: str, origin: float) -> str:
    """Trio times written into text as ``t=1234.5s`` (a route plan's reasons), made relative."""
    return _TIME_IN_TEXT.sub(lambda match: f"t={float(match[1]) - origin:.1f}s", text)


def format_age(now: float, at: float | None) -> str:
    if at is None:
        return "-"
    seconds = max(0.0, now - at)
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def unstructure(value: Any) -> Any:
    """An attrs snapshot as plain data; anything else as it is."""
    if attrs.has(type(value)):
        return cattrs.unstructure(value)
    return value
