"""A streamed reply as an ASGI response: the runtime's stream, rendered by the API's dialect.

The stream is opened and run inside the response's own task (`__call__`), never in a generator
handed to another task, so its cancel scopes stay where trio wants them. Before the first event
a failure is an ordinary error response with its status; after it, the dialect's in-band error
event, never a silent cut. A client that disconnects cancels the stream, and with it the
provider call in flight.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

import trio
from starlette.responses import Response

from actors.cascade import Answering
from actors.errors import FallbackError
from actors.messages import Reply, ReplyDone, Request, TextDelta, ToolCallDelta
from runtime.embed import Runtime
from runtime.gateway.errors import Dialect, GatewayError, error_body, from_exception

__all__ = ["EventStreamResponse", "StreamRenderer", "sse", "watch_disconnect"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event carrying `data` as JSON (or as is, when it is a str)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {text}\n\n".encode()


class StreamRenderer(Protocol):
    """One API's event sequence for a streamed reply."""

    dialect: Dialect

    def start(self, answering: Answering) -> Sequence[bytes]: ...

    def delta(self, event: TextDelta | ToolCallDelta) -> Sequence[bytes]: ...

    def done(self, reply: Reply) -> Sequence[bytes]: ...

    def error(self, error: GatewayError) -> Sequence[bytes]: ...


async def watch_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    """Cancel `scope` when the client goes away (the body has already been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


class EventStreamResponse(Response):
    """Runs `request` as a stream and sends it as server-sent events in `renderer`'s dialect."""

    def __init__(
        self,
        rt: Runtime,
        request: Request,
        renderer: StreamRenderer,
        headers: Callable[[Answering | None], dict[str, str]],
    ) -> None:
        super().__init__(status_code=200)
        self._rt = rt
        self._request = request
        self._renderer = renderer
        self._header_fn = headers
        #: Set once the response has ended: the reply, or the error the client got.
        self.reply: Reply | None = None
        self.error: GatewayError | None = None
        self.disconnected = False
        self.answering: Answering | None = None
        #: Called once the response has ended, however it ended (the access log, the metrics).
        self.on_end: Callable[[EventStreamResponse], None] = lambda response: None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_disconnect, receive, nursery.cancel_scope)
                try:
                    await self._run(send)
                finally:
                    nursery.cancel_scope.cancel()
            caught = nursery.cancel_scope.cancelled_caught
            if caught and self.reply is None and self.error is None:
                self.disconnected = True
        except BaseException:
            if self.reply is None and self.error is None:
                self.disconnected = True  # cancelled from outside (shutdown)
            raise
        finally:
            self.on_end(self)

    async def _run(self, send: Send) -> None:
        started = False
        renderer = self._renderer
        try:
            async with self._rt.stream(self._request) as stream:
                async for event in stream.events():
                    if not started:
                        started = True
                        await self._start(send, stream.answering)
                    if isinstance(event, ReplyDone):
                        self.reply = event.reply
                        await self._send(send, renderer.done(event.reply))
                    else:
                        await self._send(send, renderer.delta(event))
        except FallbackError as exc:
            self.error = from_exception(exc)
            if not started:
                await self._send_error(send, self.error)
                return
            await self._send(send, renderer.error(self.error))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _start(self, send: Send, answering: Answering | None) -> None:
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            # One stream per connection: hypercorn keeps a connection that carried a stream
            # open through a shutdown until its grace ends, even when it is idle.
            "connection": "close",
            **self._header_fn(answering),
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        self.answering = answering
        if answering is not None:
            await self._send(send, self._renderer.start(answering))

    async def _send(self, send: Send, pieces: Sequence[bytes]) -> None:
        if pieces:
            await send({"type": "http.response.body", "body": b"".join(pieces), "more_body": True})

    async def _send_error(self, send: Send, error: GatewayError) -> None:
        body = json.dumps(error_body(error, self._renderer.dialect)).encode()
        headers = {"content-type": "application/json", **self._header_fn(None), **error.headers()}
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
