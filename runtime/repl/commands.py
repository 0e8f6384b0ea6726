"""The console's commands: one client's session, and the table of what it can be asked.

A `Console` is one client's session state (command or eval mode, the eval namespace). It knows
nothing of sockets: it writes lines through the callable it was given, and the server frames them.
It only reads the runtime's snapshots and calls its steering methods, so a console can never hold
up a request. Formatting lives in `runtime.repl.formatting`, Python eval in `runtime.repl.evaluation`.
"""

from __future__ import annotations

import enum
import importlib
import math
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import structlog
import trio

import actors
from actors.faults import Fault, FaultKind
from actors.messages import BreakerSnapshot, Complexity, CostTier, Quality, Request
from runtime.kernel.events import EventBus
from runtime.kernel.registry import ActorInfo
from runtime.repl.evaluation import BadSource, Evaluator, Outcome
from runtime.repl.formatting import (
    format_age,
    format_event,
    format_float,
    format_mapping,
    format_records,
    format_table,
    format_value,
    relative_time_text,
    relative_times,
    unstructure,
)
from runtime.repl.protocol import COMMAND_PROMPT, CONTINUATION_PROMPT, EVAL_PROMPT

__all__ = [
    "ALIASES",
    "BREAKER_ACTIONS",
    "COMMANDS",
    "ROUTE_PROMPT",
    "Console",
    "ConsoleRuntime",
    "format_event",
    "format_mapping",
    "format_records",
    "format_table",
    "format_value",
    "relative_times",
]

_log = structlog.get_logger("uptax.repl")

BREAKER_ACTIONS = ("open", "close", "reset", "auto")
#: The prompt of the request `route` plans for: its length only moves the cost estimates.
ROUTE_PROMPT = "(route preview)"


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
# Errors a command reports to the client (never to the runtime).


class UsageError(Exception):
    """The arguments don't fit the command; the message says what is wrong."""


class NoSuchActor(Exception):
    """The name is no actor (or no actor of the kind the command needs)."""


# ---------------------------------------------------------------------------------------------
# The console.


class Mode(enum.Enum):
    COMMAND = "command"
    EVAL = "eval"


Write = Callable[[Sequence[str]], Awaitable[None]]

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
        #: Whether the line running now failed (the server tells the client, see `take_failure`).
        self._failed = False
        self.evaluator = Evaluator(
            {
                "rt": rt,
                "trio": trio,
                # The public package, as the operator would import it; the console itself stands
                # below it (the runtime starts the console server), so it is not imported here.
                "runtime": importlib.import_module("runtime"),
                "actors": actors,
            }
        )

    @property
    def prompt(self) -> str:
        if self.mode is Mode.COMMAND:
            return COMMAND_PROMPT
        return CONTINUATION_PROMPT if self.evaluator.pending else EVAL_PROMPT

    @property
    def streaming(self) -> bool:
        """Whether the running line waits on the client: it must stop when the client goes."""
        return self.current in ("watch", "eval")

    async def write(self, *lines: str) -> None:
        await self._write(lines)

    async def fail(self, *lines: str) -> None:
        """Write why the line failed, and mark it failed."""
        self._failed = True
        await self._write(lines)

    def take_failure(self) -> bool:
        """Whether the line that just ended failed; clears the mark for the next one."""
        failed, self._failed = self._failed, False
        return failed

    def _plain(self, value: Any) -> Any:
        """A snapshot as plain data, its timestamps relative to the runtime's start."""
        data = unstructure(value)
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
            await self.fail(f"unknown command {words[0]!r}; commands: {', '.join(COMMANDS)}")
            return
        self.current = command.name
        try:
            await command.run(self, words[1:], line.strip()[len(words[0]) :].strip())
        except UsageError as exc:
            await self.fail(*([f"error: {exc}"] if str(exc) else []), f"usage: {command.usage}")
        except NoSuchActor as exc:
            await self.fail(str(exc))
        except Exception as exc:
            # A steering call refused (or a bug): the client hears about it, the runtime goes on.
            _log.warning(
                "repl_command_failed",
                client=self._client,
                command=command.name,
                error_type=type(exc).__name__,
                error=str(exc),
            )
            await self.fail(f"error: {exc}" if str(exc) else f"error: {type(exc).__name__}")
        finally:
            self.current = None

    def interrupted(self, line: str) -> list[str]:
        """What to tell the client when its Ctrl-C stopped `line` (or kept it from starting)."""
        output = self.evaluator.take_output()
        self.evaluator.discard()
        words = line.split()
        command = words[0].lower() if words and self.mode is Mode.COMMAND else "eval"
        note = {"watch": "watch stopped", "eval": "KeyboardInterrupt"}.get(command, "interrupted")
        return [*output, note]

    def discard_input(self) -> None:
        """Ctrl-C at the prompt: forget a half-typed multi-line statement."""
        self.evaluator.discard()

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
                format_age(now, info.last_message_at),
                format_age(now, info.started_at),
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
        cost: str | None = None
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
            elif word in CostTier.__members__.values():
                if cost is not None:
                    raise UsageError(f"two cost tiers: {cost!r} and {word!r}")
                cost = word
            else:
                if budget_given:
                    raise UsageError(f"{arg!r} is no complexity, quality, cost tier or budget")
                budget = _parse_budget(arg)
                budget_given = True
        request = Request(
            prompt=ROUTE_PROMPT,
            complexity=complexity or Complexity.MODERATE,
            quality=quality or Quality.PRODUCTION,
            budget_usd=budget,
            cost=cost,
        )
        header = (
            f"plan for complexity={request.complexity.value} quality={request.quality.value} "
            f"budget={'none' if budget is None else format_float(budget)}"
            f"{'' if cost is None else f' cost={cost}'}:"
        )
        explained = self.rt.plan(request).explain()
        await self.write(header, *(f"  {relative_time_text(line, self.origin)}" for line in explained))

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
        self._check_event_patterns(patterns)
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

    def _check_event_patterns(self, patterns: list[str]) -> None:
        """A pattern that is part of no event's name would wait forever: refuse it."""
        names = self.rt.events.names
        for pattern in patterns:
            if names and not any(pattern in name for name in names):
                raise UsageError(f"no event matches {pattern!r}; events: {', '.join(names)}")

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
        if not self.evaluator.pending and line.strip() in ("exit", "."):
            self.mode = Mode.COMMAND
            await self.write("back to commands")
            return
        try:
            source = self.evaluator.feed(line)
        except BadSource as exc:
            await self.fail(str(exc))
            return
        if source is None:
            return
        self.current = "eval"
        try:
            await self._run_source(source)
        finally:
            self.current = None

    async def _run_source(self, source: str) -> None:
        """Run statements in this (the console's) task and write what they printed."""
        try:
            outcome = await self.evaluator.run(source)
        except BadSource as exc:
            await self.fail(str(exc))
            return
        self._failed = outcome is Outcome.FAILED
        if outcome is Outcome.LEFT and self.mode is Mode.EVAL:
            self.mode = Mode.COMMAND
            self.evaluator.note("back to commands")
        output = self.evaluator.take_output()
        if output:
            await self.write(*output)


def _parse_budget(arg: str) -> float | None:
    if arg.lower() in ("none", "-"):
        return None
    try:
        value = float(arg.removeprefix("$"))
    except ValueError:
        raise UsageError(f"{arg!r} is no complexity, quality, cost tier or budget") from None
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
    Command("route", "route [complexity] [quality] [cost tier] [budget]",
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
