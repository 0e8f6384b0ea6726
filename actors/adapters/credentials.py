"""Credentials: reading a key from the environment and sending it without storing it client-wide."""

from __future__ import annotations

import os
from collections.abc import Generator

import httpx

from actors.secrets import register_secret

__all__ = ["HeaderKeyAuth", "read_api_key"]


def read_api_key(env_name: str | None) -> str | None:
    """The key in `env_name`, or None when unset or blank. Registered for log redaction."""
    if env_name is None:
        return None
    value = os.environ.get(env_name, "").strip()
    if not value:
        return None
    register_secret(value)
    return value


class HeaderKeyAuth(httpx.Auth):
    """Adds the key header as each request is sent, so the key lives in no client-wide state."""

    def __init__(self, header: str, value: str) -> None:
        self._header = header
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.add_to(request.headers)
        yield request

    def add_to(self, headers: httpx.Headers) -> None:
        """Set the key header in `headers`."""
        headers[self._header] = self._value

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} {self._header}: ***>"
