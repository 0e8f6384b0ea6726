"""`uptax scenario run FILE --mode http --serve PORT`: the gateway serves the very runtime the
scenario drives, for the whole run.

The command runs as a real child process, in real time, on a scenario a few seconds long: while
it runs, the gateway answers on the port it printed and its admin API shows the scenario's own
runtime (its providers turned into their wire protocols, the outage the scenario injects); after
it, the report is printed and the exit code is the report's. With stdin on a terminal the gateway
keeps serving the final state until Ctrl-C, the dashboard's history holding every request of the
run. The usage errors are checked in-process.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from support import quick_demo_config

from runtime.embed import open_runtime
from runtime.gateway import server
from runtime.gateway.server import serve_runtime
from runtime.scenario import cli
from runtime.scenario.format import load_scenario

ADMIN_KEY = "admin-key-for-the-serve-test"
#: OpenAI, alone on the primary level so every request tries it first, is down from 0.5 s to the
#: end: its breaker opens during the run and stays away from closed. Quick providers keep the
#: run short.
SCENARIO = """
[scenario]
name = "served-outage"
description = "openai down from half a second on, served by the gateway"
base = "demo"
seed = 5
drain_s = 30

[[providers]]
name = "openai"
latency_ms = 50

[[providers]]
name = "anthropic"
latency_ms = 50

[[levels]]
name = "primary"
providers = ["openai"]
timeout_s = 30

[[levels]]
name = "secondary"
providers = ["anthropic"]
timeout_s = 30

[[levels]]
name = "last_resort"
providers = ["cache", "templates"]
timeout_s = 10

[load]
rps = 10
duration_s = 2.5

[[faults]]
at_s = 0.5
provider = "openai"
kind = "outage"

[expect]
lost_requests_max = 0
"""
DASHBOARD = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+)/dashboard\r?\n")
HOLDING = "Ctrl-C to stop"
#: Real time on a busy 2-core machine: the run takes ~4 s alone; allow far more.
RUN_S = 60


def _scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "served.toml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


def _command(scenario: Path, report: Path) -> list[str]:
    return [
        sys.executable, "-m", "runtime.cli", "scenario", "run", str(scenario),
        "--mode", "http", "--serve", "0", "--json", str(report),
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "UPTAX_ADMIN_KEY": ADMIN_KEY}


def _default_sigint() -> None:
    """Background test runs ignore SIGINT, and a child inherits that: give it the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _Output:
    """What a child has written to one stream so far, waited on by pattern."""

    def __init__(self) -> None:
        self.text = ""
        self._grew = trio.Event()

    async def pump(self, stream: trio.abc.ReceiveStream) -> None:
        async with stream:
            try:
                async for chunk in stream:
                    self.text += chunk.decode(errors="replace")
                    self._grew.set()
                    self._grew = trio.Event()
            except trio.BrokenResourceError:  # a pty's reader sees EIO once the child has gone
                pass

    async def wait_for(self, pattern: re.Pattern[str] | str) -> re.Match[str]:
        found = re.compile(pattern).search(self.text)
        while found is None:
            await self._grew.wait()
            found = re.compile(pattern).search(self.text)
        return found


def _admin() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN_KEY}"}


async def _status(http: httpx.AsyncClient) -> dict[str, Any]:
    answer = await http.get("/admin/status", headers=_admin())
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


async def _until_openai_trips(http: httpx.AsyncClient) -> dict[str, Any]:
    """The status once the scenario's outage has opened OpenAI's breaker."""
    while True:
        status = await _status(http)
        breakers = {p["name"]: p["breaker"] for p in status["providers"]}
        if breakers["openai"] != "closed":
            return status
        await trio.sleep(0.05)


async def _dashboard_once_counted(http: httpx.AsyncClient, issued: int) -> dict[str, Any]:
    """The dashboard's state once its history has sampled all `issued` requests."""
    login = await http.post(
        "/dashboard/api/session",
        json={"key": ADMIN_KEY, "operator": "test"},
        headers={"x-uptax-dashboard": "1"},
    )
    assert login.status_code == 204, login.text
    while True:
        answer = await http.get("/dashboard/api/state")
        assert answer.status_code == 200, answer.text
        state: dict[str, Any] = answer.json()
        if state["status"] and state["status"]["totals"]["requests"] == issued:
            return state
        await trio.sleep(0.2)


async def _gone(base_url: str) -> bool:
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        try:
            await http.get("/healthz")
        except httpx.TransportError:
            return True
    return False


