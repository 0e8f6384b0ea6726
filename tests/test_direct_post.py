"""`actors.adapters.direct`: an adapter's POST goes straight to the transport, with the same
request on the wire as `httpx.AsyncClient.post` would send, and through the client whenever the
client would do more (a proxy, a cookie, an event hook, a closed client)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from actors.adapters.credentials import HeaderKeyAuth
from actors.adapters.direct import DirectPost

URL = httpx.URL("https://api.example.test/v1/chat/completions")
REPLY = b'{"ok": true}'


class Body(httpx.AsyncByteStream):
    """A reply body read as the network gives it (httpx reads a bytes body at once)."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield REPLY


class Recorder(httpx.AsyncBaseTransport):
    """Records each request it is given; answers 200 with `REPLY` and `set_cookie`, if any."""

    def __init__(self, set_cookie: str | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.set_cookie = set_cookie

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        headers = {"set-cookie": self.set_cookie} if self.set_cookie else {}
        return httpx.Response(200, headers=headers, stream=Body())


def client_with(transport: httpx.AsyncBaseTransport, **kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
        auth=HeaderKeyAuth("x-api-key", "sk-secret"),
        timeout=httpx.Timeout(connect=1.5, read=9.0, write=9.0, pool=9.0),
        transport=transport,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_the_same_request_as_the_clients_post() -> None:
    transport = Recorder()
    client = client_with(transport)
    direct = DirectPost(client, HeaderKeyAuth("x-api-key", "sk-secret"))
    assert direct.applies(URL)
    response = await direct.post(URL, b'{"a":1}')
    await client.post(URL, content=b'{"a":1}')
    mine, theirs = transport.requests
    assert mine.method == theirs.method == "POST"
    assert mine.url == theirs.url
    assert mine.headers.raw == theirs.headers.raw  # the same headers, in the same order
    assert mine.content == theirs.content == b'{"a":1}'
    assert mine.extensions["timeout"] == theirs.extensions["timeout"]
    assert response.status_code == 200 and response.content == REPLY
    assert response.is_closed and response.request is mine
    assert "sk-secret" not in repr(direct) + repr(vars(direct))
    await client.aclose()


async def test_a_cookie_the_provider_sets_is_kept_and_sent_by_the_client() -> None:
    transport = Recorder(set_cookie="__cf_bm=abc; Path=/; Domain=api.example.test")
    client = client_with(transport)
    direct = DirectPost(client, HeaderKeyAuth("x-api-key", "sk-secret"))
    await direct.post(URL, b"{}")
    assert client.cookies.get("__cf_bm") == "abc"
    assert not direct.applies(URL)  # the client sends from now on, the cookie with it
    await client.post(URL, content=b"{}")
    assert transport.requests[-1].headers["cookie"] == "__cf_bm=abc"
    await client.aclose()


async def test_not_when_a_proxy_is_mounted_for_the_url() -> None:
    proxied = Recorder()
    client = client_with(Recorder(), mounts={"https://api.example.test": proxied})
    assert not DirectPost(client, None).applies(URL)
    assert DirectPost(client, None).applies(httpx.URL("https://other.example.test/v1"))
    await client.aclose()


async def test_not_with_event_hooks_or_once_the_client_is_closed() -> None:
    async def hook(request: httpx.Request) -> None:
        pass

    client = client_with(Recorder())
    direct = DirectPost(client, None)
    client.event_hooks = {"request": [hook]}
    assert not direct.applies(URL)
    client.event_hooks = {}
    assert direct.applies(URL)
    await client.aclose()
    assert not direct.applies(URL)
    with pytest.raises(RuntimeError):  # the client's own refusal, not a new connection
        await client.post(URL, content=b"{}")


async def test_a_stream_is_the_same_request_and_is_closed_on_exit() -> None:
    transport = Recorder()
    client = client_with(transport)
    direct = DirectPost(client, HeaderKeyAuth("x-api-key", "sk-secret"))
    async with direct.stream(URL, b'{"stream":true}') as response:
        assert not response.is_closed
        assert b"".join([chunk async for chunk in response.aiter_bytes()]) == REPLY
    assert response.is_closed
    async with client.stream("POST", URL, content=b'{"stream":true}'):
        pass
    mine, theirs = transport.requests
    assert mine.headers.raw == theirs.headers.raw
    assert mine.content == theirs.content
    await client.aclose()
