"""Charging a request once its response has been sent: a streamed reply's cost and tokens are
known only when its last event is out, so the charge runs after the response, in its task.

A whole reply is left by `Gateway.complete` in the request's state (`reply`); a stream's is on
its `EventStreamResponse`. A request that ended without a reply (an error, a client that left,
a stream that failed after its response began) is not charged: what a fleet reserved for it is
released instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from actors.messages import Reply
from runtime.gateway.streaming import EventStreamResponse, Receive, Scope, Send

__all__ = ["metered"]

Charge = Callable[[Reply], Awaitable[None]]
Release = Callable[[], Awaitable[None]]

#: How long the charge or release may take once the response is over (it is shielded from
#: the cancellation that ended a request, so it must be bounded).
SETTLE_TIMEOUT_S = 5.0


class _Metered(Response):
    """`inner`, then `charge` with the reply it carried, or `release` when it carried none."""

    def __init__(
        self, inner: Response, http: HTTPRequest, charge: Charge, release: Release
    ) -> None:
        super().__init__(status_code=inner.status_code)
        self._inner = inner
        self._http = http
        self._charge = charge
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._inner(scope, receive, send)
        finally:
            reply: Any = (
                self._inner.reply
                if isinstance(self._inner, EventStreamResponse)
                else getattr(self._http.state, "reply", None)
            )
            with trio.CancelScope(shield=True), trio.move_on_after(SETTLE_TIMEOUT_S):
                if isinstance(reply, Reply):
                    await self._charge(reply)
                else:
                    await self._release()


async def _nothing() -> None:
    """Nothing reserved: nothing to release."""


def metered(
    response: Response, http: HTTPRequest, charge: Charge, release: Release = _nothing
) -> Response:
    """`response`, charging its reply with `charge` once it has been sent, or, when it ended
    without one, calling `release` (a fleet's reservation goes back)."""
    return _Metered(response, http, charge, release)
