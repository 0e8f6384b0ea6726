"""A fleet of real `uptax serve` processes for the fleet tests: each on a free port with its own
instance id, all on one fake provider server (in a thread of the test process, so the test
counts what each provider received), sharing a `redis-server` and a PostgreSQL ledger when
asked. Started once per module: starting a process imports the whole package."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from redis_support import free_port

from runtime.testing import FakeProviderServer, open_fake_provider_server

KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-0123456789abcdef",
    "ANTHROPIC_API_KEY": "sk-ant-test-0",
    "UPTAX_ADMIN_KEY": "admin-test-fleet-0123456789",
}
ASK = {
    "model": "uptax/auto",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "VAT on books?"}],
}
#: A `breaker_opened` log line's reason (structlog's key=value rendering).
_OPENED = re.compile(r"event='breaker_opened' .*?reason='([a-z_]+)'")
#: When a half-open probe failed: the `breaker_opened` line it led to.
_PROBE_FAILED = re.compile(
    r"timestamp='([^']+)' .*?event='breaker_opened' .*?reason='probe_failed'"
)
#: How long a breaker stays open after a trip (`fleet_config`): a fleet probes once per period.
OPEN_S = 0.5
#: Starting a process imports the whole package: seconds on a slow, busy machine.
START_TIMEOUT_S = 60.0


def fleet_config(fake: FakeProviderServer, **sections: Any) -> dict[str, Any]:
    """A primary provider (openai) and a fallback (anthropic), both on `fake`, with breakers
    that trip after 2 failures and stay open 0.5 s, one probe when half-open; `sections` replace
    or add tables."""
    breaker = {
        "consecutive_failures": 2,
        "open_s": OPEN_S,
        "open_multiplier": 1.0,
        "half_open_probes": 1,
    }
    providers: list[dict[str, Any]] = [
        {
            "name": name,
            "kind": name,
            "models": [model],
            "base_url": fake.url_for(name),
            "read_timeout_s": 10.0,
            "breaker": breaker,
            # Off: the outage's wasted calls (README) were measured without recovery probes.
            "recovery": {"probe": "off"},
        }
        for name, model in (("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet"))
    ]
    return {
        "runtime": {"deadline_s": 30, "log_level": "warning"},
        "providers": providers,
        "levels": [
            {"name": "primary", "providers": ["openai"], "timeout_s": 10},
            {"name": "secondary", "providers": ["anthropic"], "timeout_s": 10},
        ],
        "models": {
            "gpt-4o-mini": {"input_usd_per_mtok": 0.15, "output_usd_per_mtok": 0.6},
            "claude-sonnet": {"input_usd_per_mtok": 3, "output_usd_per_mtok": 15},
        },
        **sections,
    }


def shared_state(redis_url: str, prefix: str) -> dict[str, Any]:
    # A busy machine's event loop must not look like Redis down: a wide command timeout.
    return {
        "backend": "redis",
        "url": redis_url,
        "key_prefix": prefix,
        "sync_interval_s": 0.05,
        "command_timeout_s": 2.0,
    }


def toml(data: Mapping[str, Any], path: tuple[str, ...] = ()) -> str:
    """`data` as TOML: scalars and lists of scalars, tables, arrays of tables."""
    lines, nested = [], []
    for key, value in data.items():
        if isinstance(value, Mapping):
            nested.append(f"\n[{_dotted((*path, key))}]\n{toml(value, (*path, key))}")
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            for item in value:
                nested.append(f"\n[[{_dotted((*path, key))}]]\n{toml(item, (*path, key))}")
        else:
            lines.append(f"{json.dumps(key)} = {_value(value)}")
    return "\n".join(lines) + "".join(nested)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(json.dumps(part) for part in path)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


@attrs.define
class Instance:
    """One `uptax serve` process."""

    id: str
    port: int
    process: subprocess.Popen[bytes]
    alive: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last flush."""
        self.alive = False
        self.process.kill()
        self.process.wait()

    def stop(self) -> int:
        """SIGTERM, and its exit status once it has closed (its ledger written)."""
        if self.alive:
            self.alive = False
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def _ready(instance: Instance, deadline: float) -> None:
    while time.monotonic() < deadline:
        if instance.process.poll() is not None:
            raise RuntimeError(f"{instance.id} exited with {instance.process.returncode}")
        try:
            if httpx.get(instance.url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # setup only: waiting for the process to listen
    raise RuntimeError(f"{instance.id} not ready within {START_TIMEOUT_S} s")


class Fleet:
    """`size` `uptax serve` processes of one config (instances i0, i1, ...)."""

    def __init__(self, config: Mapping[str, Any], workdir: Path, size: int = 3) -> None:
        self.config = config
        self.workdir = workdir
        self.environ = {**os.environ, **KEYS}
        self.instances = [self._spawn(f"i{n}") for n in range(size)]

    def _spawn(self, instance: str, port: int | None = None) -> Instance:
        data = dict(self.config)
        if "state" in data:
            data["state"] = {**data["state"], "instance": instance}
        path = self.workdir / f"{instance}.toml"
        path.write_text(toml(data))
        port = port or free_port()
        uptax = Path(sys.executable).parent / "uptax"
        with (self.workdir / f"{instance}.log").open("ab") as log:
            process = subprocess.Popen(
                [str(uptax), "serve", "--config", str(path), "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environ,
            )
        return Instance(instance, port, process)

    def ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        for instance in self.instances:
            _ready(instance, deadline)

    def trips(self) -> collections.Counter[str]:
        """The breaker trips every instance has logged so far, by reason (`breaker_opened` is
        a warning: the processes' log level shows it). A failed half-open probe is one
        `probe_failed` trip: one call the provider received."""
        reasons: collections.Counter[str] = collections.Counter()
        for instance in self.instances:
            text = (self.workdir / f"{instance.id}.log").read_text(errors="replace")
            reasons.update(_OPENED.findall(text))
        return reasons

    def failed_probes(self, since: float) -> list[float]:
        """When each half-open probe that failed after `since` (seconds since the epoch) came
        back, anywhere in the fleet, in order."""
        times = []
        for instance in self.instances:
            text = (self.workdir / f"{instance.id}.log").read_text(errors="replace")
            for stamp in _PROBE_FAILED.findall(text):
                at = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                if at >= since:
                    times.append(at)
        return sorted(times)

    def stop(self) -> None:
        """SIGTERM: each writes what its ledger still queues before it exits."""
        for instance in self.instances:
            if instance.alive:
                instance.process.send_signal(signal.SIGTERM)
        for instance in self.instances:
            instance.stop()


@attrs.frozen
class Answer:
    """One request sent to a fleet: whose (a tenant's name, "" for nobody's), the instance it
    went to, its status (0: no answer), its request id, and when it ended."""

    tenant: str
    instance: str
    status: int
    request_id: str
    at: float


async def _send(
    http: httpx.AsyncClient, instance: Instance, tenant: str, key: str | None, answers: list[Answer]
) -> None:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    try:
        reply = await http.post(instance.url + "/v1/chat/completions", json=ASK, headers=headers)
    except httpx.TransportError:
        answers.append(Answer(tenant, instance.id, 0, "", time.monotonic()))
        return
    request_id = reply.headers.get("x-request-id", "")
    answers.append(Answer(tenant, instance.id, reply.status_code, request_id, time.monotonic()))


async def traffic(
    fleet: Fleet,
    count: int,
    every_s: float,
    keys: Mapping[str, str] | None = None,
    tenant: Callable[[int], str] = lambda n: "",
) -> list[Answer]:
    """`count` requests, one every `every_s` (none waits for the one before), round-robin
    over the instances still alive; the `n`th from `tenant(n)`, with its key in `keys` (no
    key when it has none there)."""
    answers: list[Answer] = []
    turn = itertools.count()
    async with httpx.AsyncClient(timeout=30) as http, trio.open_nursery() as nursery:
        for n in range(count):
            alive = [i for i in fleet.instances if i.alive]
            who = tenant(n)
            key = None if keys is None else keys.get(who)
            nursery.start_soon(_send, http, alive[next(turn) % len(alive)], who, key, answers)
            await trio.sleep(every_s)
    return answers


class ThreadedFakeServer:
    """The fake provider server in a trio run of its own thread, so processes started by a
    module's fixtures can share it across tests; faults go through its HTTP admin."""

    def __init__(self) -> None:
        self._started = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._serve,), daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the fake provider server did not start")

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            async with open_fake_provider_server() as server:
                self.server = server
                self._started.set()
                await trio.sleep_forever()

    def calls(self, provider: str) -> int:
        """How many requests `provider` has received so far."""
        return len(self.server.requests(provider))

    def inject(self, provider: str, **fault: Any) -> None:
        url = f"{self.server.base_url}/_uptax/faults/{provider}"
        httpx.put(url, json=fault, timeout=10).raise_for_status()

    def heal(self, provider: str) -> None:
        httpx.delete(f"{self.server.base_url}/_uptax/faults/{provider}", timeout=10)

    def close(self) -> None:
        trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(30)
