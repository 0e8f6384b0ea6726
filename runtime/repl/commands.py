"""The console's commands, and the plain-text formatting they answer with.

A `Console` is one client's session state (command or eval mode, the eval namespace). It knows
nothing of sockets: it writes lines through the callable it was given, and the server frames them.
It only reads the runtime's snapshots and calls its steering methods, so a console can never hold
up a request.
"""

from __future__ import annotations

import ast
import builtins
import codeop
import enum
import importlib
import inspect
import itertools
import linecache
import math
import pydoc
import traceback
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn, Protocol

import attrs
import cattrs
import structlog
import trio

import actors
from actors.faults import Fault, FaultKind
from actors.messages import BreakerSnapshot, Complexity, Quality, Request
from runtime.kernel.events import Event, EventBus
from runtime.kernel.registry import ActorInfo
from runtime.repl.protocol import COMMAND_PROMPT, CONTINUATION_PROMPT, EVAL_PROMPT

_log = structlog.get_logger("uptax.repl")

BREAKER_ACTIONS = ("open", "close", "reset", "auto")
#: The prompt of the request `route` plans for: its length only moves the cost estimates.
ROUTE_PROMPT = "(route preview)"
#: Frames of a failed eval statement shown to the client: the end of the stack is what matters.
TRACEBACK_FRAMES = 8


class Plan(Protocol):
    def explain(self) -> list[str]: ...


class ConsoleRuntime(Protocol):
    """What the console uses of `runtime.Runtime`: read-only snapshots and steering methods."""

    @property
    def events(self) -> EventBus: ...

    def actors(self) -> Sequence[ActorInfo]: ...

    def snapshot(self, name: str) -> Any: ...

    def status(self) -> Any: ...

    def plan(self, request: Request) -> Plan: ...

    def set_breaker(self, name: str, action: Any) -> BreakerSnapshot: ...

    def inject_fault(self, name: str, fault: Fault) -> object: ...

    def heal(self, name: str) -> object: ...

    async def restart(self, name: str) -> object: ...


# ---------------------------------------------------------------------------------------------
# Formatting: plain aligned tables and nested `key: value` lines.


def format_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 1:
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"


def format_value(value: Any) -> str:
    """One scalar (or a flat list of scalars) as the console prints it."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, Mapping):
        if not value:
            return "(none)"
        return " ".join(f"{key}={format_value(item)}" for key, item in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        if not value:
            return "(none)"
        return ", ".join(format_value(item) for item in value)
    return str(value)


def _is_nested(value: Any) -> bool:
    if isinstance(value, Mapping):
        return bool(value)
    if isinstance(value, list | tuple):
        return any(isinstance(item, Mapping | list | tuple) for item in value)
    return False


def format_mapping(data: Mapping[Any, Any], indent: str = "") -> list[str]:
    """Nested `key: value` lines, values aligned within each block; lists of records as `- `."""
    lines: list[str] = []
    width = max((len(str(key)) for key in data), default=0)
    for key, value in data.items():
        label = f"{key}:"
        if not _is_nested(value):
            lines.append(f"{indent}{label.ljust(width + 1)} {format_value(value)}")
            continue
        lines.append(f"{indent}{label}")
        if isinstance(value, Mapping):
            lines.extend(format_mapping(value, indent + "  "))
            continue
        for item in value:
            if isinstance(item, Mapping) and item:
                block = format_mapping(item, indent + "    ")
                block[0] = f"{indent}  - " + block[0][len(indent) + 4 :]
                lines.extend(block)
            else:
                lines.append(f"{indent}  - {format_value(item)}")
    return lines


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """An aligned table: numbers right-aligned, everything else left-aligned."""
    raw = [list(row) for row in rows]
    cells = [[format_value(value) for value in row] for row in raw]
    numeric = [True] * len(headers)
    for row in raw:
        for index, value in enumerate(row):
            if value is not None and not (
                isinstance(value, int | float) and not isinstance(value, bool)
            ):
                numeric[index] = False
    widths = [len(header) for header in headers]
    for row in cells:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))

    def line(values: Sequence[str], align_numbers: bool) -> str:
        parts = [
            text.rjust(widths[index]) if align_numbers and numeric[index] else text.ljust(widths[index])
            for index, text in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers, align_numbers=True), *(line(row, align_numbers=True) for row in cells)]


def format_records(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Records with the same keys as a table, one column per key."""
    rows = list(records)
    headers = list(rows[0]) if rows else []
    return format_table(
        [header.upper() for header in headers], [[row.get(key) for key in headers] for row in rows]
    )


