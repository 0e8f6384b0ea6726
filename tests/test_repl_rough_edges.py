"""The REPL's rough edges (issue 8 item 12): one clock for every command, `watch` refusing names
that match no event, scripted use failing on errors, `| head`, Tab completion of actor names,
Ctrl-D in eval mode, and bare `uptax`."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from repl_support import ConsoleClient, Served, open_console, open_served

import runtime
from actors.events import EVENT_NAMES
from runtime.kernel.events import EventBus
from runtime.kernel.registry import ActorInfo
from runtime.repl import client as repl_client
from runtime.repl.client import ConsoleConnection, _LineEditing, run
from runtime.repl.commands import Console
from runtime.repl.protocol import EVAL_PROMPT

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with open_served(tmp_path) as served:
        yield served


@pytest.fixture
async def client(served: Served) -> AsyncIterator[ConsoleClient]:
    async with open_console(served.path) as console:
        yield console


async def run_client(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await trio.to_thread.run_sync(
        lambda: run(argv, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    )
    return status, out.getvalue(), err.getvalue()


# --- route and show use one clock -------------------------------------------------------------


class _PlanningRuntime:
    """Just enough of a runtime for `route`: actors started at trio time 1000, and a plan whose
    reasons carry trio times, as the router writes them."""

    events = EventBus()

    def actors(self) -> Sequence[ActorInfo]:
        return [ActorInfo("router", "router", "running", 0, 0, None, 1000.0, "root")]

    def plan(self, request: runtime.Request) -> Any:
        class Plan:
            def explain(self) -> list[str]:
                return [
                    "primary excluded openai: breaker open until t=1012.5s",
                    "earliest half-open at t=1012.5s",
                ]

        return Plan()


async def test_route_shows_times_as_seconds_since_the_start_like_show() -> None:
    written: list[str] = []

    async def write(lines: Sequence[str]) -> None:
        written.extend(lines)

    console = Console(_PlanningRuntime(), write)  # type: ignore[arg-type]
    await console.run_line("route")
    assert written[1:] == [
        "  primary excluded openai: breaker open until t=12.5s",
        "  earliest half-open at t=12.5s",
    ]


# --- watch ------------------------------------------------------------------------------------


async def test_watch_refuses_a_name_no_event_has(client: ConsoleClient) -> None:
    await client.send("watch breaker_opend")
    reply = await client.read_reply()
    assert reply.failed
    assert reply.lines[0] == (
        f"error: no event matches 'breaker_opend'; events: {', '.join(EVENT_NAMES)}"
    )
    assert "breaker_opened" in reply.lines[0] and "request_failed" in reply.lines[0]
    # A part of a name still watches every event it is part of.
    await client.send("watch 1 fault_")
    assert await client.read_output_line() == "watching events matching fault_, stopping after 1 (Ctrl-C to stop)"


# --- scripted use fails on errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["foo", "show nobody", "route hard", "watch nothing_like_it", "eval 1/0", "eval )"]
)
async def test_dash_c_exits_non_zero_on_any_error(served: Served, command: str) -> None:
    status, out, err = await run_client([served.path, "-c", command])
    assert status == 1, (out, err)
    assert out


async def test_dash_c_runs_every_command_and_reports_the_failure(served: Served) -> None:
    status, out, _ = await run_client([served.path, "-c", "foo", "-c", "help quit"])
    assert status == 1
    assert out.splitlines()[-2:] == ["usage: quit", "  end this session (the runtime goes on)"]
    status, _, _ = await run_client([served.path, "-c", "actors", "-c", "help quit"])
    assert status == 0


async def test_status_piped_into_head_ends_without_a_traceback(served: Served) -> None:
    # Enough output to fill any pipe buffer, so writing it must hit the closed pipe.
    argv = [sys.executable, "-m", "runtime.cli", "repl", served.path]
    argv += ["-c", "status"] * 300

    def piped_into_head() -> tuple[int, bytes]:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=dict(os.environ)
        )
        assert process.stdout is not None and process.stderr is not None
        process.stdout.readline()
        process.stdout.close()  # what `head -1` does once it has its line
        err = process.stderr.read()
        return process.wait(timeout=120), err

    status, err = await trio.to_thread.run_sync(piped_into_head)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err
    assert status == repl_client.BROKEN_PIPE_STATUS


# --- the terminal client --------------------------------------------------------------------------


class _FakeReadline:
    def __init__(self, line: str) -> None:
        self.line = line

    def get_line_buffer(self) -> str:
        return self.line

    def get_begidx(self) -> int:
        return self.line.rfind(" ") + 1


def _completions(editing: _LineEditing, readline: _FakeReadline, line: str) -> list[str]:
    readline.line = line
    text = line[readline.get_begidx() :]
    found: list[str] = []
    while (match := editing.complete(text, len(found))) is not None:
        found.append(match)
    return found


async def test_tab_completes_actor_names(served: Served) -> None:
    def session() -> dict[str, str]:
        conn = ConsoleConnection.open(served.path)
        conn.read_reply(io.StringIO())
        conn.attached()
        try:
            return repl_client._actor_kinds(conn)
        finally:
            conn.close()

    actors = await trio.to_thread.run_sync(session)
    assert actors["openai"] == "provider" and actors["router"] == "router"
    readline = _FakeReadline("")
    editing = _LineEditing(readline)
    editing.actors = actors
    assert _completions(editing, readline, "show ro") == ["root ", "router "]
    assert _completions(editing, readline, "restart gem") == ["gemini "]
    # Provider commands offer providers only.
    assert _completions(editing, readline, "breaker ") == [
        f"{name} " for name, kind in actors.items() if kind == "provider"
    ]
    assert "router " not in _completions(editing, readline, "heal r")
    assert _completions(editing, readline, "breaker openai o") == ["open "]


@pytest.fixture
def no_line_editing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_LineEditing, "start", classmethod(lambda cls: None))
    yield


async def test_ctrl_d_in_eval_mode_goes_back_to_commands(
    served: Served, no_line_editing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    typed: list[str | None] = [
        *("eval", "x = 41", "for i in range(2):", None),
        *("eval", None),
        *("help quit", None),
    ]
    prompts: list[str] = []

    def fake_input(prompt: str) -> str:
        prompts.append(prompt)
        line = typed.pop(0)
        if line is None:
            raise EOFError
        return line

    monkeypatch.setattr("builtins.input", fake_input)

    def session() -> tuple[int, str]:
        conn = ConsoleConnection.open(served.path)
        prompt = conn.read_reply(io.StringIO())
        assert prompt is not None
        conn.attached()
        out = io.StringIO()
        try:
            return repl_client._run_terminal(conn, prompt, out), out.getvalue()
        finally:
            conn.close()

    status, out = await trio.to_thread.run_sync(session)
    assert status == 0, (prompts, out)
    # Ctrl-D at "... " drops the statement and leaves eval, at ">>> " it leaves eval, and at
    # "uptax> " it ends the client.
    assert prompts == [
        *("uptax> ", EVAL_PROMPT, EVAL_PROMPT, "... "),
        *("uptax> ", EVAL_PROMPT),
        *("uptax> ", "uptax> "),
    ]
    assert out.splitlines().count("back to commands") == 2
    assert "usage: quit" in out.splitlines()


# --- bare uptax -----------------------------------------------------------------------------------


def test_bare_uptax_exits_2_with_a_usage_naming_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from runtime.cli import COMMANDS, main

    assert main([]) == 2
    usage = capsys.readouterr().err
    for command in [*COMMANDS, "scenario run", "scenario check", "init", "help"]:
        assert f"  {command}" in usage
    assert main(["help"]) == 0
    assert capsys.readouterr().out == usage


def test_a_failed_line_ends_with_its_own_end_line() -> None:
    from runtime.repl.protocol import End, LineBuffer, encode_end, parse_server_line

    data = encode_end("uptax> ", failed=True) + encode_end("uptax> ")
    assert [parse_server_line(line) for line in LineBuffer().feed(data)] == [
        End("uptax> ", failed=True),
        End("uptax> "),
    ]
