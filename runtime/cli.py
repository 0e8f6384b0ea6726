"""The `uptax` command: one entry point, each subcommand owned by the module that does the work."""

from __future__ import annotations

import sys
from collections.abc import Callable

USAGE = """\
usage: uptax COMMAND [ARGS...]

commands:
  init [PATH] [--force]  write a commented starter config (default: uptax.toml)
  scenario run FILE [--seed N] [--variant NAME] [--json PATH] [--html PATH]
               [--mode virtual|http] [--repl PATH] [--serve PORT [--host 127.0.0.1]]
                         run a chaos scenario and report whether its expectations hold; with
                         --mode http --serve, watch it live at http://HOST:PORT/dashboard
  scenario compare FILE [--variant NAME=CONFIG.toml]... [--seed N | --seeds 1-10]
                   [--json PATH] [--html PATH]
                         run a scenario under its [[variants]] (and config files) from the
                         same seed, and show them side by side
  scenario check FILE...
                         parse and check scenario files without running them
  repl PATH [-c COMMAND]... [--token-file FILE]
                         attach a debug console to a running runtime's socket
  serve [--config PATH] [--host 127.0.0.1] [--port 4000] [--repl PATH]
                         serve the runtime as an OpenAI- and Anthropic-compatible gateway
  tenants list|spend [--config PATH] [--ledger PATH|URL] | tenants add-key TENANT
                         the gateway's tenants, their spend, a new API key and its SHA-256
  fake-providers [--host HOST] [--port PORT] [--providers NAME:KIND,...] [--seed N]
                         serve the fake OpenAI/Anthropic/Gemini/Ollama server on 127.0.0.1
  help                   show this message
"""


def _init(argv: list[str]) -> int:
    from runtime.starter import main

    return main(argv)


def _scenario(argv: list[str]) -> int:
    from runtime.scenario.cli import main

    return main(argv)


def _repl(argv: list[str]) -> int:
    from runtime.repl.client import main

    return main(argv)


def _serve(argv: list[str]) -> int:
    from runtime.gateway.server import main

    return main(argv)


def _tenants(argv: list[str]) -> int:
    from runtime.gateway.tenants_cli import main

    return main(argv)


def _fake_providers(argv: list[str]) -> int:
    from runtime.testing.server import main

    return main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "init": _init,
    "scenario": _scenario,
    "repl": _repl,
    "serve": _serve,
    "tenants": _tenants,
    "fake-providers": _fake_providers,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stderr.write(USAGE)
        return 2
    if args[0] in ("help", "-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        sys.stderr.write(
            f"uptax: unknown command {args[0]!r}; commands: {', '.join(COMMANDS)}, help\n"
        )
        return 2
    try:
        return command(args[1:])
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