def _field(value: Any) -> str:
    text = format_value(value)
    if not text or any(char.isspace() for char in text) or "=" in text:
        return repr(text)
    return text


def format_event(event: Event, origin: float = 0.0) -> str:
    """`t=12.345 breaker_opened provider=openai ...`: one line per state change."""
    values = relative_times(event.fields, origin)
    fields = " ".join(f"{key}={_field(value)}" for key, value in values.items())
    return f"t={event.at - origin:.3f} {event.event}" + (f" {fields}" if fields else "")


def _is_time_key(key: object) -> bool:
    return isinstance(key, str) and (
        key in ("at", "last_check") or key.endswith(("_at", "_until"))
    )


def relative_times(data: Mapping[Any, Any], origin: float) -> dict[Any, Any]:
    """Trio timestamps (`at`, `*_at`, `*_until`, `last_check`) as seconds since `origin`.

    trio's clock starts at an arbitrary offset; seconds since the runtime started can be read and
    compared with `watch`'s `t=`.
    """
    result: dict[Any, Any] = {}
    for key, value in data.items():
        if _is_time_key(key) and isinstance(value, int | float) and not isinstance(value, bool):
            result[key] = round(value - origin, 3)
        elif isinstance(value, Mapping):
            result[key] = relative_times(value, origin)
        elif isinstance(value, list | tuple):
            result[key] = [
                relative_times(item, origin) if isinstance(item, Mapping) else item
                for item in value
            ]
        else:
            result[key] = value
    return result


def _age(now: float, at: float | None) -> str:
    if at is None:
        return "-"
    seconds = max(0.0, now - at)
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


# ---------------------------------------------------------------------------------------------
# Errors a command reports to the client (never to the runtime).


class UsageError(Exception):
    """The arguments don't fit the command; the message says what is wrong."""


class NoSuchActor(Exception):
    """The name is no actor (or no actor of the kind the command needs)."""


def _unstructure(value: Any) -> Any:
    if attrs.has(type(value)):
        return cattrs.unstructure(value)
    return value


# ---------------------------------------------------------------------------------------------
# The console.


class Mode(enum.Enum):
    COMMAND = "command"
    EVAL = "eval"


Write = Callable[[Sequence[str]], Awaitable[None]]

_statement_numbers = itertools.count(1)


def _fault_fields() -> dict[str, type]:
    hints = typing.get_type_hints(Fault)
    return {field.name: hints[field.name] for field in attrs.fields(Fault) if field.name != "kind"}


FAULT_FIELDS = _fault_fields()


