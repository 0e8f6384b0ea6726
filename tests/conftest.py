"""Shared fixtures."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import structlog
import trio
from hypothesis import settings

from runtime.logs import configure_logging

# Property tests draw the same examples on every run (a fixed seed per test): a run that finds a
# new counterexample by chance would be a flaky test. Their example counts are set per test.
settings.register_profile("uptax", derandomize=True, database=None)
settings.load_profile("uptax")


@pytest.fixture(autouse=True)
def _seeded_trio_scheduler() -> None:
    """trio shuffles each batch of runnable tasks from a module-level RNG (to shake out ordering
    bugs); seeding it makes every test's schedule, and so its outcome, the same on every run."""
    trio._core._run._r.seed(0)


@pytest.fixture(autouse=True)
def own_logging() -> Iterator[None]:
    """A command run in-process configures logging (onto the stderr capsys replaces, at the
    level it was given): undo it after every test, so the next one logs as before whatever
    ran first. A test that captures an info event failed only after a test that left the
    warning level configured."""
    configured, saved = structlog.is_configured(), structlog.get_config()
    yield
    if configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


@pytest.fixture
def log_output() -> io.StringIO:
    """structlog configured as the runtime configures it at "info", writing into a buffer
    (`own_logging` restores it after)."""
    out = io.StringIO()
    configure_logging("info", stream=out)
    return out
