"""`uptax serve`: hypercorn's trio worker and the runtime in one trio run.

`open_gateway` serves a runtime on a loopback port inside the caller's run (tests, embedding);
`serve_runtime` serves one already open (the scenario runner's, so the dashboard shows the run it
drives); `main` is the command. With no `--config` the shipped demo config is served (simulated
providers), so a fresh machine answers without keys. SIGTERM and SIGINT stop accepting, let
requests in flight finish within `[supervision].shutdown_grace_s`, then the runtime closes and
whatever is left ends in `RuntimeClosed` (a 503 to its client), never silently.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator

import attrs
import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio import serve

from actors.config import Config, load_config
from actors.errors import ConfigError
from runtime.demo import default_config_path
from runtime.embed import Runtime, open_runtime
from runtime.gateway.app import build_app
from runtime.gateway.dashboard import Dashboard
from runtime.gateway.history import open_live_history
from runtime.gateway.ledger import LedgerError
from runtime.gateway.policy import open_access
from runtime.gateway.tenants import Authenticator, is_loopback

__all__ = [
    "GatewayServer",
    "ListenError",
    "build_parser",
    "listen_error",
    "main",
    "open_gateway",
    "serve_runtime",
]

_log = structlog.get_logger("runtime.gateway")

#: How long past the shutdown grace hypercorn waits for the last responses (the 503s of the
#: requests the runtime cancelled) to be written before it drops the connections.
WRITE_MARGIN_S = 3.0


@attrs.frozen
class GatewayServer:
    """A running gateway: its runtime, where it listens, and its dashboard."""

    rt: Runtime
    host: str
    port: int
    dashboard: Dashboard | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class ListenError(OSError):
    """The gateway cannot listen on its address (in use, not this host's, not allowed)."""


def listen_error(error: BaseException) -> ListenError | None:
    """The `ListenError` that `error` is, alone inside the exception groups nurseries wrap it in;
    None when it is anything else."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error if isinstance(error, ListenError) else None


def _ledger_error(error: BaseException) -> LedgerError | None:
    """The `LedgerError` that `error` is (the ledger's database unreachable at start), alone
    inside the exception groups nurseries wrap it in; None when it is anything else."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error if isinstance(error, LedgerError) else None


class _HypercornConfig(HypercornConfig):
    """hypercorn's config, its listening sockets set to drop a connection whose peer has taken
    no data for `write_timeout_s` (TCP_USER_TIMEOUT, inherited by each accepted connection)."""

    write_timeout_s: float = 60.0

    def create_sockets(self) -> Sockets:
        try:
            sockets = super().create_sockets()
        except OSError as exc:
            where = ", ".join(self.bind)
            raise ListenError(f"cannot listen on {where} ({exc.strerror or exc})") from exc
        option = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only
        if option is not None:
            for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
                sock.setsockopt(socket.IPPROTO_TCP, option, int(self.write_timeout_s * 1000))
        return sockets


def _hypercorn_config(host: str, port: int, config: Config) -> HypercornConfig:
    hyper = _HypercornConfig()
    hyper.bind = [f"{host}:{port}"]
    hyper.graceful_timeout = config.supervision.shutdown_grace_s + WRITE_MARGIN_S
    hyper.accesslog = None
    hyper.errorlog = None
    # A client silent mid-request is cut off; one trickling its body is `body_timeout_s`'s.
    hyper.read_timeout = config.gateway.read_timeout_s  # type: ignore[assignment]  # float works
    hyper.write_timeout_s = config.gateway.write_timeout_s
    hyper.keep_alive_timeout = 5
    return hyper


@contextlib.asynccontextmanager
async def open_gateway(
    config: Config, *, host: str = "127.0.0.1", port: int = 0, repl: str | None = None
) -> AsyncIterator[GatewayServer]:
    """Serve `config`'s runtime over HTTP until the block exits; port 0 picks a free port."""
    async with (
        open_runtime(config, repl_socket=repl) as rt,  # first: it configures logging
        serve_runtime(rt, host=host, port=port) as server,
    ):
        yield server


@contextlib.asynccontextmanager
async def serve_runtime(
    rt: Runtime, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[GatewayServer]:
    """Serve the open runtime `rt` over HTTP until the block exits; port 0 picks a free port.

    The gateway is the runtime's last user: when the block exits, the runtime stops taking
    requests (its cascade closes), so close `rt` right after.
    """
    config = rt.config
    async with (
        open_access(config, host, fleet=rt.fleet) as access,
        open_live_history(rt, tenants=access.tenant_spend) as history,
        trio.open_nursery() as nursery,
    ):
        stop = trio.Event()
        hyper = _hypercorn_config(host, port, config)
        app = build_app(rt, access, history, loopback=is_loopback(host))
        bound = await nursery.start(
            lambda task_status: serve(
                app,  # type: ignore[arg-type]  # Starlette is an ASGI app
                hyper,
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
        )
        bound_port = int(str(bound[0]).rsplit(":", 1)[1])
        _log.info("gateway_started", host=host, port=bound_port)
        try:
            yield GatewayServer(rt, host, bound_port, app.state.dashboard)
        finally:
            # hypercorn stops accepting; meanwhile the runtime gives the requests in flight the
            # grace to finish, then cancels them: each ends in RuntimeClosed, a 503 its client
            # gets (or an in-band error event), not a dropped connection. The dashboard's live
            # streams end at once: they would only hold the shutdown.
            history.close()
            stop.set()
            with trio.CancelScope(shield=True):
                await rt.cascade.close(config.supervision.shutdown_grace_s)


def build_parser(prog: str = "uptax serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the runtime as an OpenAI- and Anthropic-compatible HTTP gateway.",
    )
    parser.add_argument("--config", help="config file (default: the shipped demo config)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=4000, help="port (default 4000)")
    parser.add_argument("--repl", help="also serve the debug console on this unix socket")
    return parser


async def _serve_until_signalled(config: Config, host: str, port: int, repl: str | None) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_gateway(config, host=host, port=port, repl=repl) as server:
            print(f"uptax gateway: serving on {server.base_url}", flush=True)
            async for signum in signals:
                _log.warning("gateway_stopping", signal=signal.Signals(signum).name)
                break


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config or default_config_path())
        # Before anything starts: no tenants and no master key off loopback, or a key missing.
        Authenticator.from_config(config, args.host, os.environ)
    except ConfigError as exc:
        print(f"uptax serve: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(_serve_until_signalled, config, args.host, args.port, args.repl)
    except (OSError, LedgerError, BaseExceptionGroup) as exc:
        error: Exception | None = listen_error(exc) or _ledger_error(exc)
        if error is None:
            raise
        print(f"uptax serve: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
