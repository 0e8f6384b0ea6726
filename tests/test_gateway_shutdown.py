"""SIGTERM and SIGINT on `uptax serve` (a real child process): it stops accepting, the request
that can finish within `shutdown_grace_s` is answered, the one that cannot ends in a 503 saying
the gateway is shutting down, and the process exits 0. Nothing is dropped silently."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

GRACE_S = 3.0
CONFIG = f"""
[supervision]
shutdown_grace_s = {GRACE_S}

[[providers]]
name = "quick"
kind = "simulated"
models = ["gpt-4o"]
latency_ms = 1000
latency_jitter = 0.0
error_rate = 0.0

[[providers]]
name = "slow"
kind = "simulated"
models = ["claude-sonnet"]
latency_ms = 60000
latency_jitter = 0.0
error_rate = 0.0

[[levels]]
name = "primary"
providers = ["quick", "slow"]
timeout_s = 100
"""
ASK = [{"role": "user", "content": "What is the VAT rate on books?"}]


def _default_sigint() -> None:
    """Background test runs ignore SIGINT, and a child inherits that: give it the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _start(config: Path) -> tuple[trio.Process, str]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "runtime.cli", "serve", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=_default_sigint,
    )
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(60):
        while b"serving on " not in seen or not seen.endswith(b"\n"):
            chunk = await process.stdout.receive_some(4096)
            assert chunk, f"uptax serve exited early: {seen!r}"
            seen += chunk
    return process, seen.decode().split("serving on ", 1)[1].split()[0]


async def _in_flight(http: httpx.AsyncClient, count: int) -> None:
    """Until the gateway is answering `count` requests (its metrics say so): one it has not
    read yet when the signal comes is no request of its, and its connection is just closed.
    A fixed sleep was not always enough on a busy machine."""
    with trio.fail_after(30):
        while True:
            metrics = (await http.get("/metrics")).text
            if f"uptax_requests_in_flight {count:.1f}" in metrics.splitlines():
                return
            await trio.sleep(0.05)  # another process's state: no event to wait on


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_lets_requests_finish_then_ends_the_rest_with_503(
    tmp_path: Path, signum: signal.Signals
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    process, base_url = await _start(config)
    answers: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:

            async def ask(name: str, model: str, stream: bool = False) -> None:
                body = {"model": model, "messages": ASK, "stream": stream}
                answers[name] = await http.post("/v1/chat/completions", json=body)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask, "quick", "gpt-4o")
                nursery.start_soon(ask, "slow", "claude-sonnet")
                nursery.start_soon(ask, "slow stream", "claude-sonnet", True)
                await _in_flight(http, 3)
                signalled = trio.current_time()
                process.send_signal(signum)
                await trio.sleep(0.3)
                async with httpx.AsyncClient(base_url=base_url, timeout=10) as late:
                    with pytest.raises(httpx.TransportError):  # no longer accepting
                        await late.get("/healthz")
            ended = trio.current_time() - signalled
        with trio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert answers["quick"].status_code == 200
    assert answers["quick"].headers["x-uptax-provider"] == "quick"
    slow = answers["slow"]
    assert slow.status_code == 503, slow.text
    assert json.loads(slow.text)["error"]["message"] == "the gateway is shutting down"
    assert slow.headers["retry-after"]
    # The stream had begun (its role chunk), so it ends with the in-band error event.
    stream = answers["slow stream"]
    assert stream.status_code == 200
    events = [line[6:] for line in stream.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["message"] == "the gateway is shutting down"
    assert GRACE_S - 0.5 < ended < GRACE_S + 10
