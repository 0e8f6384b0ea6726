"""The provider-kind table is the one list of kinds: config, stats, the fake server and the
adapter registry agree with it, and a new wire format plugs in with one class and one line."""

from __future__ import annotations

import importlib
from typing import Any

import httpx
import pytest
from adapter_support import AdapterTestContext, body_of

import actors.config
import actors.kinds
from actors.adapters.base import ADAPTER_KINDS
from actors.adapters.http import HTTPAdapter, register_wire
from actors.adapters.sse import SSEDecoder, SSEEvent
from actors.adapters.wire import Deltas, RequestShape, StreamState, WireDefaults, WireRequest
from actors.config import ProviderConfig
from actors.kinds import HTTP_KINDS, KINDS, KNOWN_KINDS, LAST_RESORT_KINDS, kind_named
from actors.messages import Completion, Request
from runtime.testing import protocols


def test_config_and_the_fake_server_read_the_table() -> None:
    assert actors.config.KNOWN_KINDS == KNOWN_KINDS == {kind.name for kind in KINDS}
    assert actors.config.LAST_RESORT_KINDS == LAST_RESORT_KINDS == {"cache", "template"}
    assert protocols.KINDS == HTTP_KINDS
    assert {"openai", "mistral", "huggingface"} == protocols.OPENAI_FORMAT_KINDS
    for name in HTTP_KINDS:
        assert type(protocols.wire_for(name)).__name__.lower() == f"{kind_named(name).wire}wire"


def test_every_kind_is_registered_by_the_module_the_table_names() -> None:
    for kind in KINDS:
        importlib.import_module(kind.module)
        assert kind.name in ADAPTER_KINDS


@pytest.mark.parametrize("name", sorted(HTTP_KINDS))
def test_http_kinds_default_to_the_tables_url_and_key(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = kind_named(name)
    importlib.import_module(kind.module)
    if kind.api_key_env:
        monkeypatch.setenv(kind.api_key_env, "test-key-0123456789")
    adapter = ADAPTER_KINDS[name](ProviderConfig("p", name, ("m",)), AdapterTestContext())
    assert isinstance(adapter, HTTPAdapter)
    assert (adapter.base_url, adapter.key_env) == (kind.base_url, kind.api_key_env)


def test_an_unknown_kind_names_the_choices() -> None:
    with pytest.raises(ValueError, match="kind='grok' is not one of: anthropic, cache"):
        kind_named("grok")


class EchoWire(WireDefaults):
    """A fifth wire format, as small as one can be."""

    name = "echo"
    reply_name = "an echo reply"
    end_marker = "end"

    def build_request(
        self, request: Request, model: str, shape: RequestShape, *, stream: bool
    ) -> WireRequest:
        return WireRequest("/echo", {"model": model, "say": request.prompt, "stream": stream})

    def parse_reply(self, data: Any, model: str) -> Completion:
        return Completion(text=data["said"], model=model, raw_finish_reason=data["why"])

    def stream_decoder(self) -> SSEDecoder:
        return SSEDecoder()

    def parse_event(self, item: SSEEvent, state: StreamState) -> Deltas:
        if item.data == "end":
            state.done = state.ended = True
            return []
        return state.add_text(item.data)


async def test_a_fifth_wire_format_is_one_class_and_one_table_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = actors.kinds.ProviderKind(
        "echo", "http", __name__, "echo", "https://echo.example", "ECHO_KEY"
    )
    monkeypatch.setattr(actors.kinds, "KINDS", (*KINDS, line))
    monkeypatch.setattr(actors.config, "KNOWN_KINDS", KNOWN_KINDS | {"echo"})
    monkeypatch.setitem(ADAPTER_KINDS, "echo", ADAPTER_KINDS["openai"])  # restored afterwards
    monkeypatch.setenv("ECHO_KEY", "echo-key-0123456789")
    register_wire(EchoWire())

    async def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer echo-key-0123456789"
        return httpx.Response(200, json={"said": f"you said {body_of(request)['say']}", "why": "x"})

    config = ProviderConfig("e", "echo", ("m",))
    adapter = ADAPTER_KINDS["echo"](config, AdapterTestContext(httpx.MockTransport(answer)))
    completion = await adapter.complete(Request("hi"), "m")
    await adapter.aclose()
    assert (completion.text, completion.finish_reason) == ("you said hi", "stop")
