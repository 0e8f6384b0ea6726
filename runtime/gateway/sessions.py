"""Dashboard sessions: logging in with the admin key once gives the browser a random token in an
HttpOnly, SameSite=Strict cookie, so the key itself is never kept by the page.

Only each token's SHA-256 digest is held, with the operator's name and when the session ends
(12 h after login on trio's clock). At most `MAX_SESSIONS` live at once: a new login drops the
oldest. Nothing is written to disk: a restart logs everyone out.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Callable

import attrs
import trio

__all__ = ["COOKIE", "MAX_SESSIONS", "SESSION_TTL_S", "Session", "Sessions", "cookie_header"]

COOKIE = "uptax_session"
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 64


@attrs.frozen
class Session:
    #: The name the operator gave at login, or None.
    operator: str | None
    #: trio time at which the session ends.
    expires: float


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Sessions:
    """The live sessions of one gateway."""

    def __init__(
        self,
        *,
        ttl_s: float = SESSION_TTL_S,
        limit: int = MAX_SESSIONS,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.ttl_s = ttl_s
        self.limit = limit
        self._clock = clock
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, operator: str | None) -> str:
        """A new session's token (the only copy: it goes into the cookie)."""
        token = secrets.token_urlsafe(32)
        self._sessions[_digest(token)] = Session(operator, self._clock() + self.ttl_s)
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return token

    def get(self, token: str | None) -> Session | None:
        """The live session of `token`, or None (unknown, or expired: then it is forgotten)."""
        if not token:
            return None
        digest = _digest(token)
        session = self._sessions.get(digest)
        if session is None:
            return None
        if self._clock() >= session.expires:
            del self._sessions[digest]
            return None
        return session

    def close(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_digest(token), None)


def cookie_header(token: str, max_age_s: float = SESSION_TTL_S) -> str:
    """The `Set-Cookie` value carrying `token` (an empty token with age 0 ends it)."""
    return (
        f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age={int(max_age_s)}"
    )
