"""Secrets never reach log output: the redaction processor, the configured chain, and an auth
failure logged end to end."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
import structlog
from adapter_support import KEYS, build, set_keys

from actors.errors import FailureKind, ProviderError
from actors.messages import Request
from actors.secrets import redact_secrets, redact_text, register_secret
from runtime.kernel.events import EventBus
from runtime.logs import configure_logging


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("sk-proj-abcdefghijklmnopqrstuvwx", "sk-***"),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwx", "sk-ant-***"),
        ("AIzaSyAbcdefghijklmnopqrstuvwxyz0123", "AIza***"),
        ("hf_abcdefghijklmnopqrstuvwx", "hf_***"),
        ("gsk_abcdefghijklmnopqrstuvwx", "gsk_***"),
    ],
)
def test_key_shapes_are_masked(secret: str, masked: str) -> None:
    text = redact_text(f"call failed with key {secret}, retrying")
    assert secret not in text
    assert f"with key {masked}, retrying" in text


def test_bearer_tokens_are_masked() -> None:
    assert redact_text("Authorization: Bearer abc.def-ghi_jkl==") == "Authorization: Bearer ***"


def test_ordinary_text_is_untouched() -> None:
    text = "provider=openai model=gpt-4o-mini input_tokens=12 task-ask sk-short"
    assert redact_text(text) == text


def test_registered_values_are_masked_whatever_their_shape() -> None:
    register_secret("plainlookingsecretvalue42")
    assert redact_text("x=plainlookingsecretvalue42;") == "x=***;"


def test_too_short_values_are_not_registered() -> None:
    register_secret("abc")
    assert redact_text("abcdef") == "abcdef"


def test_processor_redacts_every_field_recursively() -> None:
    key = "sk-ant-api03-RECURSIVEabcdefghijklmnop"
    event: dict[str, Any] = {
        "event": f"failed {key}",
        "nested": {"deeper": [f"Bearer {key}", ("t", key)], "count": 3},
        "api_key": "anything at all",
        "authorization": "Basic dXNlcjpwYXNz",
        "x-api-key": "whatever",
        "api_key_env": "ANTHROPIC_API_KEY",
        "input_tokens": 12,
        "flag": True,
        "missing": None,
    }
    out = redact_secrets(None, "info", dict(event))
    assert key not in repr(out)
    assert out["api_key"] == "***"
    assert out["authorization"] == "***"
    assert out["x-api-key"] == "***"
    assert out["api_key_env"] == "ANTHROPIC_API_KEY"  # the variable's name is not a secret
    assert out["input_tokens"] == 12
    assert out["flag"] is True
    assert out["missing"] is None
    assert out["nested"]["count"] == 3
    assert isinstance(out["nested"]["deeper"][1], tuple)


def test_processor_checks_the_repr_of_other_objects() -> None:
    key = "sk-proj-REPRabcdefghijklmnopqrstu"

    class Leaky:
        def __repr__(self) -> str:
            return f"Leaky({key})"

    out = redact_secrets(None, "info", {"event": "x", "obj": Leaky()})
    assert out["obj"] == "Leaky(sk-***)"


def test_configured_output_is_key_value_with_timestamp_and_level(log_output: io.StringIO) -> None:
    structlog.get_logger("t").info("breaker_opened", provider="openai", trips=2)
    line = log_output.getvalue().strip()
    assert line.startswith("timestamp=")
    assert "level='info'" in line
    assert "event='breaker_opened'" in line
    assert "provider='openai'" in line
    assert "trips=2" in line


def test_level_filters(log_output: io.StringIO) -> None:
    structlog.get_logger("t").debug("noise")
    assert log_output.getvalue() == ""


def test_bad_level_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="log_level='loud' is not one of: debug, info"):
        configure_logging("loud")


def test_configured_chain_redacts_fields_and_tracebacks(log_output: io.StringIO) -> None:
    key = "sk-ant-api03-CHAINabcdefghijklmnopqr"
    log = structlog.get_logger("t")
    log.warning("call_failed", detail={"headers": {"x-api-key": key}}, note=f"used {key}")
    try:
        raise RuntimeError(f"exploded with {key}")
    except RuntimeError:
        log.exception("crashed")
    output = log_output.getvalue()
    assert "call_failed" in output and "crashed" in output
    assert "RuntimeError: exploded with sk-ant-***" in output
    assert key not in output


async def test_auth_failure_leaves_no_key_in_logs(
    log_output: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider echoing the key in its 401 body: the error and everything logged about it are clean."""
    set_keys(monkeypatch)
    env, key = KEYS["openai"]

    async def reject(request: httpx.Request) -> httpx.Response:
        body = {
            "error": {"message": f"Incorrect API key provided: {key}.", "code": "invalid_api_key"}
        }
        return httpx.Response(401, json=body)

    adapter = build("openai", reject)
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(Request("hi"), "gpt-test")
    error = caught.value
    assert error.kind is FailureKind.AUTH
    assert env in error.message
    for text in (error.message, str(error), repr(error), repr(adapter)):
        assert key not in text
    log = structlog.get_logger("uptax")
    log.warning("provider_auth_failed", provider=adapter.name, error=error, reason=error.message)
    log.info("adapter", adapter=adapter, headers=dict(reject_headers(key)))
    output = log_output.getvalue()
    assert "provider_auth_failed" in output
    assert key not in output
    await adapter.aclose()


def reject_headers(key: str) -> httpx.Headers:
    return httpx.Headers({"authorization": f"Bearer {key}", "x-request-id": "req_1"})


async def test_missing_key_is_reported_by_variable_name_only(
    log_output: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reason an adapter gives goes out as the provider actor emits it: no key, the name."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    adapter = build("anthropic")
    assert adapter.unavailable_reason == "ANTHROPIC_API_KEY is not set"
    EventBus().emit(
        "provider_unavailable", provider=adapter.name, reason=adapter.unavailable_reason
    )
    output = log_output.getvalue()
    assert "event='provider_unavailable'" in output
    assert "reason='ANTHROPIC_API_KEY is not set'" in output
    await adapter.aclose()
