"""`uptax scenario run FILE [--seed N] [--json PATH] [--html PATH] [--mode virtual|http]
[--repl PATH]`.

Exit codes: 0 every expectation held, 1 one failed, 2 the scenario file (or the command line) is
wrong, with a message naming the file, the table and the key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.scenario.format import ScenarioError, load_scenario
from runtime.scenario.html import render_html
from runtime.scenario.report import Report
from runtime.scenario.runner import MODES, ProgressLine, run_scenario
from runtime.scenario.terminal import render_terminal

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` returns its exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ScenarioError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="uptax scenario",
        description="Run chaos scenarios against the runtime and report what held.",
    )
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = commands.add_parser("run", help="run a scenario file and print its report")
    run.add_argument("file", help="scenario TOML file (see scenarios/)")
    run.add_argument("--seed", type=int, default=None, help="seed (default: the file's, or 1)")
    run.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    run.add_argument("--html", metavar="PATH", help="also write an HTML page with the timeline")
    run.add_argument(
        "--mode",
        choices=MODES,
        default="virtual",
        help="virtual: simulated providers in virtual time (default); http: real time against "
        "the fake provider server on loopback",
    )
    run.add_argument("--repl", metavar="PATH", help="serve the debug REPL on this socket")
    check = commands.add_parser("check", help="parse and check scenario files without running")
    check.add_argument("files", nargs="+")
    return parser


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot write ({exc.strerror})") from None


def main(argv: list[str] | None = None) -> int:
    """The `uptax scenario` command; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        if args.command is None:
            parser.print_help()
            return EXIT_BAD_INPUT
        if args.command == "check":
            for file in args.files:
                scenario = load_scenario(file)
                print(f"{file}: ok ({scenario.name}, {len(scenario.faults)} fault step(s))")
            return EXIT_PASSED
        scenario = load_scenario(args.file)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    progress = ProgressLine(sys.stderr)
    try:
        report: Report = run_scenario(
            scenario, seed=args.seed, mode=args.mode, progress=progress, repl_socket=args.repl
        )
    except KeyboardInterrupt:
        progress.close()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    sys.stdout.write(render_terminal(report, color=sys.stdout.isatty()))
    try:
        if args.json:
            _write(args.json, report.to_json())
        if args.html:
            _write(args.html, render_html(report))
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_PASSED if report.passed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
