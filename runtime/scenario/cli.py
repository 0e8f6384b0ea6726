"""`uptax scenario run FILE [--seed N] [--json PATH] [--html PATH] [--mode virtual|http]
[--repl PATH] [--serve PORT [--host HOST]]`.

Exit codes: 0 every expectation held, 1 one failed, 2 the scenario file (or the command line) is
wrong, with a message naming the file, the table and the key, or the gateway cannot listen.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from runtime.scenario.format import Scenario, ScenarioError, load_scenario
from runtime.scenario.html import render_html
from runtime.scenario.report import Report
from runtime.scenario.runner import MODES, ProgressLine, Serve, run_scenario
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
    run.add_argument(
        "--serve",
        metavar="PORT",
        type=_port,
        help="http mode only: the gateway serves the scenario's runtime on PORT (0: a free one) "
        "for the whole run, so /dashboard, /metrics and /admin show it live; when stdin is a "
        "terminal it keeps serving the final state after the report until Ctrl-C",
    )
    run.add_argument(
        "--host", help="with --serve: the address to bind (default 127.0.0.1, loopback)"
    )
    check = commands.add_parser("check", help="parse and check scenario files without running")
    check.add_argument("files", nargs="+")
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return int(text)


def _serve(args: argparse.Namespace, scenario: Scenario) -> Serve | None:
    """What `--serve` and `--host` ask for, checked before anything starts."""
    if args.serve is None:
        if args.host is not None:
            raise ScenarioError("uptax scenario: --host is only for --serve")
        return None
    if args.mode != "http":
        raise ScenarioError(
            "uptax scenario: --serve needs --mode http (a virtual-time run is over in moments, "
            "with nothing to watch)"
        )
    from actors.errors import ConfigError
    from runtime.gateway.tenants import Authenticator

    host = args.host or "127.0.0.1"
    try:  # no tenants and no master key off loopback, or a tenant's key missing
        Authenticator.from_config(scenario.config, host, os.environ)
    except ConfigError as exc:
        raise ScenarioError(f"uptax scenario: --serve: {exc}") from None
    return Serve(port=args.serve, host=host, hold=sys.stdin.isatty(), announce=_announce)


def _interrupted(error: BaseException) -> bool:
    """Whether Ctrl-C alone ended the run."""
    if isinstance(error, BaseExceptionGroup):
        return error.split(KeyboardInterrupt)[1] is None
    return isinstance(error, KeyboardInterrupt)


def _listen_error(error: BaseException) -> OSError | None:
    from runtime.gateway.server import listen_error

    return listen_error(error)


def _announce(base_url: str) -> None:
    print(f"dashboard: {base_url}/dashboard", file=sys.stderr, flush=True)


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot write ({exc.strerror})") from None


class _Output:
    """Prints the report and writes its files as soon as it is built (a served run may keep
    serving after it), and keeps the exit code they make."""

    def __init__(self, args: argparse.Namespace, *, hold: bool) -> None:
        self.args = args
        self.hold = hold
        self.exit_code = EXIT_INTERRUPTED  # until a report arrives

    def report(self, report: Report) -> None:
        args = self.args
        sys.stdout.write(render_terminal(report, color=sys.stdout.isatty()))
        sys.stdout.flush()
        self.exit_code = EXIT_PASSED if report.passed else EXIT_FAILED
        try:
            if args.json:
                _write(args.json, report.to_json())
            if args.html:
                _write(args.html, render_html(report))
        except ScenarioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exit_code = EXIT_BAD_INPUT
        if self.hold:
            print("the run is over; still serving its final state: Ctrl-C to stop", file=sys.stderr)


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
        serve = _serve(args, scenario)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    progress = ProgressLine(sys.stderr)
    output = _Output(args, hold=serve is not None and serve.hold)
    try:
        run_scenario(
            scenario,
            seed=args.seed,
            mode=args.mode,
            progress=progress,
            repl_socket=args.repl,
            serve=serve,
            on_report=output.report,
        )
    except (KeyboardInterrupt, OSError, BaseExceptionGroup) as exc:
        # The runtime's nurseries wrap what ends the run in exception groups.
        progress.close()
        if _interrupted(exc):
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        error = _listen_error(exc) if serve is not None else None
        if error is None:
            raise
        print(f"error: --serve: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return output.exit_code


if __name__ == "__main__":
    sys.exit(main())
