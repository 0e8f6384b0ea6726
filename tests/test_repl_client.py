"""`uptax repl PATH` against a real runtime's console: scripted stdin, -c, errors, Ctrl-C.

The client is blocking, so it runs in a worker thread while the runtime serves in the test's trio
run; each test waits on the client's return, never on a sleep.
"""

from __future__ import annotations

import io
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio
from repl_support import Served, open_served
from support import make_config

from runtime.embed import open_runtime
from runtime.repl import open_repl_server
from runtime.repl.client import ConsoleConnection, run

TOKEN = "t0ken-for-tests-0123456789abcdef"


@attrs.frozen
class Result:
    status: int
    out: str
    err: str


async def run_client(argv: list[str], stdin: str = "") -> Result:
    out, err = io.StringIO(), io.StringIO()
    status = await trio.to_thread.run_sync(
        lambda: run(argv, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    )
    return Result(status, out.getvalue(), err.getvalue())


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with open_served(tmp_path) as served:
        yield served


async def test_piped_stdin_runs_one_command_per_line(served: Served) -> None:
    result = await run_client([served.path], "actors\nbreaker openai open\nroute\n")
    assert result.status == 0, result.err
    assert result.err == ""
    lines = result.out.splitlines()
    # No banner and no prompts in scripted use: only the commands' output.
    assert lines[0].startswith("NAME ")
    assert "breaker openai: open" in lines
    assert any("excluded openai" in line for line in lines)
    assert served.rt.snapshot("openai").breaker.state.value == "forced_open"


async def test_piped_eval_session(served: Served) -> None:
    script = "eval\nx = 20\nx + 22\nfor i in range(2):\n    print('row', i)\n\n.\nhelp quit\n"
    result = await run_client([served.path], script)
    assert result.status == 0, result.err
    assert result.out.splitlines() == [
        "Python eval mode: rt, trio, runtime and actors are in scope; top-level await works.",
        "A line 'exit' or '.' goes back to commands.",
        "42",
        "row 0",
        "row 1",
        "back to commands",
        "usage: quit",
        "  end this session (the runtime goes on)",
    ]


async def test_dash_c_commands_and_quit(served: Served) -> None:
    result = await run_client([served.path, "-c", "heal openai", "-c", "quit", "-c", "actors"])
    assert result.status == 0, result.err
    assert result.out == "openai healed: every fault lifted\n"


async def test_unknown_command_is_output_and_a_failed_status(served: Served) -> None:
    # Issue 8 item 12: scripted use exits non-zero on an unknown command (it was 0).
    result = await run_client([served.path], "bogus\n")
    assert result.status == 1
    assert result.out.startswith("unknown command 'bogus'; commands: actors, show, route")


async def test_cannot_connect_says_why(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.sock")
    result = await run_client([missing], "actors\n")
    assert result.status == 1
    assert result.out == ""
    assert result.err == (
        f"uptax repl: no console at {missing} (is a runtime running with repl_socket={missing}?)\n"
    )

    stale = str(tmp_path / "stale.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(stale)
    sock.close()
    result = await run_client([stale])
    assert result.status == 1
    assert "nothing is serving" in result.err

    result = await run_client(["tcp://10.1.2.3:7000"])
    assert result.status == 1
    assert "loopback only" in result.err


async def test_bad_usage_is_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    result = await run_client([])
    assert result.status == 2


async def test_tcp_with_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async with (
        open_runtime(make_config()) as rt,
        open_repl_server(rt, tcp_port=0, token=TOKEN) as server,
    ):
        assert server.tcp_address is not None
        host, port = server.tcp_address
        target = f"tcp://{host}:{port}"

        monkeypatch.delenv("UPTAX_REPL_TOKEN", raising=False)
        result = await run_client([target], "actors\n")
        assert result.status == 1
        assert "needs a token: set UPTAX_REPL_TOKEN or pass --token-file" in result.err

        monkeypatch.setenv("UPTAX_REPL_TOKEN", "wrong-token-wrong-token")
        result = await run_client([target], "actors\n")
        assert result.status == 1
        assert result.err == "uptax repl: error: authentication failed\n"

        monkeypatch.setenv("UPTAX_REPL_TOKEN", TOKEN)
        result = await run_client([target], "help quit\n")
        assert (result.status, result.out) == (0, "usage: quit\n  end this session (the runtime goes on)\n")

        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n")
        monkeypatch.delenv("UPTAX_REPL_TOKEN")
        result = await run_client([target, "--token-file", str(token_file)], "help quit\n")
        assert result.status == 0, result.err


class PressedCtrlC:
    """Stands in for `CtrlC` in a worker thread: Ctrl-C has already been pressed."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._writer.send(bytes([signal.SIGINT]))

    def fileno(self) -> int:
        return self._reader.fileno()

    def take(self) -> bool:
        return signal.SIGINT in self._reader.recv(16)

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


async def test_ctrl_c_stops_watch_not_the_client(served: Served) -> None:
    def session() -> tuple[str | None, str, str | None, str]:
        conn = ConsoleConnection.open(served.path)
        conn.read_reply(io.StringIO())
        conn.attached()
        ctrl_c = PressedCtrlC()
        watch_out = io.StringIO()
        try:
            conn.send("watch")
            prompt = conn.read_reply(watch_out, ctrl_c)
        finally:
            ctrl_c.close()
        after = io.StringIO()
        conn.send("help quit")
        next_prompt = conn.read_reply(after)
        conn.close()
        return prompt, watch_out.getvalue(), next_prompt, after.getvalue()

    prompt, watched, next_prompt, after = await trio.to_thread.run_sync(session)
    assert watched.endswith("watch stopped\n")
    assert prompt == next_prompt == "uptax> "
    assert after.startswith("usage: quit\n")
