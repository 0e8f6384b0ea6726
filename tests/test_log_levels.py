"""Each event has a log level: at the default level (warning) a user sees what needs attention,
and nothing routine."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
import trio

import runtime
from actors.config import RuntimeSettings
from actors.events import EVENT_LEVELS
from runtime.kernel.events import EventBus
from runtime.logs import configure_logging

MISSING_KEY_ENV = "UPTAX_TEST_KEY_THAT_IS_NOT_SET"


@pytest.fixture
def default_level_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """structlog as the runtime configures it at the config's default level, into a buffer."""
    monkeypatch.delenv(MISSING_KEY_ENV, raising=False)
    saved = structlog.get_config()
    out = io.StringIO()
    configure_logging(RuntimeSettings().log_level, stream=out)
    try:
        yield out
    finally:
        structlog.configure(**saved)


def _config() -> runtime.Config:
    return runtime.parse_config(
        {
            "providers": [
                {
                    "name": "openai",
                    "kind": "openai",
                    "models": ["gpt-4o"],
                    "api_key_env": MISSING_KEY_ENV,
                },
                {"name": "gemini", "kind": "simulated", "models": ["gemini-pro"], "seed": 1},
            ],
            "levels": [
                {"name": "primary", "providers": ["openai"], "timeout_s": 30},
                {"name": "secondary", "providers": ["gemini"], "timeout_s": 45},
            ],
        }
    )


def test_default_log_level_is_warning() -> None:
    assert RuntimeSettings().log_level == "warning"


async def test_warnings_show_at_the_default_level_and_routine_events_do_not(
    default_level_log: io.StringIO, autojump_clock: Any
) -> None:
    async with runtime.open_runtime(_config()) as rt:
        reply = await rt.complete(runtime.Request(prompt="hello"))
        assert reply.provider == "gemini"
        rt.crash("gemini")
        await trio.sleep(1)
    lines = default_level_log.getvalue().splitlines()
    unavailable = [line for line in lines if "event='provider_unavailable'" in line]
    assert len(unavailable) == 1
    assert "level='warning'" in unavailable[0] and MISSING_KEY_ENV in unavailable[0]
    assert any("event='actor_crashed'" in line and "level='error'" in line for line in lines)
    assert any("event='actor_restarted'" in line for line in lines)
    # Routine events (a fallback, a client closed, a health change) stay below the default.
    assert not [line for line in lines if "level='info'" in line or "level='debug'" in line]


def test_event_bus_logs_each_event_at_its_level() -> None:
    saved = structlog.get_config()
    out = io.StringIO()
    configure_logging("debug", stream=out)
    try:
        bus = EventBus(levels={"breaker_opened": "warning", "request_hedged": "debug"})
        bus.emit("breaker_opened", provider="openai")
        bus.emit("request_hedged", level="primary")
        bus.emit("something_else")
    finally:
        structlog.configure(**saved)
    lines = out.getvalue().splitlines()
    assert "level='warning'" in lines[0] and "event='breaker_opened'" in lines[0]
    assert "level='debug'" in lines[1]
    assert "level='info'" in lines[2]


def test_event_bus_refuses_an_unknown_level() -> None:
    with pytest.raises(ValueError, match="'loud' of 'x' is not one of: debug, info"):
        EventBus(levels={"x": "loud"})


@pytest.mark.parametrize(
    "event",
    [
        "provider_unavailable",
        "provider_auth_failed",
        "breaker_opened",
        "request_failed",
        "actor_crashed",
        "actor_restarted",
        "supervisor_escalated",
    ],
)
def test_events_that_need_attention_are_warnings_or_errors(event: str) -> None:
    assert EVENT_LEVELS[event] in ("warning", "error")
