"""The console's eval mode: Python statements run in the console's own task, top-level await
allowed, with everything they print collected for the client instead of the runtime's stdout."""

from __future__ import annotations

import ast
import builtins
import codeop
import enum
import inspect
import itertools
import linecache
import pydoc
import traceback
from collections.abc import Mapping
from typing import Any, NoReturn

#: Frames of a failed eval statement shown to the client: the end of the stack is what matters.
TRACEBACK_FRAMES = 8
#: The name expression statements are rewritten to call (see `Evaluator.run`).
DISPLAY_HOOK = "_uptax_display_"

_statement_numbers = itertools.count(1)


class Outcome(enum.Enum):
    """How a run of statements ended."""

    DONE = "done"
    #: They raised; the traceback is in the output.
    FAILED = "failed"
    #: They called `exit()` or `quit()`.
    LEFT = "left"


class BadSource(Exception):
    """The statement does not compile; the message is what the interpreter would print."""


class Evaluator:
    """One client's Python session: its namespace, a half-typed statement, output not yet sent."""

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self._pending: list[str] = []
        self._output: list[str] = []
        self._compiler = codeop.CommandCompiler()
        self._compiler.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self.namespace: dict[str, Any] = {
            "__name__": "__console__",
            "__builtins__": builtins,
            **scope,
            "print": self._print,
            "help": self._help,
            "exit": _Leave("exit"),
            "quit": _Leave("quit"),
            "input": _no_input,
            DISPLAY_HOOK: self._display,
        }

    @property
    def pending(self) -> bool:
        """Whether a multi-line statement is half typed."""
        return bool(self._pending)

    def discard(self) -> None:
        """Forget a half-typed statement."""
        self._pending.clear()

    def feed(self, line: str) -> str | None:
        """Add one line: the whole statement once it is complete, None while it needs more.

        Raises `BadSource` (and forgets the statement) when it cannot compile.
        """
        self._pending.append(line)
        source = "\n".join(self._pending)
        try:
            complete = self._compiler(source, "<console>", "single")
        except (SyntaxError, OverflowError, ValueError) as exc:
            self._pending.clear()
            raise BadSource(_exception_only(exc)) from None
        if complete is None:
            return None
        self._pending.clear()
        return source

    async def run(self, source: str) -> Outcome:
        """Run `source` in this task; whether it ended, raised or called `exit()` / `quit()`.

        Expression statements are rewritten to call a display hook of this session: the
        interpreter's own `sys.displayhook` would print on the runtime's stdout, not the client's.
        Raises `BadSource` when it cannot compile.
        """
        filename = f"<console#{next(_statement_numbers)}>"
        try:
            tree = ast.parse(source, filename, "exec")
            tree.body = [_display_expression(node) for node in tree.body]
            ast.fix_missing_locations(tree)
            code = compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except (SyntaxError, OverflowError, ValueError) as exc:
            raise BadSource(_exception_only(exc)) from None
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            result = eval(code, self.namespace)
            if code.co_flags & inspect.CO_COROUTINE:
                await result
        except SystemExit:
            return Outcome.LEFT
        except Exception as exc:
            self._output.append(_short_traceback(exc) + "\n")
            return Outcome.FAILED
        return Outcome.DONE

    def note(self, text: str) -> None:
        """Add a line of the console's own to the output."""
        self._output.append(text + "\n")

    def take_output(self) -> list[str]:
        """The text produced since the last call, as lines."""
        text, self._output = "".join(self._output), []
        if not text:
            return []
        return text.removesuffix("\n").split("\n")

    def _display(self, value: object) -> None:
        if value is None:
            return
        self.namespace["_"] = value
        self._output.append(repr(value) + "\n")

    def _print(
        self, *values: object, sep: str | None = " ", end: str | None = "\n", **kw: Any
    ) -> None:
        """`print` inside eval: to the client, unless a `file` is given."""
        if kw.get("file") is not None:
            builtins.print(*values, sep=sep, end=end, **kw)
            return
        text = (" " if sep is None else sep).join(str(value) for value in values)
        self._output.append(text + ("\n" if end is None else end))

    def _help(self, obj: object = None) -> None:
        if obj is None:
            self._output.append("help(obj) shows the documentation of obj\n")
            return
        self._output.append(pydoc.plain(pydoc.render_doc(obj)) + "\n")


def _exception_only(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n")


def _display_expression(node: ast.stmt) -> ast.stmt:
    if not isinstance(node, ast.Expr):
        return node
    call = ast.Call(ast.Name(DISPLAY_HOOK, ast.Load()), [node.value], [])
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
