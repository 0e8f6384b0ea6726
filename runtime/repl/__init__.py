"""The debug console: attach to a live runtime, see every actor, steer breakers and faults."""

from runtime.repl.server import ReplServer, open_repl_server, serve_repl

__all__ = ["ReplServer", "open_repl_server", "serve_repl"]