class Console:
    """One client's session: it runs each line it is given and writes the answer."""

    def __init__(self, rt: ConsoleRuntime, write: Write, *, client: str = "") -> None:
        self.rt = rt
        self._write = write
        self._client = client
        self.mode = Mode.COMMAND
        #: Times are shown as seconds since the runtime started (trio's clock has a random offset).
        starts = [info.started_at for info in rt.actors() if info.started_at is not None]
        self.origin = min(starts, default=trio.current_time())
        #: Set by the server when the client quit; the server says bye and closes.
        self.closed = False
        #: Set by the server when the client can send no more (it closed its side).
        self.input_closed = False
        #: The command running now.
        self.current: str | None = None
        self._eval_lines: list[str] = []
        self._eval_output: list[str] = []
        self._compiler = codeop.CommandCompiler()
        self._compiler.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self.namespace: dict[str, Any] = {
            "__name__": "__console__",
            "__builtins__": builtins,
            "rt": rt,
            "trio": trio,
            # The public package, as the operator would import it; the console itself stands
            # below it (the runtime starts the console server), so it is not imported here.
            "runtime": importlib.import_module("runtime"),
            "actors": actors,
            "print": self._print,
            "help": self._help,
            "exit": _Leave("exit"),
            "quit": _Leave("quit"),
            "input": _no_input,
            "_uptax_display_": self._display,
        }

    @property
    def prompt(self) -> str:
        if self.mode is Mode.COMMAND:
            return COMMAND_PROMPT
        return CONTINUATION_PROMPT if self._eval_lines else EVAL_PROMPT

    @property
    def streaming(self) -> bool:
        """Whether the running line waits on the client: it must stop when the client goes."""
        return self.current in ("watch", "eval")

    async def write(self, *lines: str) -> None:
        await self._write(lines)

    def _plain(self, value: Any) -> Any:
        """A snapshot as plain data, its timestamps relative to the runtime's start."""
        data = _unstructure(value)
        return relative_times(data, self.origin) if isinstance(data, Mapping) else data

    async def run_line(self, line: str) -> None:
        """Run one line from the client: a command, or Python in eval mode."""
        if self.mode is Mode.EVAL:
            await self._eval_line(line)
            return
        words = line.split()
        if not words or words[0].startswith("#"):
            return
        name = words[0].lower()
        command = COMMANDS.get(ALIASES.get(name, name))
        if command is None:
            await self.write(f"unknown command {words[0]!r}; commands: {', '.join(COMMANDS)}")
            return
        self.current = command.name
        try:
            await command.run(self, words[1:], line.strip()[len(words[0]) :].strip())
        except UsageError as exc:
            await self.write(*([f"error: {exc}"] if str(exc) else []), f"usage: {command.usage}")
        except NoSuchActor as exc:
            await self.write(str(exc))
        except Exception as exc:
            # A steering call refused (or a bug): the client hears about it, the runtime goes on.
            _log.warning(
                "repl_command_failed",
                client=self._client,
                command=command.name,
                error_type=type(exc).__name__,
                error=str(exc),
            )
            await self.write(f"error: {exc}" if str(exc) else f"error: {type(exc).__name__}")
        finally:
            self.current = None

    def interrupted(self, line: str) -> list[str]:
        """What to tell the client when its Ctrl-C stopped `line` (or kept it from starting)."""
        output = self._take_output()
        self._eval_lines.clear()
        words = line.split()
        command = words[0].lower() if words and self.mode is Mode.COMMAND else "eval"
        note = {"watch": "watch stopped", "eval": "KeyboardInterrupt"}.get(command, "interrupted")
        return [*output, note]

    def discard_input(self) -> None:
        """Ctrl-C at the prompt: forget a half-typed multi-line statement."""
        self._eval_lines.clear()

    # -- helpers -------------------------------------------------------------------------------

    def _actor_infos(self) -> list[ActorInfo]:
        return list(self.rt.actors())

    def _require_actor(self, name: str) -> ActorInfo:
        infos = self._actor_infos()
        for info in infos:
            if info.name == name:
                return info
        known = ", ".join(info.name for info in infos) or "(none)"
        raise NoSuchActor(f"no actor {name!r}; actors: {known}")

    def _require_provider(self, name: str) -> ActorInfo:
        info = self._require_actor(name)
        if info.kind != "provider":
            providers = ", ".join(i.name for i in self._actor_infos() if i.kind == "provider")
            raise NoSuchActor(f"{name!r} is a {info.kind}, not a provider; providers: {providers}")
        return info

    # -- commands ------------------------------------------------------------------------------

    async def cmd_actors(self, args: list[str], text: str) -> None:
        if args:
            raise UsageError("actors takes no arguments")
        now = trio.current_time()
        rows = [
            [
                info.name,
                info.kind,
                info.state,
                info.restarts,
                info.mailbox_depth,
                _age(now, info.last_message_at),
                _age(now, info.started_at),
                info.parent,
            ]
            for info in self._actor_infos()
        ]
        headers = ["NAME", "KIND", "STATE", "RESTARTS", "MAILBOX", "LAST MSG", "UP", "PARENT"]
        await self.write(*format_table(headers, rows))

    async def cmd_show(self, args: list[str], text: str) -> None:
        if len(args) != 1:
            raise UsageError("show takes one actor name")
        self._require_actor(args[0])
        snapshot = self._plain(self.rt.snapshot(args[0]))
        if isinstance(snapshot, Mapping):
            await self.write(*format_mapping(snapshot))
        else:
            await self.write(format_value(snapshot))

    async def cmd_route(self, args: list[str], text: str) -> None:
        complexity: str | None = None
        quality: str | None = None
        budget: float | None = None
        budget_given = False
        for arg in args:
            word = arg.lower()
            if word in Complexity.__members__.values():
                if complexity is not None:
                    raise UsageError(f"two complexities: {complexity!r} and {word!r}")
                complexity = word
            elif word in Quality.__members__.values():
                if quality is not None:
                    raise UsageError(f"two qualities: {quality!r} and {word!r}")
                quality = word
            else:
                if budget_given:
                    raise UsageError(f"{arg!r} is no complexity, quality or budget")
                budget = _parse_budget(arg)
                budget_given = True
        request = Request(
            prompt=ROUTE_PROMPT,
            complexity=complexity or Complexity.MODERATE,
            quality=quality or Quality.PRODUCTION,
            budget_usd=budget,
        )
        header = (
            f"plan for complexity={request.complexity.value} quality={request.quality.value} "
            f"budget={'none' if budget is None else format_float(budget)}:"
        )
        await self.write(header, *(f"  {line}" for line in self.rt.plan(request).explain()))

    async def cmd_stats(self, args: list[str], text: str) -> None:
        if args:
            raise UsageError("stats takes no arguments")
        status = self._plain(self.rt.status())
        lines = format_mapping({"stats": status.get("stats")})
        performance = status.get("performance") or {}
        if performance:
            lines.append("performance:")
            lines.extend("  " + line for line in format_records(performance.values()))
        lines.extend(format_mapping({"recommendations": status.get("recommendations")}))
        await self.write(*lines)

    async def cmd_alerts(self, args: list[str], text: str) -> None:
        if args:
            raise UsageError("alerts takes no arguments")
        alerts = self._plain(self.rt.status()).get("alerts") or ()
        if not alerts:
            await self.write("no alerts")
            return
        await self.write(*(format_value(alert) for alert in alerts))

    async def cmd_status(self, args: list[str], text: str) -> None:
        if args:
            raise UsageError("status takes no arguments")
        await self.write(*format_mapping(self._plain(self.rt.status())))

    async def cmd_watch(self, args: list[str], text: str) -> None:
        count: int | None = None
        patterns: list[str] = []
        for arg in args:
            if arg.isdigit():
                if count is not None or int(arg) == 0:
                    raise UsageError(f"bad count {arg!r}")
                count = int(arg)
            else:
                patterns.append(arg)
        with self.rt.events.subscribe() as events:
            what = f" matching {', '.join(patterns)}" if patterns else ""
            limit = f", stopping after {count}" if count is not None else ""
            await self.write(f"watching events{what}{limit} (Ctrl-C to stop)")
            if self.input_closed:
                return
            seen = 0
            async for event in events:
                if patterns and not any(pattern in event.event for pattern in patterns):
                    continue
                await self.write(format_event(event, self.origin))
                seen += 1
                if count is not None and seen >= count:
                    return

    async def cmd_breaker(self, args: list[str], text: str) -> None:
        if len(args) != 2:
            raise UsageError("")
        name, action = args[0], args[1].lower()
        if action not in BREAKER_ACTIONS:
            raise UsageError(f"unknown action {args[1]!r}; actions: {', '.join(BREAKER_ACTIONS)}")
        self._require_provider(name)
        snapshot = self.rt.set_breaker(name, action)
        _log.info("repl_breaker_set", client=self._client, provider=name, action=action)
        await self.write(
            f"breaker {name}: {action}", *format_mapping(self._plain(snapshot), indent="  ")
        )

    async def cmd_fault(self, args: list[str], text: str) -> None:
        if len(args) < 2:
            raise UsageError("")
        name, kind_name = args[0], args[1].lower()
        try:
            kind = FaultKind(kind_name)
        except ValueError:
            kinds = ", ".join(kind.value for kind in FaultKind)
            raise UsageError(f"unknown fault {args[1]!r}; faults: {kinds}") from None
        values: dict[str, Any] = {}
        for arg in args[2:]:
            key, equals, raw = arg.partition("=")
            if not equals or key not in FAULT_FIELDS:
                names = ", ".join(f"{field}=" for field in FAULT_FIELDS)
                raise UsageError(f"bad fault argument {arg!r}; arguments: {names}")
            values[key] = _parse_number(key, raw, FAULT_FIELDS[key])
        self._require_provider(name)
        fault = Fault(kind, **values)
        self.rt.inject_fault(name, fault)
        _log.info("repl_fault_injected", client=self._client, provider=name, fault=kind.value)
        shown = " ".join(f"{key}={format_value(value)}" for key, value in values.items())
        await self.write(f"fault {kind.value} injected into {name}" + (f" ({shown})" if shown else ""))

    async def cmd_heal(self, args: list[str], text: str) -> None:
        if len(args) != 1:
            raise UsageError("heal takes one provider name")
        self._require_provider(args[0])
        self.rt.heal(args[0])
        _log.info("repl_healed", client=self._client, provider=args[0])
        await self.write(f"{args[0]} healed: every fault lifted")

    async def cmd_restart(self, args: list[str], text: str) -> None:
        if len(args) != 1:
            raise UsageError("restart takes one actor name")
        self._require_actor(args[0])
        _log.info("repl_restart", client=self._client, actor=args[0])
        await self.rt.restart(args[0])
        info = self._require_actor(args[0])
        await self.write(f"{info.name} restarted (restarts={info.restarts}, state={info.state})")

    async def cmd_eval(self, args: list[str], text: str) -> None:
        if text:
            # One statement, then straight back to commands: handy in scripts.
            self.current = "eval"
            _log.info("repl_eval", client=self._client)
            await self._run_source(text)
            return
        self.mode = Mode.EVAL
        await self.write(
            "Python eval mode: rt, trio, runtime and actors are in scope; top-level await works.",
            "A line 'exit' or '.' goes back to commands.",
        )

    async def cmd_help(self, args: list[str], text: str) -> None:
        if len(args) > 1:
            raise UsageError("help takes at most one command name")
        if args:
            command = COMMANDS.get(args[0].lower())
            if command is None:
                raise UsageError(f"unknown command {args[0]!r}; commands: {', '.join(COMMANDS)}")
            await self.write(f"usage: {command.usage}", f"  {command.summary}")
            return
        rows = [[command.usage, command.summary] for command in COMMANDS.values()]
        await self.write(*format_table(["COMMAND", "WHAT IT DOES"], rows))

    async def cmd_quit(self, args: list[str], text: str) -> None:
        self.closed = True

    # -- eval ----------------------------------------------------------------------------------

    async def _eval_line(self, line: str) -> None:
        if not self._eval_lines and line.strip() in ("exit", "."):
            self.mode = Mode.COMMAND
            await self.write("back to commands")
            return
        self._eval_lines.append(line)
        source = "\n".join(self._eval_lines)
        try:
            complete = self._compiler(source, "<console>", "single")
        except (SyntaxError, OverflowError, ValueError) as exc:
            self._eval_lines.clear()
            await self.write("".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n"))
            return
        if complete is None:
            return
        self._eval_lines.clear()
        self.current = "eval"
        try:
            await self._run_source(source)
        finally:
            self.current = None

    async def _run_source(self, source: str) -> None:
        """Compile with top-level await allowed; await the coroutine in this (the console's) task.

        Expression statements are rewritten to call a display hook of this console: the
        interpreter's own `sys.displayhook` would print on the runtime's stdout, not the client's.
        """
        filename = f"<console#{next(_statement_numbers)}>"
        try:
            tree = ast.parse(source, filename, "exec")
            tree.body = [_display_expression(node) for node in tree.body]
            ast.fix_missing_locations(tree)
            code = compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except (SyntaxError, OverflowError, ValueError) as exc:
            await self.write("".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n"))
            return
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            result = eval(code, self.namespace)
            if code.co_flags & inspect.CO_COROUTINE:
                await result
        except SystemExit:
            if self.mode is Mode.EVAL:
                self.mode = Mode.COMMAND
                self._eval_output.append("back to commands\n")
        except Exception as exc:
            self._eval_output.append(_short_traceback(exc) + "\n")
        output = self._take_output()
        if output:
            await self.write(*output)

    def _display(self, value: object) -> None:
        if value is None:
            return
        self.namespace["_"] = value
        self._eval_output.append(repr(value) + "\n")

    def _print(
        self, *values: object, sep: str | None = " ", end: str | None = "\n", **kw: Any
    ) -> None:
        """`print` inside eval: to the client, unless a `file` is given."""
        if kw.get("file") is not None:
            builtins.print(*values, sep=sep, end=end, **kw)
            return
        text = (" " if sep is None else sep).join(str(value) for value in values)
        self._eval_output.append(text + ("\n" if end is None else end))

    def _take_output(self) -> list[str]:
        """The text eval produced since the last call, as lines."""
        text, self._eval_output = "".join(self._eval_output), []
        if not text:
            return []
        return text.removesuffix("\n").split("\n")

    def _help(self, obj: object = None) -> None:
        if obj is None:
            self._eval_output.append("help(obj) shows the documentation of obj\n")
            return
        self._eval_output.append(pydoc.plain(pydoc.render_doc(obj)) + "\n")


def _display_expression(node: ast.stmt) -> ast.stmt:
    if not isinstance(node, ast.Expr):
        return node
    call = ast.Call(ast.Name("_uptax_display_", ast.Load()), [node.value], [])
    return ast.copy_location(ast.Expr(call), node)


def _short_traceback(exc: BaseException) -> str:
    """The traceback from the client's own code down, the last few frames only."""
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<console#"):
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb, limit=-TRACEBACK_FRAMES, chain=False)
    return "".join(lines).rstrip("\n")


class _Leave:
    """`exit()` / `quit()` inside eval: leave eval mode (the site builtins would close stdin)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return f"Use {self._name}() or a line '.' to go back to commands"

    def __call__(self, code: object = None) -> NoReturn:
        raise SystemExit(code)


def _no_input(prompt: object = "") -> NoReturn:
    raise RuntimeError("input() would read the runtime's own stdin; it is not available here")


def _parse_budget(arg: str) -> float | None:
    if arg.lower() in ("none", "-"):
        return None
    try:
        value = float(arg.removeprefix("$"))
    except ValueError:
        raise UsageError(f"{arg!r} is no complexity, quality or budget") from None
    if not value >= 0 or math.isinf(value):
        raise UsageError(f"budget {arg!r} must be a finite number >= 0")
    return value


def _parse_number(key: str, raw: str, kind: type) -> float | int:
    try:
        value: float | int = int(raw) if kind is int else float(raw)
    except ValueError:
        raise UsageError(f"{key}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not (isinstance(value, int) or math.isfinite(value)) or value < 0:
        raise UsageError(f"{key}={raw!r} must be a finite number >= 0")
    return value


@attrs.frozen
class Command:
    name: str
    usage: str
    summary: str
    run: Callable[[Console, list[str], str], Awaitable[None]]


#: Other names a command answers to (not listed, so the lists stay short).
ALIASES = {"exit": "quit", "?": "help", "ps": "actors"}


def _command_table(*commands: Command) -> dict[str, Command]:
    return {command.name: command for command in commands}


COMMANDS: dict[str, Command] = _command_table(
    Command("actors", "actors", "every actor: kind, state, restarts, mailbox, last message age",
            Console.cmd_actors),
    Command("show", "show NAME", "the full snapshot of one actor", Console.cmd_show),
    Command("route", "route [complexity] [quality] [budget]",
            "the router's plan for such a request, with the reason for each rank and exclusion",
            Console.cmd_route),
    Command("stats", "stats", "fallback statistics, performance, recommendations", Console.cmd_stats),
    Command("alerts", "alerts", "the alerts firing now", Console.cmd_alerts),
    Command("status", "status", "everything rt.status() says", Console.cmd_status),
    Command("watch", "watch [COUNT] [EVENT...]",
            "stream state-change events (matching EVENT, at most COUNT) until Ctrl-C",
            Console.cmd_watch),
    Command("breaker", "breaker NAME open|close|reset|auto",
            "force a provider's breaker open or closed, reset it, or give it back to its rules",
            Console.cmd_breaker),
    Command("fault", "fault NAME KIND [key=value...]",
            "inject a fault (" + ", ".join(kind.value for kind in FaultKind) + "; arguments "
            + ", ".join(FAULT_FIELDS) + ")", Console.cmd_fault),
    Command("heal", "heal NAME", "lift every fault of a provider", Console.cmd_heal),
    Command("restart", "restart NAME", "have the supervisor restart an actor", Console.cmd_restart),
    Command("eval", "eval [PYTHON]",
            "a Python prompt with top-level await and rt in scope (or run one statement)",
            Console.cmd_eval),
    Command("help", "help [COMMAND]", "this list, or one command's usage", Console.cmd_help),
    Command("quit", "quit", "end this session (the runtime goes on)", Console.cmd_quit),
)
