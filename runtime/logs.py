"""Logging setup: structlog key=value lines, with every secret masked before it is rendered."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TextIO

import structlog

from actors import config
from actors.secrets import redact_secrets

__all__ = ["LOG_LEVELS", "configure_logging"]

#: The config's `log_level` choices, and the logging level of each.
LOG_LEVELS: Mapping[str, int] = {
    name: logging.getLevelNamesMapping()[name.upper()] for name in config.LOG_LEVELS
}


def configure_logging(level: str = "warning", *, stream: TextIO | None = None) -> None:
    """Configure structlog: ISO timestamps, key=value lines on `stream` (stderr), secrets masked.

    `level` is one of `LOG_LEVELS`; anything else raises ValueError naming the choices.
    """
    number = LOG_LEVELS.get(level.lower()) if isinstance(level, str) else None
    if number is None:
        raise ValueError(f"log_level={level!r} is not one of: {', '.join(LOG_LEVELS)}")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.KeyValueRenderer(
                key_order=["timestamp", "level", "event"], drop_missing=True
            ),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(
            file=stream if stream is not None else sys.stderr
        ),
        cache_logger_on_first_use=False,
    )
