"""`uptax repl PATH`: attach to a running runtime's debug console.

Plain blocking sockets: the client does one thing at a time (send a line, print the answer), so
it needs no event loop. On a terminal it edits lines and keeps history with the stdlib `readline`;
with piped stdin it runs one command per line and exits at end of input, so it can be scripted.
Ctrl-C while an answer streams (`watch`, a long `await` in eval) stops that answer, not the client.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import select
import signal
import socket
import sys
import threading
from collections.abc import Iterable
from types import FrameType, TracebackType
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

from actors.faults import FaultKind
from runtime.repl.commands import BREAKER_ACTIONS, COMMANDS
from runtime.repl.protocol import (
    AUTH_PREFIX,
    COMMAND_PROMPT,
    CONTINUATION_PROMPT,
    EVAL_PROMPT,
    INTERRUPT,
    Bye,
    End,
    LineBuffer,
    LineTooLong,
    encode_line,
    parse_server_line,
)

TOKEN_ENV = "UPTAX_REPL_TOKEN"
HISTORY_FILE = "~/.uptax_history"
HISTORY_LENGTH = 1000
#: How long connecting, and the console's greeting, may take before we say it isn't answering.
CONNECT_TIMEOUT_S = 5.0


class ReplClientError(Exception):
    """Why the client could not attach; the message is for the user."""


class ConnectionLost(Exception):
    """The console closed the connection in the middle of an answer."""


class Output(Protocol):
    """Where answers are printed: stdout, or anything with `write` and `flush`."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class Interrupts(Protocol):
    """Where Ctrl-C presses are noticed while the client waits for an answer."""

    def fileno(self) -> int: ...

    def take(self) -> bool:
        """Whether Ctrl-C was pressed since the last call."""
        ...


class CtrlC:
    """While entered, Ctrl-C becomes a byte on a socket `select` can wait on, not an exception.

    `signal.set_wakeup_fd` is the only race-free way to wake a blocking `select` on a signal: an
    exception raised inside `recv` could lose data already read from the console.
    """

    def __enter__(self) -> CtrlC:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._old_wakeup = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        signal.signal(signal.SIGINT, self._old_handler)
        signal.set_wakeup_fd(self._old_wakeup)
        self._reader.close()
        self._writer.close()

    @staticmethod
    def _on_sigint(signum: int, frame: FrameType | None) -> None:
        """Nothing to do here: the wakeup fd carries the news to `select`."""

    def fileno(self) -> int:
        return self._reader.fileno()

    def take(self) -> bool:
        pressed = False
        while True:
            try:
                data = self._reader.recv(512)
            except BlockingIOError:
                return pressed
            if not data:
                return pressed
            pressed = pressed or signal.SIGINT in data


