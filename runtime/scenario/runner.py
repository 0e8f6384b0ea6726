"""Run a scenario against the runtime and build its report.

`virtual` mode runs the whole thing under `trio.testing.MockClock(autojump_threshold=0)`: the
clock jumps to the next deadline whenever every task is waiting, so an hour of traffic takes
seconds and a seed fixes every number in the report. `http` mode runs in real time: each
simulated provider becomes a real-protocol provider (`http_kind`) served by
`runtime.testing.open_fake_provider_server` on loopback, and faults go to the fake server. An http
run can also be served by the gateway (`Serve`), so its dashboard, metrics and admin API show the
runtime the scenario drives while it runs.

Each request is its own task, admitted in arrival order under the concurrency cap (a
`trio.CapacityLimiter`, FIFO), and ends in exactly one recorded outcome: a reply, a typed error,
an untyped error (a bug), or lost (still pending when the drain time ran out).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any, TextIO

import attrs
import structlog
import trio
import trio.testing

from actors.config import QUALITIES, Config
from actors.errors import FallbackError
from actors.messages import Reply
from actors.prices import quality_baseline_model
from actors.sizing import request_chars
from runtime.embed import Runtime, open_runtime
from runtime.kernel.events import Event
from runtime.logs import configure_logging
from runtime.scenario.fleet import FleetFaults, instance_trips, open_fleet
from runtime.scenario.format import Scenario
from runtime.scenario.load import LoadGenerator, PlannedRequest
from runtime.scenario.recorder import SAMPLED, MemoryCheckpoint, Recorder, Result
from runtime.scenario.report import Report, build_report
from runtime.scenario.timeline import Timeline

__all__ = [
    "FAKE_KEY_ENV",
    "MODES",
    "ProgressLine",
    "Serve",
    "http_config",
    "run_scenario",
    "run_scenario_async",
    "seed_trio_scheduler",
    "virtual_clock",
]

MODES = ("virtual", "http")
#: The environment variable http mode puts a placeholder key in (the fake server takes any).
FAKE_KEY_ENV = "UPTAX_SCENARIO_FAKE_KEY"
#: Memory checkpoints (fractions of the duration) when a scenario measures memory.
MEMORY_CHECKPOINTS = (0.1, 0.25, 0.5, 0.75, 1.0)
#: Event buffer of the recorder's subscription: generous, since a full buffer drops events.
EVENT_BUFFER = 100_000


class ProgressLine:
    """A live progress line on stderr while a run takes more than a moment.

    Only on a terminal, at most every `interval_s` of wall time, and never before `after_s`: a
    short run prints nothing. Wall time is used on purpose: in virtual mode the trio clock races
    ahead and says nothing about how long the person at the terminal has waited.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        enabled: bool | None = None,
        after_s: float = 0.5,
        interval_s: float = 0.2,
        wall: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.after_s = after_s
        self.interval_s = interval_s
        self.wall = wall
        self.started = wall()
        self.last = -float("inf")
        self.shown = False

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        now = self.wall()
        if now - self.started < self.after_s or now - self.last < self.interval_s:
            return
        self.last = now
        self.shown = True
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.shown = False


@attrs.frozen
class Serve:
    """Serve the scenario's runtime through the gateway for the whole run (http mode only):
    virtual time races ahead of any watcher."""

    port: int = 0
    host: str = "127.0.0.1"
    #: After the report, keep serving the final state until SIGINT or SIGTERM.
    hold: bool = False
    #: Told the gateway's base URL once it listens, before the load starts.
    announce: Callable[[str], None] | None = None


@attrs.define
class _Run:
    scenario: Scenario
    seed: int
    rt: Runtime
    recorder: Recorder
    t0: float
    progress: ProgressLine
    in_flight: dict[int, PlannedRequest] = attrs.Factory(dict)
    load_done: bool = False
    #: Every instance of a fleet (`rt` is the first); just `rt` without one.
    runtimes: list[Runtime] = attrs.Factory(list)

    def runtime_for(self, planned: PlannedRequest) -> Runtime:
        """The instance serving `planned`: round-robin by arrival over a fleet."""
        if len(self.runtimes) < 2:
            return self.rt
        return self.runtimes[planned.index % len(self.runtimes)]


def _recorder(scenario: Scenario, config: Config) -> Recorder:
    primary = config.provider(scenario.primary)
    model = primary.models[0] if primary.models else ""
    quality_models = {quality: quality_baseline_model(config, quality)[1] for quality in QUALITIES}
    return Recorder(
        providers=[p.name for p in config.providers],
        levels=[level.name for level in config.levels],
        baseline_price=config.model_info(model),
        chars_per_token=config.routing.chars_per_token,
        quality_prices={q: config.model_info(m) for q, m in quality_models.items()},
        baseline_model=model,
        quality_models=quality_models,
    )


