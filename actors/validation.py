"""Field validators shared by configs, requests and scenario files.

Each raises `FieldError`, which knows the field it is about: a config error reads
``runtime: deadline_s=0.0 must be > 0``, a scenario error ``table [load], key rps: 0 must be > 0``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

E = TypeVar("E", bound=enum.StrEnum)

Validator = Callable[[object, "attrs.Attribute[Any]", Any], None]


class FieldError(ValueError):
    """A bad value of one field: `field` names it, `message` says what is wrong with the value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}={message}")
        self.field = field
        self.message = message


def number(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A finite int or float (not a bool, not None, not nan or inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(attribute.name, f"{value!r} is not a number")
    if not math.isfinite(value):
        raise FieldError(attribute.name, f"{value!r} is not a finite number")


def to_float(value: Any) -> Any:
    """An attrs converter: an int becomes a float; anything else is left for the validators."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def string(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A str."""
    if not isinstance(value, str):
        raise FieldError(attribute.name, f"{value!r} is not a string")


def text(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A str with something in it besides whitespace."""
    string(instance, attribute, value)
    if not value.strip():
        raise FieldError(attribute.name, f"{value!r} must not be empty")


def string_mapping(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A mapping of str to str."""
    if not isinstance(value, Mapping):
        raise FieldError(attribute.name, f"{value!r} is not a mapping of strings to strings")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise FieldError(
                attribute.name, f"entry {key!r}: {item!r} is not a string key with a string value"
            )


def at_least(minimum: float, *, inclusive: bool = True) -> Validator:
    """The value (when not None) is >= `minimum`, or > it when not `inclusive`; nan never is."""
    op = ">=" if inclusive else ">"

    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        ok = value >= minimum if inclusive else value > minimum
        if not ok:
            raise FieldError(attribute.name, f"{value!r} must be {op} {minimum}")

    return check


positive = at_least(0, inclusive=False)
non_negative = at_least(0)


def between(low: float, high: float) -> Validator:
    """The value (when not None) lies in [low, high]."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not low <= value <= high:
            raise FieldError(attribute.name, f"{value!r} must be between {low:g} and {high:g}")

    return check


fraction = between(0.0, 1.0)


def one_of(choices: Sequence[str]) -> Validator:
    """The value is one of `choices`; the message lists them in plain words."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise FieldError(attribute.name, f"{value!r} is not one of: {', '.join(choices)}")

    return check


def optional_one_of(choices: Sequence[str]) -> Validator:
    """None, or one of `choices`."""
    check = one_of(choices)

    def check_optional(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check(instance, attribute, value)

    return check_optional


def positive_int(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An int (not a bool) above 0."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise FieldError(attribute.name, f"{value!r} must be a positive integer")


def integer(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An int (not a bool)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise FieldError(attribute.name, f"{value!r} is not an integer")


def boolean(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """True or False (not 1 or "yes")."""
    if not isinstance(value, bool):
        raise FieldError(attribute.name, f"{value!r} is not true or false")


def enum_converter(enum_type: type[E], field: str) -> Callable[[object], E]:
    """An attrs converter taking a member or its value in any case; else a `FieldError`."""
    choices = ", ".join(member.value for member in enum_type)

    def convert(value: object) -> E:
        if isinstance(value, enum_type):
            return value
        try:
            return enum_type(str(value).lower())
        except ValueError:
            raise FieldError(field, f"{value!r} is not one of: {choices}") from None

    return convert


def keys_one_of(choices: Sequence[str]) -> Validator:
    """Every key of a table is one of `choices`."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        for key in value:
            if key not in choices:
                raise FieldError(attribute.name, f"{key!r} is not one of: {', '.join(choices)}")

    return check
