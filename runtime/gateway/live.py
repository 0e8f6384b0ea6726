"""`GET /dashboard/api/live`: the live history as server-sent events.

The stream subscribes to the history before it replays the samples after the client's resume
point (`Last-Event-ID` or `?after=`), so nothing published meanwhile is missed, and any sample
both replayed and received live is sent once. It runs in the response's own task, like the
gateway's reply streams (`runtime.gateway.streaming`). It ends when the client leaves, when it
falls so far behind that the history drops it (the browser reconnects and resumes), or when the
history closes because the gateway is stopping. A resume point past the newest sample is from
before the gateway restarted (seqs start again at 1): that client gets every sample held.
"""

from __future__ import annotations

import json

import trio
from starlette.responses import Response

from runtime.gateway.history import LiveHistory, LiveItem
from runtime.gateway.streaming import Receive, Scope, Send, watch_disconnect

__all__ = ["KEEP_ALIVE_S", "RETRY_MS", "LiveStreamResponse", "resume_point"]

RETRY_MS = 2000
KEEP_ALIVE_S = 15.0
_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
    # One stream per connection, so a shutdown never waits on an idle one.
    "connection": "close",
}


def resume_point(last_event_id: str | None, after: str | None) -> int:
    """The sample seq the client has seen (0: none): `Last-Event-ID` wins over `?after=`."""
    for value in (last_event_id, after):
        if value is not None and value.strip().isdigit():
            return int(value.strip())
    return 0


def _frame(item: LiveItem) -> bytes:
    head = f"event: {item.kind}\n"
    if item.seq is not None:
        head += f"id: {item.seq}\n"
    return f"{head}data: {item.data}\n\n".encode()


class LiveStreamResponse(Response):
    """The history's samples after `after`, then every sample, status and log event live."""

    def __init__(
        self, history: LiveHistory, after: int, *, keep_alive_s: float = KEEP_ALIVE_S
    ) -> None:
        super().__init__(status_code=200)
        self._history = history
        self._after = after
        self._keep_alive_s = keep_alive_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self._history.subscribe() as items:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(k.encode(), v.encode()) for k, v in _HEADERS.items()],
                }
            )
            ended = False
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_disconnect, receive, nursery.cancel_scope)
                await self._run(items, send)
                ended = True
                nursery.cancel_scope.cancel()
        if ended:  # else the client left first: nobody to tell
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _run(self, items: trio.MemoryReceiveChannel[LiveItem], send: Send) -> None:
        seen = self._after
        if seen > self._history.last_seq:
            seen = 0  # a resume point from before a restart: everything held is new to it
        replay = [f"retry: {RETRY_MS}\n\n".encode()]
        for sample in self._history.samples_after(seen):
            replay.append(_frame(LiveItem("sample", _json(sample), sample["seq"])))
            seen = sample["seq"]
        await _body(send, b"".join(replay))
        while True:
            with trio.move_on_after(self._keep_alive_s) as idle:
                try:
                    item = await items.receive()
                except trio.EndOfChannel:
                    return
            if idle.cancelled_caught:
                await _body(send, b": keep-alive\n\n")
                continue
            if item.seq is not None:
                if item.seq <= seen:
                    continue
                seen = item.seq
            await _body(send, _frame(item))


async def _body(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


def _json(document: object) -> str:
    return json.dumps(document, separators=(",", ":"))