class ConsoleConnection:
    """One attached session: send a line, read the answer up to its end line."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = LineBuffer()
        self._lines: list[str] = []
        #: Whether the console said the last line failed.
        self.failed = False

    @classmethod
    def open(cls, target: str, token: str | None = None) -> ConsoleConnection:
        """Connect to a socket path or `tcp://HOST:PORT`; raises `ReplClientError`."""
        tcp = target.startswith("tcp://")
        sock = _connect_tcp(target, token) if tcp else _connect_unix(target)
        sock.settimeout(CONNECT_TIMEOUT_S)
        return cls(sock)

    def attached(self) -> None:
        """The greeting has arrived: from now on answers may take as long as they take."""
        self._sock.settimeout(None)

    def send(self, line: str) -> None:
        try:
            self._sock.sendall(encode_line(line))
        except OSError as exc:
            raise ConnectionLost(str(exc)) from None

    def read_reply(self, out: Output, interrupts: Interrupts | None = None) -> str | None:
        """Print the answer as it arrives; return the next prompt, or None if the console said bye.

        `failed` tells afterwards whether the console said the line failed.

        A Ctrl-C noticed through `interrupts` is passed on to the console, which stops the
        running command and ends its answer as usual.
        """
        while True:
            if not self._lines:
                out.flush()
                self._receive(interrupts)
            line = parse_server_line(self._lines.pop(0))
            if isinstance(line, End):
                out.flush()
                self.failed = line.failed
                return line.prompt
            if isinstance(line, Bye):
                out.flush()
                return None
            out.write(line.text + "\n")

    def _receive(self, interrupts: Interrupts | None) -> None:
        while not self._lines:
            if interrupts is not None:
                sock_fd, interrupt_fd = self._sock.fileno(), interrupts.fileno()
                readable, _, _ = select.select([sock_fd, interrupt_fd], [], [])
                if interrupt_fd in readable and interrupts.take():
                    self.send(INTERRUPT)
                if sock_fd not in readable:
                    continue
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                raise ReplClientError("no answer from the console (is it an uptax console?)") from None
            except OSError as exc:
                raise ConnectionLost(str(exc)) from None
            if not data:
                raise ConnectionLost("the console closed the connection")
            try:
                self._lines.extend(self._buffer.feed(data))
            except LineTooLong as exc:
                raise ConnectionLost(str(exc)) from None

    def close(self) -> None:
        self._sock.close()


def _connect_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT_S)
    try:
        sock.connect(path)
    except FileNotFoundError:
        sock.close()
        raise ReplClientError(
            f"no console at {path} (is a runtime running with repl_socket={path}?)"
        ) from None
    except ConnectionRefusedError:
        sock.close()
        raise ReplClientError(
            f"nothing is serving {path} (a socket left by a stopped runtime?)"
        ) from None
    except PermissionError:
        sock.close()
        raise ReplClientError(f"permission denied on {path} (it belongs to another user?)") from None
    except OSError as exc:
        sock.close()
        raise ReplClientError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    return sock


def _connect_tcp(target: str, token: str | None) -> socket.socket:
    try:
        parts = urlsplit(target)
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise ReplClientError(f"{target}: expected tcp://HOST:PORT")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        # The token would cross the network in clear text; consoles serve loopback only anyway.
        raise ReplClientError(f"{target}: consoles serve TCP on loopback only (127.0.0.1, ::1)")
    if not token:
        raise ReplClientError(f"{target} needs a token: set {TOKEN_ENV} or pass --token-file")
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    except OSError as exc:
        raise ReplClientError(f"cannot connect to {target}: {exc.strerror or exc}") from None
    try:
        sock.sendall(encode_line(AUTH_PREFIX + token))
    except OSError as exc:
        sock.close()
        raise ReplClientError(f"cannot connect to {target}: {exc.strerror or exc}") from None
    return sock


def _read_token(token_file: str | None) -> str | None:
    if token_file is None:
        return os.environ.get(TOKEN_ENV) or None
    try:
        with open(token_file, encoding="utf-8") as file:
            return file.read().strip() or None
    except OSError as exc:
        raise ReplClientError(f"cannot read token file {token_file}: {exc.strerror}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uptax repl",
        description="Attach to a running runtime's debug console ('help' lists its commands).",
    )
    parser.add_argument(
        "path",
        metavar="PATH",
        help="the console's Unix socket (the runtime's repl_socket), or tcp://127.0.0.1:PORT",
    )
    parser.add_argument(
        "-c",
        "--command",
        action="append",
        default=None,
        help="run this command and exit (repeatable) instead of reading stdin",
    )
    parser.add_argument(
        "--token-file", help=f"file holding the token of a TCP console (default: ${TOKEN_ENV})"
    )
    return parser


#: Exit status when the reader of our output went away (`| head`): 128 + SIGPIPE, as a tool
#: killed by SIGPIPE would end.
BROKEN_PIPE_STATUS = 128 + signal.SIGPIPE


def main(argv: list[str]) -> int:
    """`uptax repl ...` (argv without `repl`): 0 on a normal end, 1 if the console is unreachable
    or a scripted line failed."""
    try:
        return run(argv, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)
    except BrokenPipeError:
        # Whoever read our output stopped (`uptax repl PATH -c status | head`): end quietly, and
        # keep the interpreter's final flush from failing again on the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE_STATUS


def run(argv: list[str], *, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        attached = _attach(args.path, _read_token(args.token_file), stderr)
    except ReplClientError as exc:
        stderr.write(f"uptax repl: {exc}\n")
        return 1
    if attached is None:
        return 1
    conn, banner, prompt = attached
    try:
        if args.command is not None:
            return _run_lines(conn, args.command, stdout)
        if stdin.isatty() and stdout.isatty():
            stdout.write("\n".join(banner) + "\n")
            return _run_terminal(conn, prompt, stdout)
        return _run_lines(conn, (line.rstrip("\r\n") for line in stdin), stdout)
    except ConnectionLost as exc:
        stdout.flush()
        stderr.write(f"uptax repl: connection lost: {exc}\n")
        return 1
    except ReplClientError as exc:
        stderr.write(f"uptax repl: {exc}\n")
        return 1
    except KeyboardInterrupt:
        stdout.flush()
        return 130
    finally:
        conn.close()


def _attach(
    target: str, token: str | None, stderr: TextIO
) -> tuple[ConsoleConnection, list[str], str] | None:
    """Connect and read the greeting: (connection, banner lines, first prompt), None if refused."""
    conn = ConsoleConnection.open(target, token)
    greeting = _Collector()
    try:
        prompt = conn.read_reply(greeting)
    except ConnectionLost as exc:
        conn.close()
        raise ReplClientError(f"{target} closed the connection ({exc})") from None
    except ReplClientError:
        conn.close()
        raise
    if prompt is None:
        # Turned away (a wrong token): the console said why.
        conn.close()
        stderr.write("".join(f"uptax repl: {line}\n" for line in greeting.lines))
        return None
    conn.attached()
    return conn, greeting.lines, prompt


class _Collector:
    """A TextIO-shaped sink for the greeting (printed only on a terminal)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.extend(text.rstrip("\n").split("\n"))
        return len(text)

    def flush(self) -> None:
        pass