async def _one_request(run: _Run, planned: PlannedRequest, limiter: trio.CapacityLimiter) -> None:
    recorder = run.recorder
    arrival = planned.at
    run.in_flight[planned.index] = planned
    async with limiter:
        started = recorder.now()
        reply: Reply | None = None
        error: BaseException | None = None
        rt = run.runtime_for(planned)
        try:
            if planned.stream:
                async with rt.stream(planned.request) as chunks:
                    async for _ in chunks:
                        pass
                reply = chunks.reply
                if reply is None:
                    error = RuntimeError("stream ended without a reply")
            else:
                reply = await rt.complete(planned.request)
        except FallbackError as exc:
            error = exc
        except Exception as exc:  # a bug in the runtime: recorded, counted, never fatal
            error = exc
        finished = recorder.now()
        if reply is not None and error is None:
            recorder.record_reply(
                index=planned.index,
                mix=planned.mix,
                stream=planned.stream,
                arrival=arrival,
                started=started,
                finished=finished,
                reply=reply,
                budget_usd=planned.request.budget_usd,
                prompt_chars=request_chars(planned.request),
                quality=planned.request.quality.value,
            )
        else:
            recorder.record_error(
                index=planned.index,
                mix=planned.mix,
                stream=planned.stream,
                arrival=arrival,
                started=started,
                finished=finished,
                error=error,
            )
    del run.in_flight[planned.index]


async def _drive_load(run: _Run) -> None:
    """Issue the schedule, then give in-flight requests the drain time; the rest are lost."""
    scenario = run.scenario
    load = scenario.load
    limiter = trio.CapacityLimiter(load.concurrency)
    async with trio.open_nursery() as requests:
        for planned in LoadGenerator(load, run.seed):
            await trio.sleep_until(run.t0 + planned.at)
            run.recorder.issued += 1
            requests.start_soon(_one_request, run, planned, limiter)
        run.load_done = True
        requests.cancel_scope.deadline = run.t0 + load.duration_s + scenario.info.drain_s
    now = run.recorder.now()
    for planned in sorted(run.in_flight.values(), key=lambda p: p.index):
        run.recorder.record_error(
            index=planned.index,
            mix=planned.mix,
            stream=planned.stream,
            arrival=planned.at,
            started=planned.at,
            finished=now,
            error=None,
            result=Result.LOST,
        )
    run.in_flight.clear()


def _on_event(run: _Run, event: Event, *, first: bool = True) -> None:
    """Events and restarts are counted over a fleet; breaker timelines are the first
    instance's (`first`)."""
    recorder = run.recorder
    recorder.events[event.event] += 1
    fields = event.fields
    at = event.at - run.t0
    if event.event.startswith("breaker_") and "provider" in fields and "new" in fields:
        if first:
            recorder.record_breaker(
                fields["provider"], at, str(fields["new"]), str(fields.get("reason", ""))
            )
    elif event.event == "actor_restarted" and "actor" in fields:
        name = str(fields["actor"])
        recorder.actor_restarts[name] = recorder.actor_restarts.get(name, 0) + 1
        if name in recorder.breaker:
            recorder.restarts[name] = recorder.restarts.get(name, 0) + 1


async def _consume_events(
    run: _Run, receive: trio.MemoryReceiveChannel[Event], *, first: bool = True
) -> None:
    async for event in receive:
        _on_event(run, event, first=first)


def _sample(run: _Run) -> None:
    """Read the runtime's status: breaker states missed by events, histories, mailboxes."""
    recorder = run.recorder
    status = run.rt.status()
    at = recorder.now()
    for provider in status.providers:
        recorder.record_breaker(provider.name, at, provider.breaker, SAMPLED)
    lengths = {
        f"performance.{name}": summary.samples for name, summary in status.performance.items()
    }
    recorder.record_history(lengths)
    for rt in run.runtimes:
        for info in rt.actors():
            recorder.mailbox_max = max(recorder.mailbox_max, info.mailbox_depth)
            # Restarts are counted from events; every live actor is listed, at 0 if never
            # restarted.
            recorder.actor_restarts.setdefault(info.name, 0)


async def _sample_status(run: _Run, interval_s: float) -> None:
    while True:
        _sample(run)
        await trio.sleep(interval_s)