async def test_the_gateway_serves_the_scenarios_runtime_while_it_runs(tmp_path: Path) -> None:
    scenario_file, report_file = _scenario_file(tmp_path), tmp_path / "report.json"
    scenario = load_scenario(scenario_file)
    out, err = _Output(), _Output()
    process = await trio.lowlevel.open_process(
        _command(scenario_file, report_file),
        stdin=subprocess.DEVNULL,  # not a terminal: no holding on after the report
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(out.pump, process.stdout)
            nursery.start_soon(err.pump, process.stderr)
            with trio.fail_after(RUN_S):
                base_url = (await err.wait_for(DASHBOARD))[1]
                async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
                    health = await http.get("/healthz")
                    assert health.json() == {"status": "alive"}
                    status = await _until_openai_trips(http)
                    metrics = await http.get("/metrics")
                returncode = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
    # The scenario's own runtime: its providers, the simulated ones speaking their protocols.
    kinds = {p["name"]: p["kind"] for p in status["providers"]}
    assert list(kinds) == [p.name for p in scenario.config.providers]
    assert {name: kinds[name] for name in scenario.http_kinds} == dict(scenario.http_kinds)
    assert metrics.status_code == 200
    for name in kinds:
        assert f'uptax_breaker_state{{provider="{name}",state="closed"}}' in metrics.text
    # The report as without --serve, and the exit code its verdict.
    assert "Traceback" not in err.text, err.text
    assert "served-outage" in out.text and "PASSED" in out.text
    assert json.loads(await trio.Path(report_file).read_text())["passed"] is True
    assert returncode == cli.EXIT_PASSED, err.text
    assert await _gone(base_url)


@contextlib.contextmanager
def _pty() -> Iterator[tuple[int, int]]:
    leader, follower = pty.openpty()
    try:
        yield leader, follower
    finally:
        os.close(leader)
        os.close(follower)


async def test_on_a_terminal_it_serves_the_final_state_until_ctrl_c(tmp_path: Path) -> None:
    scenario_file, report_file = _scenario_file(tmp_path), tmp_path / "report.json"
    terminal = _Output()
    with _pty() as (leader, follower):
        await _hold_then_interrupt(scenario_file, report_file, terminal, leader, follower)


async def _hold_then_interrupt(
    scenario_file: Path, report_file: Path, terminal: _Output, leader: int, follower: int
) -> None:
    process = await trio.lowlevel.open_process(
        _command(scenario_file, report_file),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=_env(),
        preexec_fn=_default_sigint,
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(terminal.pump, trio.lowlevel.FdStream(os.dup(leader)))
            with trio.fail_after(RUN_S):
                base_url = (await terminal.wait_for(DASHBOARD))[1]
                await terminal.wait_for(HOLDING)
            report = json.loads(await trio.Path(report_file).read_text())
            assert "PASSED" in terminal.text
            # Still up after the report: the final picture, every request of the run counted,
            # by the runtime and by the dashboard's history of it.
            issued = report["requests"]["issued"]
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
                status = await _status(http)
                with trio.fail_after(RUN_S):
                    state = await _dashboard_once_counted(http, issued)
            assert status["stats"]["total_requests"] == issued > 0
            names = [provider["name"] for provider in status["providers"]]
            assert [provider["name"] for provider in state["providers"]] == names
            assert sum(sample["traffic"]["requests"] for sample in state["samples"]) == issued
            assert process.returncode is None
            process.send_signal(signal.SIGINT)
            with trio.fail_after(30):
                returncode = await process.wait()
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
    assert returncode == cli.EXIT_PASSED, terminal.text
    assert "Traceback" not in terminal.text and "interrupted" not in terminal.text
    assert await _gone(base_url)


def test_serving_a_virtual_time_run_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario_file = _scenario_file(tmp_path)
    assert cli.main(["run", str(scenario_file), "--serve", "0"]) == cli.EXIT_BAD_INPUT
    assert "--serve needs --mode http" in capsys.readouterr().err
    assert cli.main(["run", str(scenario_file), "--host", "127.0.0.1"]) == cli.EXIT_BAD_INPUT
    assert "--host is only for --serve" in capsys.readouterr().err
    args = ["run", str(scenario_file), "--mode", "http", "--serve", "70000"]
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    assert "--serve: '70000' is not a port" in capsys.readouterr().err


def test_serving_off_loopback_without_a_key_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UPTAX_MASTER_KEY", raising=False)
    args = ["run", str(_scenario_file(tmp_path)), "--mode", "http", "--serve", "0"]
    assert cli.main([*args, "--host", "0.0.0.0"]) == cli.EXIT_BAD_INPUT
    assert "would answer anyone" in capsys.readouterr().err


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_a_busy_port_is_named_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], busy_port: int, own_logging: None
) -> None:
    args = ["run", str(_scenario_file(tmp_path)), "--mode", "http", "--serve", str(busy_port)]
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    assert f"--serve: cannot listen on 127.0.0.1:{busy_port}" in capsys.readouterr().err
    assert server.main(["--port", str(busy_port)]) == 1
    assert f"uptax serve: cannot listen on 127.0.0.1:{busy_port}" in capsys.readouterr().err


async def test_serve_runtime_serves_an_open_runtime_and_closes_it_for_requests() -> None:
    ask = {"model": "gpt-4o", "messages": [{"role": "user", "content": "VAT on books?"}]}
    async with open_runtime(quick_demo_config()) as rt:
        async with serve_runtime(rt) as gateway:
            assert gateway.rt is rt
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
                answer = await http.post("/v1/chat/completions", json=ask)
            assert answer.status_code == 200, answer.text
            assert rt.status().stats.total_requests == 1
        # The gateway was the runtime's last user: the runtime takes no more requests.
        assert rt.cascade.closed
