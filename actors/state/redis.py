"""The Redis backend, on coredis (async and typed; it runs on trio through anyio, so no call
blocks the event loop). Each operation is one command or one Lua script (`actors.state.scripts`),
so it is atomic however many instances run it at once. Every call is bounded by
`command_timeout_s`: past it, or on any error from the connection, it raises `StoreUnavailable`
and the caller carries on from local state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

import anyio
import coredis
import coredis.exceptions
import trio
from coredis.retry import NoRetryPolicy

from actors.config import StateConfig
from actors.state import scripts
from actors.state.store import BucketMode, Instance, StoreUnavailable

__all__ = ["RedisStore", "open_redis_store"]

T = TypeVar("T")

#: What a dead, restarting or paused server makes coredis (and anyio under it) raise.
_FAILURES = (
    coredis.exceptions.RedisError,
    OSError,
    EOFError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


class RedisStore:
    """A `StateStore` in Redis, every key under `config.key_prefix`."""

    def __init__(self, client: coredis.Redis[str], config: StateConfig) -> None:
        self._client = client
        self._prefix = config.key_prefix
        self._timeout_s = config.command_timeout_s
        self._scripts = {
            name: client.register_script(getattr(scripts, name)) for name in scripts.__all__
        }

    def __repr__(self) -> str:
        return f"<RedisStore prefix={self._prefix!r}>"

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            with trio.fail_after(self._timeout_s):
                return await call
        except trio.TooSlowError:
            raise StoreUnavailable(f"no answer within {self._timeout_s} s") from None
        except _FAILURES as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        prefixed = [self._prefix + key for key in keys]
        return await self._call(self._scripts[name](keys=prefixed, args=list(args)))

    async def bucket(self, key: str, per_minute: float, amount: float, mode: BucketMode) -> float:
        return float(await self._script("BUCKET", [key], [per_minute, amount, mode]))

    async def add(self, key: str, amount: float, ttl_s: float) -> float:
        return float(await self._script("ADD", [key], [amount, _ms(ttl_s)]))

    async def reserve(
        self,
        keys: Sequence[str],
        limits: Sequence[float],
        amount: float,
        ttl_s: Sequence[float],
        marker: str | None = None,
    ) -> int:
        args = [amount, "0" if marker is None else "1", *limits, *(_ms(ttl) for ttl in ttl_s)]
        keyed = list(keys) if marker is None else [*keys, marker]
        return int(await self._script("RESERVE", keyed, args))

    async def counters(self, keys: Sequence[str]) -> list[float]:
        values = await self._call(self._client.mget([self._prefix + key for key in keys]))
        return [float(value) if value is not None else 0.0 for value in values]

    async def settle(
        self,
        keys: Sequence[str],
        amount: float,
        ttl_s: Sequence[float],
        once: str,
        once_ttl_s: float,
    ) -> list[float]:
        args = [amount, _ms(once_ttl_s), *(_ms(ttl) for ttl in ttl_s)]
        values = await self._script("SETTLE", [*keys, once], args)
        return [float(value) for value in values]

    async def failure(self, key: str, ago_s: float, ttl_s: float) -> int:
        return int(await self._script("FAILURE", [key], [_ms(ago_s), _ms(ttl_s)]))

    async def success(self, key: str, ago_s: float) -> None:
        await self._script("SUCCESS", [key], [_ms(ago_s)])

    async def seed(self, key: str, value: float, ttl_s: float) -> bool:
        set_ = self._client.set(
            self._prefix + key, repr(float(value)), px=_ms(ttl_s), condition=coredis.PureToken.NX
        )
        return bool(await self._call(set_))

    async def hold(self, key: str, value: str, seconds: float) -> None:
        await self._script("HOLD", [key], [value, _ms(seconds)])

    async def holds(self, keys: Sequence[str]) -> list[tuple[str, float] | None]:
        if not keys:
            return []
        flat = await self._script("HOLDS", keys, [])
        pairs = zip(flat[::2], flat[1::2], strict=True)
        return [None if value is None else (str(value), int(ms) / 1000.0) for value, ms in pairs]

    async def claim(self, key: str, owner: str, seconds: float) -> bool:
        set_ = self._client.set(
            self._prefix + key, owner, px=_ms(seconds), condition=coredis.PureToken.NX
        )
        if await self._call(set_):
            return True
        return await self._call(self._client.get(self._prefix + key)) == owner

    async def release(self, key: str, owner: str, also: Sequence[str] = ()) -> bool:
        return bool(await self._script("RELEASE", [key, *also], [owner]))

    async def put(self, key: str, value: str, seconds: float) -> None:
        await self._call(self._client.set(self._prefix + key, value, px=_ms(seconds)))

    async def delete(self, keys: Sequence[str]) -> None:
        if keys:
            await self._call(self._client.delete([self._prefix + key for key in keys]))

    async def get(self, key: str) -> str | None:
        return await self._call(self._client.get(self._prefix + key))

    async def beat(self, instance: str, summary: str, seconds: float) -> None:
        keys = ["instances", f"instance:{instance}"]
        await self._script("BEAT", keys, [instance, summary, _ms(seconds)])

    async def instances(self) -> list[Instance]:
        flat = await self._script("INSTANCES", ["instances"], [self._prefix + "instance:"])
        triples = zip(flat[::3], flat[1::3], flat[2::3], strict=True)
        return [Instance(str(id_), str(summary), int(ms) / 1000.0) for id_, summary, ms in triples]

    async def ping(self) -> None:
        await self._call(self._client.ping())

    async def aclose(self) -> None:
        """The client closes with `open_redis_store`'s block."""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@contextlib.asynccontextmanager
async def open_redis_store(config: StateConfig) -> AsyncIterator[RedisStore]:
    """A `RedisStore` on `config.url` while the block runs. A server that is down now does not
    stop the block from starting: the calls fail (`StoreUnavailable`) until it is back."""
    assert config.url is not None
    client: coredis.Redis[str] = coredis.Redis.from_url(
        config.url,
        decode_responses=True,
        connect_timeout=config.connect_timeout_s,
        stream_timeout=config.command_timeout_s,
        retry_policy=NoRetryPolicy(),
    )
    async with client:
        yield RedisStore(client, config)
