"""Pytest plugin (registered through the `pytest11` entry point): the `fake_providers` fixture.

The fixture is a trio fixture, so it needs pytest-trio: with `trio_mode = true`, or on tests
marked `@pytest.mark.trio`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runtime.testing.server import FakeProviderServer, open_fake_provider_server


@pytest.fixture
async def fake_providers() -> AsyncIterator[FakeProviderServer]:
    """A running fake provider server on 127.0.0.1 with providers named openai, anthropic,
    gemini, ollama, mistral and huggingface (each its own kind), no faults, fixed seed."""
    async with open_fake_provider_server() as server:
        yield server
