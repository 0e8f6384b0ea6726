"""The debug console driven over its real socket against a real runtime (real time: sockets).

Nothing here sleeps to wait: every step waits on the console's reply, a `watch` line, or the
server's client count.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio
from repl_support import REPLY_TIMEOUT_S, ConsoleClient, open_console
from support import make_config

import runtime
from actors.errors import ConfigError
from actors.faults import Fault, FaultKind
from actors.messages import BreakerState
from runtime.demo import default_config_path
from runtime.embed import Runtime, open_runtime
from runtime.repl import ReplServer, open_repl_server, serve_repl
from runtime.repl.commands import COMMANDS, ROUTE_PROMPT

TOKEN = "t0ken-for-tests-0123456789abcdef"


@attrs.frozen
class Served:
    rt: Runtime
    server: ReplServer
    path: str


def socket_path(tmp_path: Path) -> str:
    return str(tmp_path / "repl" / "console.sock")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    path = socket_path(tmp_path)
    config = runtime.load_config(default_config_path())
    async with open_runtime(config) as rt, open_repl_server(rt, path) as server:
        yield Served(rt, server, path)


@pytest.fixture
async def client(served: Served) -> AsyncIterator[ConsoleClient]:
    async with open_console(served.path) as console:
        yield console


# -- serving, permissions -----------------------------------------------------------------------


async def test_open_runtime_serves_console_on_repl_socket_and_removes_it(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    async with open_runtime(runtime.load_config(default_config_path()), repl_socket=path) as rt:
        info = os.stat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        console = await ConsoleClient.connect(path)
        lines = await console.command("actors")
        assert {row.split()[0] for row in lines[1:]} == {a.name for a in rt.actors()}
        await console.aclose()
    assert not await trio.Path(path).exists()


async def test_repl_socket_from_config_runtime_table(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    config = make_config(runtime={"repl_socket": path})
    async with open_runtime(config):
        console = await ConsoleClient.connect(path)
        assert await console.command("help quit") == [
            "usage: quit",
            "  end this session (the runtime goes on)",
        ]
        await console.aclose()
    assert not await trio.Path(path).exists()


async def test_no_socket_when_console_not_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runtime.repl.server as server_module

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a console was opened without being asked for")

    monkeypatch.setattr(server_module._Listening, "open", refuse)
    monkeypatch.chdir(tmp_path)
    async with open_runtime(make_config()) as rt, open_repl_server(rt) as server:
        assert server.path is None and server.tcp_address is None
    assert list(await trio.Path(tmp_path).iterdir()) == []


async def test_serve_repl_runs_under_nursery_start(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    async with open_runtime(make_config()) as rt, trio.open_nursery() as nursery:
        server = await nursery.start(serve_repl, rt, path)
        assert server.path == path
        console = await ConsoleClient.connect(path)
        assert (await console.command("help quit"))[0] == "usage: quit"
        await console.aclose()
        nursery.cancel_scope.cancel()
    assert not await trio.Path(path).exists()


async def test_refuses_a_directory_others_can_open(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o755)
    async with open_runtime(make_config()) as rt:
        with pytest.raises(ConfigError, match=r"mode 0755, so others can open it.*chmod 700"):
            async with open_repl_server(rt, str(directory / "console.sock")):
                pass  # pragma: no cover
    assert list(directory.iterdir()) == []


async def test_refuses_a_path_that_is_not_a_socket_and_a_live_console(served: Served) -> None:
    other = os.path.join(os.path.dirname(served.path), "notes.txt")
    await trio.Path(other).write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        async with open_repl_server(served.rt, other):
            pass  # pragma: no cover
    assert await trio.Path(other).read_text() == "mine"
    with pytest.raises(ConfigError, match="in use by another running console"):
        async with open_repl_server(served.rt, served.path):
            pass  # pragma: no cover
    # The first console still serves.
    console = await ConsoleClient.connect(served.path)
    assert (await console.command("actors"))[0].startswith("NAME")
    await console.aclose()


async def test_replaces_a_stale_socket_file(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    os.makedirs(os.path.dirname(path), mode=0o700)
    stale = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await stale.bind(path)
    stale.close()  # a console that died without cleaning up
    async with open_runtime(make_config(), repl_socket=path):
        console = await ConsoleClient.connect(path)
        assert (await console.command("actors"))[0].startswith("NAME")
        await console.aclose()


# -- TCP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
async def test_tcp_refused_on_a_non_loopback_host(host: str) -> None:
    async with open_runtime(make_config()) as rt:
        with pytest.raises(ConfigError, match="loopback only"):
            async with open_repl_server(rt, tcp_port=0, token=TOKEN, tcp_host=host):
                pass  # pragma: no cover


@pytest.mark.parametrize("token", [None, "", "short"])
async def test_tcp_refused_without_a_real_token(token: str | None) -> None:
    async with open_runtime(make_config()) as rt:
        with pytest.raises(ConfigError, match="token"):
            async with open_repl_server(rt, tcp_port=0, token=token):
                pass  # pragma: no cover


async def test_tcp_needs_the_token_first() -> None:
    async with (
        open_runtime(make_config()) as rt,
        open_repl_server(rt, tcp_port=0, token=TOKEN) as server,
    ):
        assert server.tcp_address is not None
        host, port = server.tcp_address
        assert host == "127.0.0.1"

        intruder = await ConsoleClient.connect_tcp(host, port)
        await intruder.send("actors")
        reply = await intruder.read_reply()
        assert reply == type(reply)(["error: authentication failed"], None)
        assert await intruder.read_server_line() is None
        await intruder.aclose()

        wrong = await ConsoleClient.connect_tcp(host, port)
        await wrong.send("auth " + TOKEN[:-1] + "X")
        assert (await wrong.read_reply()).lines == ["error: authentication failed"]
        await wrong.aclose()

        friend = await ConsoleClient.connect_tcp(host, port)
        await friend.send("auth " + TOKEN)
        banner = await friend.read_reply()
        assert banner.prompt == "uptax> "
        assert "help" in banner.lines[0]
        assert (await friend.command("actors"))[0].startswith("NAME")
        await friend.aclose()


# -- commands -----------------------------------------------------------------------------------


async def test_banner_and_prompt(served: Served) -> None:
    console = await ConsoleClient.connect(served.path, greet=False)
    banner = await console.read_reply()
    assert banner.lines == [
        f"uptax debug console: {len(served.rt.actors())} actors; 'help' lists the commands",
        "times are seconds since the runtime started",
    ]
    assert banner.prompt == "uptax> "
    await console.aclose()


async def test_actors_lists_every_actor(served: Served, client: ConsoleClient) -> None:
    lines = await client.command("actors")
    assert lines[0].split() == [
        "NAME", "KIND", "STATE", "RESTARTS", "MAILBOX", "LAST", "MSG", "UP", "PARENT"
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert list(rows) == [info.name for info in served.rt.actors()]
    assert rows["openai"][1:5] == ["provider", "running", "0", "0"]
    assert rows["openai"][-1] == "providers"
    assert rows["router"][1] == "router"
    assert rows["root"][-1] == "-"
    # Columns line up: every row starts its KIND column where the header does.
    column = lines[0].index("KIND")
    assert all(line[column - 2 : column] == "  " for line in lines)


async def test_show_prints_the_full_snapshot(served: Served, client: ConsoleClient) -> None:
    lines = await client.command("show openai")
    text = "\n".join(lines)
    assert lines[0].split() == ["provider:", "openai"]
    assert "\nbreaker:\n  state:" in text
    assert "latency_p95_ms:" in text and "quota_remaining:" in text
    assert "models:               gpt-4o, gpt-4o-mini, o1-preview" in lines
    assert "available:            true" in lines
    assert (await client.command("show providers"))[:3] == [
        "name:               providers",
        "kind:               supervisor",
        "strategy:           one_for_one",
    ]


async def test_unknown_actor_and_command_list_what_exists(
    served: Served, client: ConsoleClient
) -> None:
    names = ", ".join(info.name for info in served.rt.actors())
    assert await client.command("show nobody") == [f"no actor 'nobody'; actors: {names}"]
    assert await client.command("heal nobody") == [f"no actor 'nobody'; actors: {names}"]
    assert await client.command("frobnicate now") == [
        f"unknown command 'frobnicate'; commands: {', '.join(COMMANDS)}"
    ]
    providers = ", ".join(i.name for i in served.rt.actors() if i.kind == "provider")
    assert await client.command("breaker router open") == [
        f"'router' is a router, not a provider; providers: {providers}"
    ]


async def test_bad_arguments_get_the_usage_line(client: ConsoleClient) -> None:
    assert await client.command("show") == [
        "error: show takes one actor name",
        "usage: show NAME",
    ]
    assert await client.command("breaker openai") == ["usage: breaker NAME open|close|reset|auto"]
    assert await client.command("breaker openai sideways") == [
        "error: unknown action 'sideways'; actions: open, close, reset, auto",
        "usage: breaker NAME open|close|reset|auto",
    ]
    assert (await client.command("fault openai meltdown"))[0].startswith(
        "error: unknown fault 'meltdown'; faults: outage, errors, latency,"
    )
    assert (await client.command("fault openai errors rate=lots"))[0] == (
        "error: rate='lots' is not a number"
    )
    assert (await client.command("fault openai errors speed=2"))[0] == (
        "error: bad fault argument 'speed=2'; arguments: rate=, factor=, retry_after_s=, "
        "status=, after_chunks=, delay_s=, rps="
    )
    assert await client.command("route hard") == [
        "error: 'hard' is no complexity, quality, cost tier or budget",
        "usage: route [complexity] [quality] [cost tier] [budget]",
    ]
    assert await client.command("watch 0") == [
        "error: bad count '0'",
        "usage: watch [COUNT] [EVENT...]",
    ]
    # Blank lines and comments answer with just the prompt.
    assert await client.command("") == []
    assert await client.command("# a comment") == []


async def test_route_prints_the_plan_with_reasons(served: Served, client: ConsoleClient) -> None:
    default = await client.command("route")
    assert default[0] == "plan for complexity=moderate quality=production budget=none:"
    expected = served.rt.plan(runtime.Request(prompt=ROUTE_PROMPT)).explain()
    assert default[1:] == [f"  {line}" for line in expected]

    lines = await client.command("route expert critical 0.001")
    assert lines[0] == "plan for complexity=expert quality=critical budget=0.001:"
    request = runtime.Request(
        prompt=ROUTE_PROMPT, complexity="expert", quality="critical", budget_usd=0.001)
    assert lines[1:] == [f"  {line}" for line in served.rt.plan(request).explain()]
    assert any("excluded" in line for line in lines), lines

    lines = await client.command("route expert draft low")
    assert lines[0] == "plan for complexity=expert quality=draft budget=none cost=low:"
    request = runtime.Request(prompt=ROUTE_PROMPT, complexity="expert", quality="draft", cost="low")
    assert lines[1:] == [f"  {line}" for line in served.rt.plan(request).explain()]
    assert any("cost low: gpt-4o is medium" in line for line in lines), lines


async def test_status_stats_and_alerts(served: Served, client: ConsoleClient) -> None:
    status = "\n".join(await client.command("status"))
    assert 0 <= float(status.split("\n")[0].removeprefix("at:")) < REPLY_TIMEOUT_S
    assert "\nproviders:\n  - name:" in status
    listed = re.findall(r"^  - name: +(\S+)$", status, flags=re.MULTILINE)
    assert listed == [provider.name for provider in served.rt.config.providers]
    assert "\nstats:\n  total_requests:" in status
    assert "\nrecommendations:" in status

    stats = "\n".join(await client.command("stats"))
    assert stats.startswith("stats:\n  total_requests:")
    assert "\nperformance:\n  PROVIDER     SAMPLES" in stats
    assert "\n  openai             0" in stats
    assert stats.endswith("\nrecommendations: all systems operating normally")
    assert "providers:" not in stats

    assert await client.command("alerts") == ["no alerts"]


async def test_breaker_fault_heal_and_restart_steer_the_runtime(
    served: Served, client: ConsoleClient
) -> None:
    rt = served.rt
    lines = await client.command("breaker openai open")
    assert lines[0] == "breaker openai: open"
    assert "  state:                 forced_open" in lines
    assert rt.snapshot("openai").breaker.state is BreakerState.FORCED_OPEN
    route = await client.command("route")
    assert any("excluded openai" in line for line in route), route

    await client.command("breaker openai auto")
    assert rt.snapshot("openai").breaker.state is BreakerState.CLOSED

    assert await client.command("fault anthropic outage status=500") == [
        "fault outage injected into anthropic (status=500)"
    ]
    assert rt.fault_target("anthropic").faults() == (Fault(FaultKind.OUTAGE, status=500),)
    assert await client.command("heal anthropic") == ["anthropic healed: every fault lifted"]
    assert rt.fault_target("anthropic").faults() == ()

    # The runtime refusing a steering call is reported, not raised.
    assert (await client.command("fault cache outage"))[0].startswith(
        "error: provider 'cache' (kind cache) takes no injected faults; faultable:"
    )

    before = next(i for i in rt.actors() if i.name == "gemini").restarts
    lines = await client.command("restart gemini")
    after = next(i for i in rt.actors() if i.name == "gemini")
    assert after.restarts == before + 1
    assert lines == [f"gemini restarted (restarts={after.restarts}, state={after.state})"]


async def test_help_lists_every_command(client: ConsoleClient) -> None:
    lines = await client.command("help")
    assert lines[0].split()[:2] == ["COMMAND", "WHAT"]
    assert [line.split()[0] for line in lines[1:]] == list(COMMANDS)
    assert await client.command("help nothing") == [
        f"error: unknown command 'nothing'; commands: {', '.join(COMMANDS)}",
        "usage: help [COMMAND]",
    ]


async def test_quit_ends_the_session_not_the_runtime(served: Served) -> None:
    console = await ConsoleClient.connect(served.path)
    await console.send("quit")
    reply = await console.read_reply()
    assert reply.prompt is None
    assert await console.read_server_line() is None
    await console.aclose()
    await served.server.wait_for_clients(0)
    again = await ConsoleClient.connect(served.path)
    assert (await again.command("actors"))[0].startswith("NAME")
    await again.aclose()


async def test_garbage_bytes_are_an_unknown_command(client: ConsoleClient) -> None:
    await client.stream.send_all(b"\xff\xfe\x00junk\n")
    reply = await client.read_reply()
    assert reply.lines == [f"unknown command '\ufffd\ufffd\\x00junk'; commands: {', '.join(COMMANDS)}"]
    assert reply.prompt == "uptax> "


async def test_too_long_a_line_ends_the_session(served: Served, client: ConsoleClient) -> None:
    await client.send("x" * (70 * 1024))
    reply = await client.read_reply()
    assert reply.lines == ["error: line longer than 65536 bytes"]
    assert reply.prompt is None
    await served.server.wait_for_clients(0)


# -- watch --------------------------------------------------------------------------------------


async def test_watch_streams_events_until_interrupted(
    served: Served, client: ConsoleClient
) -> None:
    await client.send("watch fault_")
    header = await client.read_output_line()
    assert header == "watching events matching fault_ (Ctrl-C to stop)"
    served.rt.inject_fault("mistral", Fault(FaultKind.LATENCY, factor=3.0))
    line = await client.read_output_line()
    # trio's clock starts anywhere; the console counts from the runtime's start.
    assert 0 <= float(line.split()[0].removeprefix("t=")) < REPLY_TIMEOUT_S
    assert line.split()[1:] == ["fault_injected", "provider=mistral", "fault=latency", "factor=3"]
    served.rt.heal("mistral")
    assert (await client.read_output_line()).split()[1:] == ["fault_healed", "provider=mistral"]
    await client.interrupt()
    reply = await client.read_reply()
    assert reply.lines == ["watch stopped"]
    assert reply.prompt == "uptax> "
    # The session goes on.
    assert (await client.command("actors"))[0].startswith("NAME")


async def test_watch_count_stops_by_itself(served: Served, client: ConsoleClient) -> None:
    await client.send("watch 1 breaker")
    await client.read_output_line()
    served.rt.set_breaker("openai", "open")
    reply = await client.read_reply()
    assert len(reply.lines) == 1
    assert reply.lines[0].split()[1:4] == ["breaker_overridden", "provider=openai", "old=closed"]
    # A stray Ctrl-C after the watch ended is ignored: the next command answers normally.
    await client.interrupt()
    assert (await client.command("help quit"))[0] == "usage: quit"


async def test_disconnect_mid_watch_leaves_the_runtime_serving(tmp_path: Path) -> None:
    path = socket_path(tmp_path)
    config = make_config(providers={"openai": {"latency_ms": 5}})
    async with open_runtime(config) as rt, open_repl_server(rt, path) as server:
        watcher = await ConsoleClient.connect(path)
        await watcher.send("watch")
        await watcher.read_output_line()
        assert len(rt.events._subscribers) == 1
        await watcher.aclose()
        await server.wait_for_clients(0)
        assert rt.events._subscribers == []
        rt.inject_fault("gemini", Fault(FaultKind.OUTAGE))  # emitting to nobody is fine
        reply = await rt.complete(runtime.Request(prompt="still there?"))
        assert reply.provider == "openai"
        console = await ConsoleClient.connect(path)
        assert (await console.command("heal gemini")) == ["gemini healed: every fault lifted"]
        await console.aclose()


async def test_half_closed_client_still_gets_its_answers(served: Served) -> None:
    stream = await trio.open_unix_socket(served.path)
    console = ConsoleClient(stream)
    await console.read_reply()
    await console.send("help quit")
    await console.send("watch")
    await console.send("help show")
    await stream.send_eof()
    assert (await console.read_reply()).lines[0] == "usage: quit"
    watch = await console.read_reply()
    assert watch.lines[0].startswith("watching events")
    assert (await console.read_reply()).lines[0] == "usage: show NAME"
    assert await console.read_server_line() is None
    await console.aclose()


async def test_two_clients_at_once(served: Served) -> None:
    first = await ConsoleClient.connect(served.path)
    second = await ConsoleClient.connect(served.path)
    assert served.server.clients == 2
    await first.send("watch fault_")
    await first.read_output_line()
    # While the first one watches, the second steers.
    assert await second.command("fault openai errors rate=0.5") == [
        "fault errors injected into openai (rate=0.5)"
    ]
    assert "fault_injected provider=openai fault=errors rate=0.5" in (
        await first.read_output_line()
    )
    assert await second.command("eval 6 * 7") == ["42"]
    await first.interrupt()
    assert (await first.read_reply()).lines == ["watch stopped"]
    await first.aclose()
    await second.aclose()
    await served.server.wait_for_clients(0)


# -- eval ---------------------------------------------------------------------------------------


async def test_eval_mode_with_top_level_await(served: Served, client: ConsoleClient) -> None:
    await client.send("eval")
    entered = await client.read_reply()
    assert entered.prompt == ">>> "
    assert await client.command("1 + 1") == ["2"]
    assert await client.command("names = [a.name for a in rt.actors()]") == []
    assert await client.command("len(names)") == [str(len(served.rt.actors()))]
    assert await client.command("await trio.sleep(0); 'awaited'") == ["'awaited'"]
    assert await client.command("_") == ["'awaited'"]
    assert await client.command("print('a', 'b', sep='-'); print('.hidden?')") == [
        "a-b",
        ".hidden?",
    ]
    assert await client.command("rt.snapshot('openai').provider") == ["'openai'"]
    assert await client.command("type(runtime.Request(prompt='p')).__name__") == ["'Request'"]

    await client.send("for i in range(2):")
    assert (await client.read_reply()).prompt == "... "
    await client.send("    print(i)")
    assert (await client.read_reply()).prompt == "... "
    await client.send("")
    assert await client.read_reply() == type(entered)(["0", "1"], ">>> ")

    await client.send(".")
    back = await client.read_reply()
    assert back.lines == ["back to commands"] and back.prompt == "uptax> "
    assert (await client.command("actors"))[0].startswith("NAME")


async def test_eval_errors_print_a_short_traceback_and_harm_nothing(
    served: Served, client: ConsoleClient
) -> None:
    await client.command("eval")
    lines = await client.command("def boom():\n")
    lines = await client.command("    return 1 / 0")
    lines = await client.command("")
    assert lines == []
    lines = await client.command("boom()")
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert "return 1 / 0" in "\n".join(lines)
    assert not any("repl" in line and ".py" in line for line in lines), lines

    lines = await client.command("await rt.restart('nobody')")
    assert lines[-1].startswith("runtime.kernel.registry.UnknownActor: no actor 'nobody'; actors: ")

    lines = await client.command("1 +")
    assert lines[-1].startswith("SyntaxError")
    assert (await client.command("exit()")) == ["back to commands"]
    # exit() must not have closed the runtime's stdin, and everything still runs.
    assert await client.command("eval 'alive'") == ["'alive'"]


async def test_eval_interrupt_cancels_a_long_await(client: ConsoleClient) -> None:
    await client.command("eval")
    await client.send("await trio.sleep_forever()")
    await client.interrupt()
    reply = await client.read_reply()
    assert reply.lines == ["KeyboardInterrupt"]
    assert reply.prompt == ">>> "
    assert await client.command("'next'") == ["'next'"]


async def test_eval_output_is_redacted(client: ConsoleClient) -> None:
    key = "sk-" + "A1b2C3d4E5f6G7h8I9j0"
    assert await client.command(f"eval print('key is', {key!r})") == ["key is sk-***"]


async def test_eval_cannot_read_the_runtime_stdin(client: ConsoleClient) -> None:
    lines = await client.command("eval input('? ')")
    assert lines[-1].startswith("RuntimeError: input() would read the runtime's own stdin")
