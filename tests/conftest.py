"""Shared fixtures."""

from __future__ import annotations

import pytest
import trio


@pytest.fixture(autouse=True)
def _seeded_trio_scheduler() -> None:
    """trio shuffles each batch of runnable tasks from a module-level RNG (to shake out ordering
    bugs); seeding it makes every test's schedule, and so its outcome, the same on every run."""
    trio._core._run._r.seed(0)