async def _show_progress(run: _Run) -> None:
    """Runs in every mode, printing only on a terminal: the same tasks run either way, so a
    virtual run's numbers do not depend on where its output goes."""
    scenario = run.scenario
    duration = scenario.load.duration_s
    step = max(0.25, duration / 400)
    while True:
        recorder = run.recorder
        now = recorder.now()
        answered = (
            sum(1 for r in recorder.result if r == Result.REPLY) if run.progress.enabled else 0
        )
        run.progress.update(
            f"[{scenario.name}] t={min(now, duration):,.0f}/{duration:,.0f}s  "
            f"requests {recorder.issued:,}  answered {answered:,}  in flight {len(run.in_flight):,}"
        )
        await trio.sleep(step)


async def _measure_memory(run: _Run) -> None:
    for fraction in MEMORY_CHECKPOINTS:
        await trio.sleep_until(run.t0 + fraction * run.scenario.load.duration_s)
        run.recorder.memory.append(_memory_checkpoint(run.recorder))


def _memory_checkpoint(recorder: Recorder) -> MemoryCheckpoint:
    """Live blocks and objects after a full collection; with tracemalloc on, also the bytes held
    by allocations made in the runtime's and actors' code (this package's excluded)."""
    gc.collect()
    runtime_bytes: int | None = None
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(True, "*/runtime/*"),
                tracemalloc.Filter(True, "*/actors/*"),
                tracemalloc.Filter(False, "*/runtime/scenario/*"),
            )
        )
        runtime_bytes = sum(stat.size for stat in snapshot.statistics("filename"))
    return MemoryCheckpoint(
        at=recorder.now(),
        requests=recorder.requests,
        blocks=sys.getallocatedblocks(),
        objects=len(gc.get_objects()),
        runtime_bytes=runtime_bytes,
    )


def _memory_host(memory: list[MemoryCheckpoint]) -> dict[str, Any]:
    first, last = memory[0], memory[-1]
    served = max(1, last.requests - first.requests)
    host: dict[str, Any] = {
        "memory": [attrs.asdict(c) for c in memory],
        "object_growth": last.objects - first.objects,
        "block_growth": last.blocks - first.blocks,
        "objects_per_1000_requests": 1000 * (last.objects - first.objects) / served,
    }
    if first.runtime_bytes is not None and last.runtime_bytes is not None:
        host["memory_growth_kib"] = (last.runtime_bytes - first.runtime_bytes) / 1024
    return host


def http_config(scenario: Scenario, urls: dict[str, str]) -> Config:
    """The scenario's config with each simulated provider turned into its `http_kind`, pointed
    at the fake server."""
    providers = []
    for provider in scenario.config.providers:
        kind = scenario.http_kinds.get(provider.name)
        if kind is None:
            providers.append(provider)
            continue
        providers.append(
            attrs.evolve(
                provider,
                kind=kind,
                base_url=urls[provider.name],
                api_key_env=None if kind == "ollama" else FAKE_KEY_ENV,
            )
        )
    return attrs.evolve(scenario.config, providers=tuple(providers))


@contextlib.asynccontextmanager
async def _open_targets(
    scenario: Scenario,
    *,
    seed: int,
    mode: str,
    repl_socket: str | None,
    serve: Serve | None = None,
) -> AsyncIterator[list[Runtime]]:
    """The runtimes the scenario drives: one, or a ``[fleet]``'s instances (virtual mode)."""
    if scenario.fleet is None:
        async with _open_target_runtime(
            scenario, seed=seed, mode=mode, repl_socket=repl_socket, serve=serve
        ) as rt:
            yield [rt]
        return
    if mode != "virtual" or serve is not None:
        raise ValueError(f"{scenario.path}: a [fleet] runs in virtual mode only, never served")
    fleet = scenario.fleet
    async with open_fleet(_seeded(scenario, seed), fleet, repl_socket=repl_socket) as runtimes:
        yield runtimes


@contextlib.asynccontextmanager
async def _open_target_runtime(
    scenario: Scenario,
    *,
    seed: int,
    mode: str,
    repl_socket: str | None,
    serve: Serve | None = None,
) -> AsyncIterator[Runtime]:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of: {', '.join(MODES)}")
    scenario = _seeded(scenario, seed)
    if mode == "virtual":
        if serve is not None:
            raise ValueError("a virtual-time run cannot be served: use mode='http'")
        async with open_runtime(scenario.config, repl_socket=repl_socket) as rt:
            yield rt
        return
    from runtime.testing import open_fake_provider_server

    if not structlog.is_configured():
        # As open_runtime would, but before the fake server logs its first line.
        configure_logging(scenario.config.runtime.log_level)
    kinds = dict(scenario.http_kinds)
    async with open_fake_provider_server(kinds, seed=seed) as server:
        for name in kinds:
            server.set_latency(name, scenario.config.provider(name).latency_ms / 1000.0)
        urls = {name: server.url_for(name) for name in kinds}
        async with open_runtime(http_config(scenario, urls), repl_socket=repl_socket) as rt:
            for name in kinds:
                rt.register_fault_target(name, server.target(name))
            async with _serving(rt, serve):
                yield rt


