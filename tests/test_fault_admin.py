"""Faults set on real-protocol providers: the fake server's admin endpoint over real HTTP, and
`rt.inject_fault` / `rt.heal` on an HTTP provider whose base_url is a fake server mount, both
in this trio run and in a separate `uptax fake-providers` process.

Real time (sockets): every wait is on a reply, with wide margins.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

import runtime
from actors.fault_admin import (
    AdminFaultTarget,
    FaultAdminError,
    fake_server_target,
    fault_from_json,
    fault_to_json,
)
from actors.faults import Fault, FaultKind
from runtime.embed import open_runtime
from runtime.testing import FakeProviderServer

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
REQUEST = runtime.Request(prompt="what is the capital of France", max_tokens=50)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)


def openai_then_simulated(openai_base_url: str) -> runtime.Config:
    """An HTTP openai provider first, a simulated backup second."""
    return runtime.parse_config(
        {
            "runtime": {"deadline_s": 30},
            "providers": [
                {
                    "name": "openai",
                    "kind": "openai",
                    "models": ["gpt-4o-mini"],
                    "base_url": openai_base_url,
                    "read_timeout_s": 10.0,
                    "breaker": {"consecutive_failures": 50, "minimum_calls": 100},
                },
                {"name": "backup", "kind": "simulated", "models": ["sim"], "latency_ms": 1},
            ],
            "levels": [
                {"name": "primary", "providers": ["openai"], "timeout_s": 10},
                {"name": "secondary", "providers": ["backup"], "timeout_s": 10},
            ],
            "models": {"gpt-4o-mini": {}, "sim": {}},
        }
    )


# -- the wire format -----------------------------------------------------------------------------


def test_a_fault_survives_its_json_form() -> None:
    fault = Fault(FaultKind.DROP_STREAM, after_chunks=3, status=502)
    assert fault_from_json(fault_to_json(fault)) == fault
    assert fault_from_json({"kind": "slow_drip"}) == Fault(FaultKind.SLOW_DRIP)


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ([], "JSON object"),
        ({"rate": 0.5}, "kind=None is not one of: outage, errors"),
        ({"kind": "flood"}, "kind='flood'"),
        ({"kind": "outage", "colour": 1}, "'colour' is not a fault field"),
        ({"kind": "outage", "status": "503"}, "status='503' must be a finite number"),
        ({"kind": "outage", "status": float("inf")}, "status=inf must be a finite number"),
        ({"kind": "outage", "status": 503.5}, "status=503.5 must be a whole number"),
    ],
)
def test_a_bad_fault_body_names_the_field(body: object, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        fault_from_json(body)


@pytest.mark.parametrize(
    ("base_url", "origin", "provider"),
    [
        ("http://127.0.0.1:8123/p/openai/v1", "http://127.0.0.1:8123", "openai"),
        ("http://localhost:8123/p/claude", "http://127.0.0.1:8123", "claude"),
        ("http://[::1]:8123/p/gem", "http://[::1]:8123", "gem"),
    ],
)
def test_a_fake_server_mount_is_recognised(base_url: str, origin: str, provider: str) -> None:
    target = fake_server_target(base_url)
    assert target is not None and (target.origin, target.provider) == (origin, provider)


@pytest.mark.parametrize(
    "base_url",
    [
        None,
        "https://api.openai.com/v1",
        "http://10.0.0.5:8123/p/openai/v1",  # not loopback: never a fake server
        "http://127.0.0.1:11434",  # a local Ollama, not a mount
        "http://127.0.0.1:8123/p/",
    ],
)
def test_other_urls_are_not_fake_servers(base_url: str | None) -> None:
    assert fake_server_target(base_url) is None


# -- the admin endpoint over real HTTP -----------------------------------------------------------


async def test_admin_endpoint_sets_lists_and_lifts_faults(
    fake_providers: FakeProviderServer,
) -> None:
    admin = f"{fake_providers.base_url}/_uptax/faults/openai"
    chat = f"{fake_providers.url_for('openai')}/chat/completions"
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        put = await client.put(admin, json={"kind": "rate_limit", "retry_after_s": 2})
        assert put.status_code == 200
        assert put.json() == {
            "provider": "openai",
            "faults": [fault_to_json(Fault(FaultKind.RATE_LIMIT, retry_after_s=2))],
        }
        assert fake_providers.target("openai").faults() == (
            Fault(FaultKind.RATE_LIMIT, retry_after_s=2),
        )
        limited = await client.post(chat, json=CHAT)
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "2")
        listed = await client.get(admin)
        assert [f["kind"] for f in listed.json()["faults"]] == ["rate_limit"]
        lifted = await client.delete(admin)
        assert lifted.json() == {"provider": "openai", "faults": []}
        assert (await client.post(chat, json=CHAT)).status_code == 200
        # Other providers never saw the fault.
        assert fake_providers.target("anthropic").faults() == ()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("PUT", "openai", {"kind": "outage", "colour": 1}, 400, "'colour' is not a fault field"),
        ("PUT", "openai", {"kind": "errors", "rate": 2}, 400, "rate=2.0 must be between 0 and 1"),
        ("PUT", "openai", None, 400, "JSON object"),
        ("PUT", "openai", b'{"kind": "latency", "factor": Infinity}', 400, "finite number"),
        ("PUT", "openai", b"{not json", 400, "the body is not JSON"),
        ("PUT", "nobody", {"kind": "outage"}, 404, "no fake provider named 'nobody'"),
        ("POST", "openai", {"kind": "outage"}, 405, "use PUT, DELETE or GET"),
    ],
)
async def test_admin_endpoint_refuses_bad_requests_clearly(
    fake_providers: FakeProviderServer,
    method: str,
    path: str,
    body: object,
    status: int,
    says: str,
) -> None:
    url = f"{fake_providers.base_url}/_uptax/faults/{path}"
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        if isinstance(body, bytes):
            answer = await client.request(method, url, content=body)
        else:
            answer = await client.request(method, url, json=body)
    assert answer.status_code == status
    assert says in answer.json()["error"]["message"]
    assert fake_providers.target("openai").faults() == ()


# -- rt.inject_fault on HTTP providers -----------------------------------------------------------


async def test_inject_fault_reaches_an_http_provider_on_a_fake_server(
    fake_providers: FakeProviderServer,
) -> None:
    async with open_runtime(openai_then_simulated(fake_providers.url_for("openai"))) as rt:
        assert (await rt.complete(REQUEST)).provider == "openai"
        rt.inject_fault("openai", Fault(FaultKind.OUTAGE, status=500))
        assert rt.fault_target("openai").faults() == (Fault(FaultKind.OUTAGE, status=500),)
        assert fake_providers.target("openai").faults() == (Fault(FaultKind.OUTAGE, status=500),)
        reply = await rt.complete(REQUEST)
        assert reply.provider == "backup"
        assert (reply.attempts[0].provider, reply.attempts[0].outcome) == ("openai", "server_error")
        rt.heal("openai")
        assert fake_providers.target("openai").faults() == ()
        assert (await rt.complete(REQUEST)).provider == "openai"


async def test_inject_fault_on_an_http_provider_elsewhere_still_says_it_takes_none() -> None:
    async with open_runtime(openai_then_simulated("https://api.openai.com/v1")) as rt:
        with pytest.raises(
            ValueError, match=r"'openai' .* takes no injected faults; faultable: ba"
        ):
            rt.inject_fault("openai", Fault(FaultKind.OUTAGE))


def _mount_line(output: bytes) -> str:
    """The complete `provider=openai kind=openai base_url=...` line printed so far, or ''."""
    lines = output.decode(errors="replace").split("\n")[:-1]
    return next((line for line in lines if line.startswith("provider=openai ")), "")


@pytest.fixture
async def shell_server() -> AsyncIterator[str]:
    """`uptax fake-providers` in its own process, as started from a shell: its openai base_url."""
    command = [sys.executable, "-m", "runtime.cli", "fake-providers", "--providers", "openai"]
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    try:
        output = b""
        with trio.fail_after(60):
            while not (mount := _mount_line(output)):
                chunk = await process.stdout.receive_some()
                assert chunk, f"fake-providers exited early: {output!r}"
                output += chunk
        yield mount.partition(" base_url=")[2]
    finally:
        process.kill()
        with trio.move_on_after(30):
            await process.wait()


async def test_inject_fault_reaches_a_fake_server_started_from_a_shell(shell_server: str) -> None:
    async with open_runtime(openai_then_simulated(shell_server)) as rt:
        target = rt.fault_target("openai")
        assert isinstance(target, AdminFaultTarget)
        rt.inject_fault("openai", Fault(FaultKind.RATE_LIMIT, retry_after_s=30))
        assert target.faults() == (Fault(FaultKind.RATE_LIMIT, retry_after_s=30),)
        reply = await rt.complete(REQUEST)
        assert reply.provider == "backup"
        assert reply.attempts[0].provider == "openai"
        assert reply.attempts[0].outcome == "rate_limited"
        rt.heal("openai")
        assert target.faults() == ()
        with pytest.raises(FaultAdminError, match=r"rate=2\.0 must be between 0 and 1"):
            rt.inject_fault("openai", Fault(FaultKind.ERRORS, rate=2.0))


def test_an_unreachable_fake_server_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = fake_server_target(f"http://127.0.0.1:{port}/p/openai/v1")
    assert target is not None
    with pytest.raises(FaultAdminError, match=f"127.0.0.1:{port} did not answer PUT"):
        target.inject(Fault(FaultKind.OUTAGE))
