"""An outage of the primary, measured in real time against the fake provider server.

`measure_outage` serves a primary (OpenAI protocol) and a secondary (Anthropic protocol) from one
fake server, sends open-loop traffic through a runtime at `rps`, takes the primary down for
`outage_s` and up again, and reports what the outage cost: the completion calls the primary
received while down (wasted: each failed before traffic moved), the recovery probes it received
meanwhile, and how long after it came back it served a reply again and its breaker closed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from actors.config import Config, parse_config
from actors.faults import Fault, FaultKind
from actors.messages import Request
from runtime.embed import Runtime, open_runtime
from runtime.testing.server import FakeProviderServer, open_fake_provider_server

#: The variable the runtime reads the (placeholder) key from: the fake server takes any key.
KEY_ENV = "UPTAX_OUTAGE_FAKE_KEY"
PRIMARY, SECONDARY = "primary", "secondary"


@attrs.frozen
class OutageResult:
    """What one outage cost; times in seconds from the end of the outage."""

    outage_s: float
    rps: float
    probe: str
    requests: int
    #: Requests that ended in an error (none should: the secondary answers).
    failed: int
    #: Completion calls the primary received while it was down.
    wasted_calls: int
    #: Other requests it received while down: recovery probes that list its models (completion
    #: probes are completion calls, counted in `wasted_calls`).
    probes: int
    #: To the first reply the primary served after the outage; None: none within the run.
    back_after_s: float | None
    #: To its breaker closing after the outage; None: it did not close within the run.
    closed_after_s: float | None


def outage_config(server: FakeProviderServer, recovery: Mapping[str, Any]) -> Config:
    """Two levels, one provider each, on `server`; the primary's `recovery` table as given."""
    return parse_config(
        {
            "providers": [
                {
                    "name": PRIMARY,
                    "kind": "openai",
                    "models": ["gpt-4o-mini"],
                    "base_url": server.url_for(PRIMARY, "openai"),
                    "api_key_env": KEY_ENV,
                    "recovery": dict(recovery),
                },
                {
                    "name": SECONDARY,
                    "kind": "anthropic",
                    "models": ["claude-3-5-haiku-latest"],
                    "base_url": server.url_for(SECONDARY, "anthropic"),
                    "api_key_env": KEY_ENV,
                },
            ],
            "levels": [
                {"name": "primary", "providers": [PRIMARY]},
                {"name": "secondary", "providers": [SECONDARY]},
            ],
        },
        source="<outage>",
    )


@attrs.define
class _Run:
    """One outage's traffic and what it saw."""

    rt: Runtime
    server: FakeProviderServer
    heal_at: float = float("inf")
    requests: int = 0
    failed: int = 0
    back_at: float | None = None
    closed_at: float | None = None

    async def one(self, number: int) -> None:
        request = Request(prompt=f"request {number} about VAT", max_tokens=16, deadline_s=10)
        try:
            reply = await self.rt.complete(request)
        except Exception:
            self.failed += 1
            return
        now = trio.current_time()
        if reply.provider == PRIMARY and now >= self.heal_at and self.back_at is None:
            self.back_at = now

    def received(self) -> tuple[int, int]:
        """Completion calls and other requests (probes) the primary has received so far."""
        requests = self.server.requests(PRIMARY)
        posts = sum(1 for r in requests if r.method == "POST")
        return posts, len(requests) - posts

    async def watch_breaker(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Note when the primary's breaker closes after the outage."""
        with self.rt.events.subscribe() as events:
            task_status.started()
            async for event in events:
                if (
                    event.event == "breaker_closed"
                    and event.fields.get("provider") == PRIMARY
                    and event.at >= self.heal_at
                    and self.closed_at is None
                ):
                    self.closed_at = event.at

    async def drive(
        self, nursery: trio.Nursery, rps: float, warmup_s: float, outage_s: float, settle_s: float
    ) -> tuple[int, int]:
        """Send the traffic, take the primary down and up; what it received while down."""
        start = trio.current_time()
        down_at, self.heal_at = start + warmup_s, start + warmup_s + outage_s
        before = after = (0, 0)
        while (at := start + self.requests / rps) < self.heal_at + settle_s:
            if before == (0, 0) and at >= down_at:
                await trio.sleep_until(down_at)
                before = self.received()
                self.server.target(PRIMARY).inject(Fault(FaultKind.OUTAGE, status=503))
            if after == (0, 0) and at >= self.heal_at:
                await trio.sleep_until(self.heal_at)
                after = self.received()
                self.server.heal(PRIMARY)
            await trio.sleep_until(at)
            nursery.start_soon(self.one, self.requests)
            self.requests += 1
        return after[0] - before[0], after[1] - before[1]


async def measure_outage(
    *,
    outage_s: float = 20.0,
    rps: float = 20.0,
    warmup_s: float = 2.0,
    settle_s: float = 10.0,
    recovery: Mapping[str, Any] | None = None,
) -> OutageResult:
    """Run the outage in real time (`warmup_s` of traffic before it, `settle_s` after)."""
    os.environ.setdefault(KEY_ENV, "fake-key-for-the-fake-server")
    recovery = dict(recovery or {})
    providers = {PRIMARY: "openai", SECONDARY: "anthropic"}
    async with (
        open_fake_provider_server(providers) as server,
        open_runtime(outage_config(server, recovery)) as rt,
        trio.open_nursery() as nursery,
    ):
        run = _Run(rt, server)
        await nursery.start(run.watch_breaker)
        wasted, probes = await run.drive(nursery, rps, warmup_s, outage_s, settle_s)
        await trio.sleep(1.0)  # the last requests end (every reply is fast)
        nursery.cancel_scope.cancel()
    return OutageResult(
        outage_s=outage_s,
        rps=rps,
        probe=str(recovery.get("probe", "auto")),
        requests=run.requests,
        failed=run.failed,
        wasted_calls=wasted,
        probes=probes,
        back_after_s=None if run.back_at is None else run.back_at - run.heal_at,
        closed_after_s=None if run.closed_at is None else run.closed_at - run.heal_at,
    )