def _seeded(scenario: Scenario, seed: int) -> Scenario:
    """`scenario` with the run's seed as learned selection's (`[routing] learned_seed`), so its
    sampler draws differently per seed as the traffic does, and the same for the same seed."""
    routing = attrs.evolve(scenario.config.routing, learned_seed=seed)
    return attrs.evolve(scenario, config=attrs.evolve(scenario.config, routing=routing))


@contextlib.asynccontextmanager
async def _serving(rt: Runtime, serve: Serve | None) -> AsyncIterator[None]:
    """The gateway around `rt` while the block runs, when asked to serve."""
    if serve is None:
        yield
        return
    from runtime.gateway.server import serve_runtime

    async with serve_runtime(rt, host=serve.host, port=serve.port) as gateway:
        if serve.announce is not None:
            serve.announce(gateway.base_url)
        yield


async def _drive(
    scenario: Scenario,
    seed: int,
    runtimes: Runtime | list[Runtime],
    progress: ProgressLine | None,
) -> Recorder:
    """Run the scenario's load, faults and sampling against the open runtime (or a fleet's
    instances)."""
    progress = progress or ProgressLine(enabled=False)
    if isinstance(runtimes, Runtime):
        runtimes = [runtimes]
    rt = runtimes[0]
    recorder = _recorder(scenario, rt.config)
    run = _Run(scenario, seed, rt, recorder, recorder.t0, progress, runtimes=runtimes)
    target = rt if len(runtimes) == 1 else FleetFaults(runtimes)
    timeline = Timeline(target, scenario.faults, recorder, horizon=scenario.load.duration_s)
    with contextlib.ExitStack() as subscriptions:
        streams = [subscriptions.enter_context(r.events.subscribe(EVENT_BUFFER)) for r in runtimes]
        async with trio.open_nursery() as nursery:
            for position, events in enumerate(streams):
                nursery.start_soon(
                    functools.partial(_consume_events, run, events, first=position == 0)
                )
            nursery.start_soon(_sample_status, run, scenario.info.sample_s)
            nursery.start_soon(timeline.run, run.t0)
            nursery.start_soon(_show_progress, run)
            if scenario.info.memory != "off":
                nursery.start_soon(_measure_memory, run)
            await _drive_load(run)
            recorder.end = max(recorder.now(), scenario.load.duration_s)
            _sample(run)
            # Let the event consumers catch up with everything emitted so far.
            while any(events.statistics().current_buffer_used for events in streams):
                await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
        recorder.events_dropped = sum(r.events.dropped for r in runtimes)
    if scenario.fleet is not None:
        recorder.instance_trips = [instance_trips(r) for r in runtimes]
    progress.close()
    return recorder


async def run_scenario_async(
    scenario: Scenario,
    *,
    seed: int,
    mode: str = "virtual",
    progress: ProgressLine | None = None,
    repl_socket: str | None = None,
    serve: Serve | None = None,
) -> Recorder:
    """Run the scenario in the current trio run; returns what was recorded. With `serve`, the
    gateway serves the runtime until the run ends (`serve.hold` is `run_scenario`'s)."""
    async with _open_targets(
        scenario, seed=seed, mode=mode, repl_socket=repl_socket, serve=serve
    ) as runtimes:
        return await _drive(scenario, seed, runtimes, progress)