def _interrupts() -> CtrlC | None:
    """Ctrl-C can be caught only in the main thread (tests run the client in a worker)."""
    return CtrlC() if threading.current_thread() is threading.main_thread() else None


def _ask(conn: ConsoleConnection, line: str, stdout: TextIO) -> str | None:
    conn.send(line)
    ctrl_c = _interrupts()
    if ctrl_c is None:
        return conn.read_reply(stdout)
    with ctrl_c:
        return conn.read_reply(stdout, ctrl_c)


def _is_quit(line: str, prompt: str) -> bool:
    words = line.split()
    return prompt == COMMAND_PROMPT and bool(words) and words[0].lower() in ("quit", "exit")


def _run_lines(conn: ConsoleConnection, lines: Iterable[str], stdout: TextIO) -> int:
    """Scripted use: every line runs; the status is 1 if any of them failed."""
    prompt = COMMAND_PROMPT
    failed = False
    for line in lines:
        next_prompt = _ask(conn, line, stdout)
        if next_prompt is None:
            return 0 if _is_quit(line, prompt) and not failed else 1
        failed = failed or conn.failed
        prompt = next_prompt
    return 1 if failed else 0


def _run_terminal(conn: ConsoleConnection, prompt: str, stdout: TextIO) -> int:
    editing = _LineEditing.start()
    if editing is not None:
        editing.actors = _actor_kinds(conn)
    try:
        while True:
            if editing is not None:
                editing.prompt = prompt
            try:
                line = input(prompt)
            except EOFError:
                stdout.write("\n")
                if prompt == COMMAND_PROMPT:
                    return 0
                # Ctrl-D in eval mode goes back to commands, as the line '.' does.
                if prompt == CONTINUATION_PROMPT:
                    conn.send(INTERRUPT)  # the console drops the half-typed statement
                line = "."
            except KeyboardInterrupt:
                stdout.write("\nKeyboardInterrupt\n")
                if prompt == CONTINUATION_PROMPT:
                    conn.send(INTERRUPT)  # the console drops the half-typed statement
                    prompt = EVAL_PROMPT
                continue
            next_prompt = _ask(conn, line, stdout)
            if next_prompt is None:
                return 0 if _is_quit(line, prompt) else 1
            prompt = next_prompt
    finally:
        if editing is not None:
            editing.save_history()


def _actor_kinds(conn: ConsoleConnection) -> dict[str, str]:
    """Actor name -> kind, read from the `actors` table once, for Tab completion."""
    table = _Collector()
    conn.send("actors")
    if conn.read_reply(table) is None or conn.failed:
        return {}
    rows = [line.split() for line in table.lines[1:]]
    return {row[0]: row[1] for row in rows if len(row) >= 2}


#: Commands whose first argument is an actor (any kind, or providers only).
ACTOR_COMMANDS = frozenset({"show", "restart"})
PROVIDER_COMMANDS = frozenset({"breaker", "fault", "heal"})


class _LineEditing:
    """readline: history in ~/.uptax_history (mode 0600), Tab completes commands and their
    arguments (actor names, breaker actions, fault kinds), not Python."""

    def __init__(self, readline: Any) -> None:
        self._readline = readline
        self.path = os.path.expanduser(HISTORY_FILE)
        self.prompt = COMMAND_PROMPT
        #: Actor name -> kind, as the console listed them when the session began.
        self.actors: dict[str, str] = {}

    @classmethod
    def start(cls) -> _LineEditing | None:
        try:
            import readline
        except ImportError:
            return None
        editing = cls(readline)
        with contextlib.suppress(OSError):
            readline.read_history_file(editing.path)
        readline.set_history_length(HISTORY_LENGTH)
        readline.set_completer(editing.complete)
        if "libedit" in (readline.__doc__ or ""):
            readline.parse_and_bind("bind ^I rl_complete")
        else:
            readline.parse_and_bind("tab: complete")
        return editing

    def complete(self, text: str, state: int) -> str | None:
        if self.prompt != COMMAND_PROMPT:
            return None
        words = self._readline.get_line_buffer()[: self._readline.get_begidx()].split()
        choices: list[str]
        if not words or (words[0] == "help" and len(words) == 1):
            choices = list(COMMANDS)
        elif words[0] in ACTOR_COMMANDS and len(words) == 1:
            choices = list(self.actors)
        elif words[0] in PROVIDER_COMMANDS and len(words) == 1:
            choices = [name for name, kind in self.actors.items() if kind == "provider"]
        elif words[0] == "breaker" and len(words) == 2:
            choices = list(BREAKER_ACTIONS)
        elif words[0] == "fault" and len(words) == 2:
            choices = [kind.value for kind in FaultKind]
        else:
            return None
        matches = [choice + " " for choice in choices if choice.startswith(text)]
        return matches[state] if state < len(matches) else None

    def save_history(self) -> None:
        try:
            # Created private before anything is written: eval lines may hold anything.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._readline.write_history_file(self.path)
        except OSError:
            pass
