"""A JSON POST, read at once or streamed, handed straight to the client's transport, with what
`httpx.AsyncClient.send` would have done to it done once per adapter instead of once per call.

`AsyncClient.post` builds each request afresh (merging the URL, the client's headers and cookies,
the timeout), runs it through the auth flow, the redirect loop, the event hooks and the cookie
jar, and times it: about a quarter of the CPU a loopback call costs, and none of it changes from
one provider call to the next. `DirectPost` copies the client's headers once, adds the key
header as the auth flow does (the same headers in the same order: the same bytes on the wire),
and gives the transport the request. It steps aside, and the client sends, whenever the client
would do something else: a proxy mounted for the URL (from the environment), a cookie the
provider has set, an event hook, a closed client.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from actors.adapters.credentials import HeaderKeyAuth

__all__ = ["DirectPost"]


class DirectPost:
    """POSTs of bytes to URLs of one client, through its transport when nothing else applies."""

    def __init__(self, client: httpx.AsyncClient, auth: HeaderKeyAuth | None) -> None:
        self._client = client
        self._headers = client.headers.copy()
        self._auth = auth
        #: Per URL: whether the client sends it through its own transport (no proxy mounted).
        self._direct_urls: dict[httpx.URL, bool] = {}

    def applies(self, url: httpx.URL) -> bool:
        """Whether a POST to `url` may skip the client (else `client.post` it)."""
        client = self._client
        if client.is_closed or client.cookies.jar or any(client.event_hooks.values()):
            return False
        direct = self._direct_urls.get(url)
        if direct is None:
            route = getattr(client, "_transport_for_url", None)
            direct = self._direct_urls[url] = route is not None and route(url) is client._transport
        return direct

    async def post(self, url: httpx.URL, content: bytes) -> httpx.Response:
        """The response to POSTing `content` to `url`, read and closed, as `client.post` returns
        it (httpx's exceptions included)."""
        response = await self._send(url, content)
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    @contextlib.asynccontextmanager
    async def stream(self, url: httpx.URL, content: bytes) -> AsyncIterator[httpx.Response]:
        """The response to POSTing `content` to `url`, its body unread, as `client.stream`
        gives it; closed on exit."""
        response = await self._send(url, content)
        try:
            yield response
        finally:
            await response.aclose()

    async def _send(self, url: httpx.URL, content: bytes) -> httpx.Response:
        client = self._client
        request = httpx.Request(
            "POST",
            url,
            headers=self._headers,
            content=content,
            extensions={"timeout": client.timeout.as_dict()},
        )
        if self._auth is not None:  # last, after the content length, as the auth flow adds it
            self._auth.add_to(request.headers)
        response = await client._transport.handle_async_request(request)
        response.request = request
        if "set-cookie" in response.headers:
            client.cookies.extract_cookies(response)
        return response