def run_scenario(
    scenario: Scenario,
    *,
    seed: int | None = None,
    mode: str = "virtual",
    progress: ProgressLine | None = None,
    repl_socket: str | None = None,
    serve: Serve | None = None,
    on_report: Callable[[Report], None] | None = None,
    on_recorder: Callable[[Recorder], None] | None = None,
) -> Report:
    """Run a scenario in its own trio run (virtual time unless `mode="http"`) and report.

    `on_report` is given the report as soon as it is built, while the runtime is still open: with
    `serve.hold`, the gateway then keeps serving the final state until SIGINT or SIGTERM.
    `on_recorder` is given what was recorded, for measurements the report leaves out.
    """
    seed = scenario.info.seed if seed is None else seed
    measure = scenario.info.memory == "tracemalloc"
    if measure:
        tracemalloc.start()
    clock: trio.abc.Clock | None = None
    if mode == "virtual":
        clock = virtual_clock()
        seed_trio_scheduler(seed)
    saved_key = os.environ.get(FAKE_KEY_ENV)
    if mode == "http":
        os.environ[FAKE_KEY_ENV] = "fake-key-for-the-fake-server"
    try:
        return trio.run(
            _run_for_report,
            _Options(scenario, seed, mode, progress, repl_socket, serve, on_report, on_recorder),
            clock=clock,
        )
    finally:
        if mode == "http":
            if saved_key is None:
                os.environ.pop(FAKE_KEY_ENV, None)
            else:
                os.environ[FAKE_KEY_ENV] = saved_key
        if measure:
            tracemalloc.stop()


def virtual_clock() -> trio.testing.MockClock:
    """The clock of a virtual run: a `MockClock` that jumps to the next deadline whenever every
    task waits, and tells the time in one C-level attribute read.

    trio asks the clock for the time some fifty times per simulated request (every sleep, cancel
    scope and deadline). A MockClock at rate 0 answers ``virtual_base + 0 * (real time elapsed)``
    through two Python calls and a read of the real clock; that is exactly `_virtual_base`, so
    the instance reads it directly (`jump` moves it; the rate is never changed here).
    """
    clock = trio.testing.MockClock(autojump_threshold=0)
    if clock.rate == 0 and isinstance(getattr(clock, "_virtual_base", None), float):
        clock.current_time = functools.partial(getattr, clock, "_virtual_base")  # type: ignore[method-assign]
    return clock


def seed_trio_scheduler(seed: int) -> None:
    """Make a virtual run's schedule, and so every number in its report, a function of the
    seed alone.

    trio reorders each batch of runnable tasks at random (from a module-level RNG), which the
    seed fixes. But the batch it reorders comes in the order its tasks were woken, and that
    order follows memory addresses: timeouts due at the same instant expire in the order of
    their cancel scopes' `id()`, a cancelled scope wakes its tasks in the order of a set of
    them. A virtual clock makes such ties common, so without more a run's numbers changed with
    whatever else the process had allocated (the modules it imported, a run before it, the
    hash seed). trio's deterministic mode (what pytest-trio turns on for the tests) sorts each
    batch by when its tasks were spawned before shuffling it with the seeded RNG."""
    run_module = getattr(getattr(trio, "_core", None), "_run", None)
    rng = getattr(run_module, "_r", None)
    if rng is not None:
        rng.seed(seed)
    if run_module is not None and hasattr(run_module, "_ALLOW_DETERMINISTIC_SCHEDULING"):
        run_module._ALLOW_DETERMINISTIC_SCHEDULING = True


@attrs.frozen
class _Options:
    scenario: Scenario
    seed: int
    mode: str
    progress: ProgressLine | None
    repl_socket: str | None
    serve: Serve | None
    on_report: Callable[[Report], None] | None
    on_recorder: Callable[[Recorder], None] | None = None


async def _run_for_report(options: _Options) -> Report:
    """Run, then report while the runtime is still open (and served, when it is)."""
    started = time.perf_counter()
    scenario, seed, mode, serve = options.scenario, options.seed, options.mode, options.serve
    async with _open_targets(
        scenario, seed=seed, mode=mode, repl_socket=options.repl_socket, serve=serve
    ) as runtimes:
        recorder = await _drive(scenario, seed, runtimes, options.progress)
        report = _report(recorder, scenario, seed=seed, mode=mode, started=started)
        if options.on_recorder is not None:
            options.on_recorder(recorder)
        if options.on_report is not None:
            options.on_report(report)
        if serve is not None and serve.hold:
            await _until_signalled()
    return report


def _report(
    recorder: Recorder, scenario: Scenario, *, seed: int, mode: str, started: float
) -> Report:
    wall = time.perf_counter() - started
    # Mailbox depth at a sample depends on which of the tasks ready at that instant trio ran
    # first, so it is a host measurement, not part of the deterministic report.
    host: dict[str, Any] = {"wall_s": wall, "mailbox_max": recorder.mailbox_max}
    if recorder.memory:
        host.update(_memory_host(recorder.memory))
    return build_report(recorder, scenario, seed=seed, mode=mode, host=host)


async def _until_signalled() -> None:
    """Wait for SIGINT or SIGTERM: the end of holding a served run's final state up."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return
