"""`uptax scenario run FILE [--seed N] [--variant NAME] [--json PATH] [--html PATH]
[--mode virtual|http] [--repl PATH] [--serve PORT [--host HOST]]`, and
`uptax scenario compare FILE [--variant NAME=CONFIG.toml ...] [--seed N | --seeds 1-10]
[--json PATH] [--html PATH] [--mode virtual]`.

Exit codes of `run`: 0 every expectation held, 1 one failed, 2 the scenario file (or the command
line) is wrong, with a message naming the file, the table and the key, or the gateway cannot
listen. `compare` exits 0 once every variant ran (its table says which expectations held), 2 on
bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import structlog

from runtime.logs import configure_logging
from runtime.scenario.compare import compare, variants_to_compare
from runtime.scenario.compare_html import render_comparison_html
from runtime.scenario.compare_terminal import render_comparison
from runtime.scenario.format import Scenario, ScenarioError, load_scenario, load_variant
from runtime.scenario.html import render_html
from runtime.scenario.report import Report
from runtime.scenario.runner import MODES, ProgressLine, Serve, run_scenario
from runtime.scenario.sweep import parse_seeds
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
    run.add_argument(
        "--variant",
        metavar="NAME",
        help="run under this [[variants]] table of the file rather than the file's own config",
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
    _compare_parser(commands)
    check = commands.add_parser("check", help="parse and check scenario files without running")
    check.add_argument("files", nargs="+")
    return parser


def _compare_parser(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help="run a scenario under two or more variants and show them side by side",
        description="Run one scenario under each variant (its [[variants]] tables, --variant "
        "config files, and the implicit baseline: the scenario's own config), from the same "
        "seed with the same traffic and faults, and print one table side by side.",
    )
    compare.add_argument("file", help="scenario TOML file")
    compare.add_argument(
        "--variant",
        action="append",
        default=[],
        type=_named_file,
        metavar="NAME=CONFIG.toml",
        help="also compare under this whole runtime config file (repeatable)",
    )
    seeds = compare.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None, help="seed (default: the file's)")
    seeds.add_argument(
        "--seeds",
        type=_seeds,
        metavar="1-10",
        help="run every seed (1-10, or 1,4,9); each value is then the median (min..max)",
    )
    compare.add_argument("--json", metavar="PATH", help="also write every seed's numbers as JSON")
    compare.add_argument(
        "--html", metavar="PATH", help="also write an HTML page with the table and timelines"
    )
    compare.add_argument(
        "--mode",
        choices=("virtual",),
        default="virtual",
        help="virtual only: real time would give each variant its own schedule",
    )


def _named_file(text: str) -> tuple[str, str]:
    name, sign, path = text.partition("=")
    if not sign or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=CONFIG.toml")
    return name, path


def _seeds(text: str) -> list[int]:
    try:
        seeds = parse_seeds(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not seeds like 1-10 or 1,4,9") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} gives no seed, or a seed twice")
    return seeds


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


def _variant(scenario: Scenario, name: str) -> Scenario:
    for variant in scenario.variants:
        if variant.name == name:
            return scenario.under(variant)
    known = ", ".join(v.name for v in scenario.variants) or "none"
    raise ScenarioError(f"{scenario.path}: --variant {name}: no such [[variants]] (known: {known})")


def _compare(args: argparse.Namespace, scenario: Scenario) -> int:
    """Run the comparison and print it; a ScenarioError is bad input (exit 2)."""
    extra = [load_variant(scenario, name, path) for name, path in args.variant]
    variants = variants_to_compare(scenario, extra)
    seeds = args.seeds or [scenario.info.seed if args.seed is None else args.seed]
    if not structlog.is_configured():
        # The runtime's warnings of every run would bury the table: errors only.
        configure_logging("error")
    started = time.perf_counter()
    progress = ProgressLine(sys.stderr)
    try:
        comparison = compare(scenario, variants, seeds, progress=progress)
    except (KeyboardInterrupt, BaseExceptionGroup) as exc:
        progress.close()
        if not _interrupted(exc):
            raise
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    sys.stdout.write(render_comparison(comparison.data, color=sys.stdout.isatty()))
    sys.stdout.flush()
    runs = len(variants) * len(seeds)
    wall = time.perf_counter() - started
    print(f"{runs} runs in {wall:.1f}s wall", file=sys.stderr)
    if args.json:
        _write(args.json, comparison.to_json())
    if args.html:
        _write(args.html, render_comparison_html(comparison))
    return EXIT_PASSED


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
                variants = f", {len(scenario.variants)} variant(s)" if scenario.variants else ""
                print(f"{file}: ok ({scenario.name}, {len(scenario.faults)} fault step(s){variants})")
            return EXIT_PASSED
        scenario = load_scenario(args.file)
        if args.command == "compare":
            return _compare(args, scenario)
        if args.variant is not None:
            scenario = _variant(scenario, args.variant)
        if scenario.fleet is not None and args.mode != "virtual":
            raise ScenarioError(f"{scenario.path}: table [fleet]: runs in virtual mode only")
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
