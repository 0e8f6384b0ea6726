"""Charging a request once its response has been sent: a streamed reply's cost and tokens are
known only when its last event is out, so the charge runs after the response, in its task.

A whole reply is left by `Gateway.complete` in the request's state (`reply`); a stream's is on
its `EventStreamResponse`. A request that ended without a reply (an error, a client that left)
is not charged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from actors.messages import Reply
from runtime.gateway.streaming import EventStreamResponse, Receive, Scope, Send

__all__ = ["metered"]

Charge = Callable[[Reply], Awaitable[None]]


class _Metered(Response):
    """`inner`, then `charge` with the reply it carried."""

    def __init__(self, inner: Response, http: HTTPRequest, charge: Charge) -> None:
        super().__init__(status_code=inner.status_code)
        self._inner = inner
        self._http = http
        self._charge = charge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner(scope, receive, send)
        reply: Any = (
            self._inner.reply
            if isinstance(self._inner, EventStreamResponse)
            else getattr(self._http.state, "reply", None)
        )
        if isinstance(reply, Reply):
            await self._charge(reply)


def metered(response: Response, http: HTTPRequest, charge: Charge) -> Response:
    """`response`, charging its reply with `charge` once it has been sent."""
    return _Metered(response, http, charge)
