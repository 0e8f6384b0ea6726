"""The runtime an application embeds: `open_runtime(config)` starts the actor tree in the
caller's trio run and hands back a `Runtime` to ask for completions, read status and steer.

Actor tree::

    root (one_for_one)
    ├── router             RouterActor: latest heartbeat per provider, ranks candidates
    └── providers (one_for_one)
        ├── openai         ProviderActor: health, breaker, adapter (its own httpx client)
        └── ...

Requests do not go through a mailbox: `complete` runs the cascade in the caller's task, so the
caller's own cancellation and the per-level cancel scopes bound every call it makes.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import attrs
import structlog
import trio
from opentelemetry.trace import TracerProvider

# Adapter modules register their kinds on import.
import actors.adapters.lastresort
import actors.adapters.simulated  # noqa: F401
from actors.adapters.base import ADAPTER_KINDS
from actors.adapters.lastresort import ResponseCache, shared_reply_cache
from actors.brownout import BrownoutWatch
from actors.cascade import CascadeSupervisor, ReplyStream
from actors.config import HTTP_KINDS, LAST_RESORT_KINDS, Config, ModelInfo, load_config
from actors.detect import DegradationWatch, DetectorSettings
from actors.directory import ProviderDirectory, RoutePlanner
from actors.events import EVENT_LEVELS
from actors.fault_admin import fake_server_target
from actors.faults import Fault, FaultTarget
from actors.kinds import kind_named
from actors.learned import ArmEstimate, Learner, LearnerSettings
from actors.messages import BreakerSnapshot, ProviderSnapshot, Reply, Request
from actors.provider import BreakerMode, ProviderActor, ProviderContext
from actors.ranking import Ranker, RoutePlan
from actors.router import RouterActor
from actors.state import FleetState, StateStore, open_fleet_state
from actors.stats import (
    Alert,
    AlertKind,
    AlertWatch,
    FallbackStats,
    FallbackStatsSnapshot,
    PerformanceHistory,
    RequestListener,
    recommendations,
)
from actors.tracing import Tracing
from runtime.kernel.actor import ActorCell, ActorNotRunning, CrashRequest
from runtime.kernel.events import EventBus
from runtime.kernel.registry import ActorInfo, Registry, UnknownActor
from runtime.kernel.supervisor import ChildSpec, RestartChild, Supervisor, run_actor
from runtime.logs import configure_logging


class _SharedStore:
    """Objects that outlive actor incarnations (simulated backends, the reply cache), and the
    config, lent to adapters as their `AdapterContext`."""

    def __init__(
        self, config: Config, objects: Mapping[tuple[str, str], Any] | None = None
    ) -> None:
        self.config = config
        self.objects: dict[tuple[str, str], Any] = dict(objects or {})
        self.http_transport: Any = None

    def shared(self, provider: str, kind: str, factory: Callable[[], Any]) -> Any:
        key = (provider, kind)
        found = self.objects.get(key)
        if found is None:
            found = self.objects[key] = factory()
        return found


@attrs.frozen
class ProviderStatus:
    """One provider in `Runtime.status()`: its `ProviderSnapshot` flattened for JSON and the REPL
    (health and breaker by state name, figures rounded), plus what only the runtime knows (the
    restarts counted now, whether its actor runs). Made from a snapshot by `of`, nowhere else."""

    name: str
    kind: str
    status: str
    breaker: str
    latency_ms: float
    latency_p50_ms: float
    latency_p95_ms: float
    error_rate: float
    quota_remaining: float
    consecutive_failures: int
    restarts: int
    available: bool
    reason: str
    running: bool
    #: Calls it may have in flight now; with `max_in_flight = "auto"` the learned limit, and
    #: the floor and ceiling it moves between (else None).
    concurrency_limit: int = 0
    concurrency_bounds: tuple[int, int] | None = None

    @classmethod
    def of(cls, snapshot: ProviderSnapshot, *, restarts: int, running: bool) -> ProviderStatus:
        return cls(
            name=snapshot.provider,
            kind=snapshot.kind,
            status=snapshot.status.value,
            breaker=snapshot.breaker.state.value,
            latency_ms=round(snapshot.latency_ms, 3),
            latency_p50_ms=round(snapshot.latency_p50_ms, 3),
            latency_p95_ms=round(snapshot.latency_p95_ms, 3),
            error_rate=round(snapshot.error_rate, 4),
            quota_remaining=round(snapshot.quota_remaining, 4),
            consecutive_failures=snapshot.consecutive_failures,
            restarts=restarts,
            available=snapshot.available,
            reason=snapshot.reason,
            running=running,
            concurrency_limit=snapshot.concurrency_limit,
            concurrency_bounds=snapshot.concurrency_bounds,
        )


@attrs.frozen
class RuntimeStatus:
    at: float
    providers: tuple[ProviderStatus, ...]
    stats: FallbackStatsSnapshot
    performance: dict[str, Any]
    recommendations: tuple[str, ...]
    alerts: tuple[Alert, ...]
    requests_in_flight: int
    #: Models repriced while running (`Runtime.set_price`): model -> its prices now, USD per
    #: million input and output tokens.
    prices_changed: dict[str, tuple[float, float]] = attrs.field(factory=dict)
    #: In a fleet (`[state] backend = "redis"`): the shared store's state and each instance by
    #: id with its last heartbeat (`FleetState.describe`); None for a single instance.
    fleet: dict[str, Any] | None = None
    #: `[routing] mode = "learned"`: the learner's estimate of each provider and model.
    learned: tuple[ArmEstimate, ...] = ()


class Runtime:
    def __init__(
        self,
        config: Config,
        *,
        tracer_provider: TracerProvider | None = None,
        shared: Mapping[tuple[str, str], Any] | None = None,
    ) -> None:
        self.config = config
        self.events = EventBus(levels=EVENT_LEVELS)
        self.registry = Registry()
        self._store = _SharedStore(config, shared)
        self._fault_targets: dict[str, FaultTarget] = {}
        self.stats = FallbackStats()
        self.history = PerformanceHistory.for_config(config)
        self.alert_watch = AlertWatch(emit=self.events.emit)
        #: The change detectors of `[routing] predict`, or None when it is off.
        self.degradation_watch = _degradation_watch(config, self.events)
        demotions = self.degradation_watch.demotions if self.degradation_watch else None
        #: The brownout watch of the levels with a `brownout` policy, or None when none has.
        self.brownout_watch = (
            BrownoutWatch(config.levels, self.history, emit=self.events.emit)
            if any(level.brownout != "off" for level in config.levels)
            else None
        )
        brownouts = self.brownout_watch.brownouts if self.brownout_watch else None
        self.ranker = Ranker(config, demotions=demotions, brownouts=brownouts)
        #: Learned selection's sampler, or None in score mode; it outlives router restarts.
        self.learner = _learner(config, self.events)
        self._providers_context = ProviderContext(
            adapters=self._store,
            events=self.events,
            router=self._router_ref,
            heartbeat_interval_s=config.runtime.heartbeat_interval_s,
            latency_stale_s=config.routing.latency_stale_s,
            restarts=self._restarts,
        )
        self._provider_kinds = {p.name: p.kind for p in config.providers}
        self._prices_changed: dict[str, tuple[float, float]] = {}
        cache: ResponseCache | None = None
        if any(p.kind == "cache" for p in config.providers):
            cache = shared_reply_cache(self._store)
        self.providers = ProviderDirectory(self.registry)
        self.planner = RoutePlanner(
            self.registry, self.ranker, config.levels, self._providers_context.last_snapshots
        )
        self.cascade = CascadeSupervisor(
            config,
            planner=self.planner,
            providers=self.providers,
            cache=cache,
            stats=self.stats,
            history=self.history,
            events=self.events,
            tracing=Tracing(tracer_provider),
            watch=self.degradation_watch,
            brownout=self.brownout_watch,
            learner=self.learner,
        )
        self._root = self._build_tree()
        #: The state shared with the other instances of a fleet (`[state]`), or None.
        self.fleet: FleetState | None = None

    def _fleet_summary(self) -> dict[str, object]:
        """This instance's heartbeat: its providers' breaker states and availability."""
        return {
            name: {"breaker": snapshot.breaker.state.value, "available": snapshot.available}
            for name, snapshot in self._providers_context.last_snapshots.items()
        }

    # -- the actor tree ---------------------------------------------------------------------

    def _build_tree(self) -> ActorCell:
        config = self.config
        supervision = config.supervision

        def provider_spec(name: str) -> ChildSpec:
            provider_config = config.provider(name)
            return ChildSpec(
                name,
                lambda: ProviderActor(provider_config, self._providers_context),
                kind="provider",
                mailbox_size=config.runtime.mailbox_size,
            )

        def supervisor(name: str, children: list[ChildSpec]) -> Callable[[], Supervisor]:
            return lambda: Supervisor(
                name,
                children,
                registry=self.registry,
                events=self.events,
                max_restarts=supervision.max_restarts,
                period_s=supervision.period_s,
                shutdown_grace_s=supervision.shutdown_grace_s,
            )

        providers = [provider_spec(p.name) for p in config.providers]
        router = ChildSpec(
            "router",
            lambda: RouterActor(
                config,
                self.ranker,
                seed=lambda: dict(self._providers_context.last_snapshots),
                learner=self.learner,
            ),
            kind="router",
            mailbox_size=max(config.runtime.mailbox_size, 4 * len(config.providers)),
        )
        tree = [
            router,
            ChildSpec("providers", supervisor("providers", providers), kind="supervisor"),
        ]
        root = ActorCell("root", supervisor("root", tree), kind="supervisor")
        self.registry.add(root)
        return root

    def _router_ref(self) -> Any:
        return self.registry.ref("router") if "router" in self.registry else None

    def _restarts(self, name: str) -> int:
        return self.registry.cell(name).restarts if name in self.registry else 0

    def _provider_actor(self, name: str) -> ProviderActor:
        if name not in self._provider_kinds:
            raise UnknownActor(name, sorted(self._provider_kinds))
        actor = self.providers.live(name)
        if actor is None:
            raise ActorNotRunning(f"{name} is {self.registry.cell(name).state}")
        return actor

    # -- requests ---------------------------------------------------------------------------

    async def complete(self, request: Request) -> Reply:
        """Answer a request from the best provider that can, falling back level by level.
        After the runtime has closed: `RuntimeClosed`."""
        return await self.cascade.complete(request)

    def stream(self, request: Request) -> contextlib.AbstractAsyncContextManager[ReplyStream]:
        """`async with rt.stream(request) as chunks: async for text in chunks: ...`"""
        return self.cascade.open_stream(request)

    def plan(self, request: Request, *, explore: bool = False) -> RoutePlan:
        """The router's plan for such a request, with a reason for every rank and exclusion.
        Asking for an explanation spends no exploration request (`explore=False`)."""
        return self.planner.plan(request, explore=explore)

    def add_request_listener(self, listener: RequestListener) -> Callable[[], None]:
        """Call `listener(RequestEnded)` as each request ends, however it was asked (embedded,
        through the gateway, by a scenario); returns the function that stops it. Listeners run
        in the request's task: they must be quick and must not raise."""
        return self.stats.add_listener(listener)

    # -- reading ----------------------------------------------------------------------------

    def actors(self) -> list[ActorInfo]:
        return self.registry.actors()

    def snapshot(self, name: str) -> Any:
        return self.registry.snapshot(name)

    def provider_snapshot(self, name: str) -> ProviderSnapshot | None:
        actor = self.providers.live(name)
        if actor is not None:
            return actor.snapshot()
        return self._providers_context.last_snapshots.get(name)

    def status(self) -> RuntimeStatus:
        snapshots: list[ProviderSnapshot] = []
        providers: list[ProviderStatus] = []
        for provider in self.config.providers:
            snapshot = self.provider_snapshot(provider.name)
            running = self.providers.live(provider.name) is not None
            if snapshot is None:
                continue
            snapshots.append(snapshot)
            providers.append(
                ProviderStatus.of(
                    snapshot, restarts=self._restarts(provider.name), running=running
                )
            )
        stats = self.stats.snapshot()
        return RuntimeStatus(
            at=trio.current_time(),
            providers=tuple(providers),
            stats=stats,
            performance={name: self.history.summary(name) for name in self._provider_kinds},
            recommendations=recommendations(snapshots, stats, self.history),
            alerts=(
                self.alert_watch.alerts(snapshots, self.history)
                + self._predicted_alerts()
                + self._brownout_alerts()
            ),
            requests_in_flight=self.cascade.in_flight,
            prices_changed=dict(self._prices_changed),
            fleet=None if self.fleet is None else self.fleet.describe(heartbeats=True),
            learned=(
                self.learner.estimates({s.provider: s for s in snapshots}) if self.learner else ()
            ),
        )

    def _predicted_alerts(self) -> tuple[Alert, ...]:
        watch = self.degradation_watch
        if watch is None:
            return ()
        return tuple(
            Alert(d.provider, AlertKind.PREDICTED_DEGRADATION, d.note, d.since)
            for d in watch.demotions().values()
        )

    def _brownout_alerts(self) -> tuple[Alert, ...]:
        watch = self.brownout_watch
        if watch is None:
            return ()
        return tuple(
            Alert(b.provider, AlertKind.BROWNOUT, f"{b.level} {b.note}", b.since)
            for b in watch.brownouts().values()
        )

    # -- steering ---------------------------------------------------------------------------

    def set_breaker(self, name: str, mode: BreakerMode) -> BreakerSnapshot:
        return self._provider_actor(name).set_breaker(mode)

    def set_price(
        self,
        model: str,
        input_usd_per_mtok: float | None = None,
        output_usd_per_mtok: float | None = None,
    ) -> ModelInfo:
        """A model's price changed while running (a provider repriced): ranking, budgets and the
        cost of every reply from now on use it; a price left out stays. Returns the model's info
        as it now is; `status().prices_changed` lists the models repriced."""
        config = self.config
        known = {*config.models, *(model for p in config.providers for model in p.models)}
        if model not in known:
            raise ValueError(
                f"model {model!r} is not in the config (known: {', '.join(sorted(known))})"
            )
        for key, value in (
            ("input_usd_per_mtok", input_usd_per_mtok),
            ("output_usd_per_mtok", output_usd_per_mtok),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key}={value!r} is not a number")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key}={value!r} must be a finite number >= 0")
        old = config.model_info(model)
        info = attrs.evolve(
            old,
            input_usd_per_mtok=float(
                old.input_usd_per_mtok if input_usd_per_mtok is None else input_usd_per_mtok
            ),
            output_usd_per_mtok=float(
                old.output_usd_per_mtok if output_usd_per_mtok is None else output_usd_per_mtok
            ),
        )
        repriced = attrs.evolve(config, models={**config.models, model: info})
        unpriced = tuple(m for m in config.unpriced_models if m != model)
        object.__setattr__(repriced, "unpriced_models", unpriced)
        self.config = self._store.config = repriced
        self.ranker.reprice(repriced)
        self.cascade.reprice(repriced)
        self._prices_changed[model] = (info.input_usd_per_mtok, info.output_usd_per_mtok)
        self.events.emit(
            "price_changed",
            model=model,
            input_usd_per_mtok=info.input_usd_per_mtok,
            output_usd_per_mtok=info.output_usd_per_mtok,
        )
        return info

    def register_fault_target(self, name: str, target: FaultTarget) -> None:
        """Route `inject_fault`/`heal` for `name` to `target` (e.g. a fake-server provider); it
        takes precedence over a simulated backend or a fake server found from `base_url`."""
        if name not in self._provider_kinds:
            raise UnknownActor(name, sorted(self._provider_kinds))
        self._fault_targets[name] = target

    def fault_target(self, name: str) -> FaultTarget:
        """Where `inject_fault`/`heal` for `name` go: a registered target, a simulated backend,
        or the admin endpoint of the fake server that the provider's `base_url` points at."""
        if name not in self._provider_kinds:
            raise UnknownActor(name, sorted(self._provider_kinds))
        target = self._find_fault_target(name)
        if target is None:
            faultable = sorted(n for n in self._provider_kinds if self._find_fault_target(n))
            raise ValueError(
                f"provider {name!r} (kind {self._provider_kinds[name]}) takes no injected faults; "
                f"faultable: {', '.join(faultable) or '(none)'} (simulated providers, and HTTP "
                "providers whose base_url is a fake provider server)"
            )
        return target

    def _find_fault_target(self, name: str) -> FaultTarget | None:
        target = self._fault_targets.get(name) or self._store.objects.get((name, "simulated"))
        if target is None and self._provider_kinds[name] in HTTP_KINDS:
            target = fake_server_target(self.config.provider(name).base_url)
            if target is not None:
                self._fault_targets[name] = target
        return target

    def inject_fault(self, name: str, fault: Fault) -> None:
        self.fault_target(name).inject(fault)
        self.events.emit(
            "fault_injected", provider=name, fault=fault.kind.value, **_fault_fields(fault)
        )

    def heal(self, name: str) -> None:
        self.fault_target(name).heal()
        self.events.emit("fault_healed", provider=name)

    async def restart(self, name: str) -> None:
        """Have the actor's supervisor stop and start it."""
        cell = self.registry.cell(name)
        if cell.parent is None:
            raise ValueError(f"{name!r} is the root supervisor and has no parent to restart it")
        await self.registry.ref(cell.parent).ask(RestartChild(name), timeout_s=30.0)

    def crash(self, name: str) -> None:
        """Make an actor crash (chaos): its supervisor restarts it as after any crash."""
        self.registry.ref(name).tell(CrashRequest())


def _fault_fields(fault: Fault) -> dict[str, Any]:
    defaults = Fault(fault.kind)
    return {
        field.name: getattr(fault, field.name)
        for field in attrs.fields(Fault)
        if field.name != "kind" and getattr(fault, field.name) != getattr(defaults, field.name)
    }


def _import_adapters(config: Config) -> None:
    """Import the adapter module of each configured kind (importing it registers the kind)."""
    for module in sorted({kind_named(p.kind).module for p in config.providers}):
        importlib.import_module(module)


@contextlib.asynccontextmanager
async def open_runtime(
    config: Config | str | os.PathLike[str],
    *,
    repl_socket: str | os.PathLike[str] | None = None,
    tracer_provider: TracerProvider | None = None,
    state_store: StateStore | None = None,
    shared: Mapping[tuple[str, str], Any] | None = None,
) -> AsyncIterator[Runtime]:
    """Start the runtime in the caller's trio run; everything stops when the block exits.

    Requests are traced through OpenTelemetry's `tracer_provider`, by default the global one (a
    no-op until the application configures an SDK; see `actors.tracing`).

    A fleet simulated in one process (`runtime.scenario.fleet`) gives every instance the same
    `state_store` (used instead of connecting to `[state] url` when the backend is "redis") and
    the same `shared` objects by (provider, kind), such as the simulated providers' backends,
    so an outage is one outage that every instance meets."""
    if not isinstance(config, Config):
        config = load_config(config)
    _import_adapters(config)
    missing = sorted({p.kind for p in config.providers} - set(ADAPTER_KINDS))
    if missing:
        raise ValueError(f"no adapter is installed for provider kind(s): {', '.join(missing)}")
    if not structlog.is_configured():
        # An application that configured structlog keeps its setup; otherwise ours, with
        # secrets redacted and the config's level.
        configure_logging(config.runtime.log_level)
    rt = Runtime(config, tracer_provider=tracer_provider, shared=shared)
    for warning in config.warnings:
        rt.events.emit("config_warning", warning=warning)
    socket_path = repl_socket if repl_socket is not None else config.runtime.repl_socket
    async with _fleet_of(rt, state_store), trio.open_nursery() as nursery:
        await nursery.start(run_actor, rt._root)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if socket_path:
                    from runtime.repl.server import open_repl_server

                    await stack.enter_async_context(open_repl_server(rt, os.fspath(socket_path)))
                yield rt
        finally:
            # Requests in flight get the shutdown grace to finish, then end in RuntimeClosed;
            # only then do the actors they call stop.
            with trio.CancelScope(shield=True):
                await rt.cascade.close(config.supervision.shutdown_grace_s)
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def _fleet_of(rt: Runtime, store: StateStore | None = None) -> AsyncIterator[None]:
    """`rt` in the fleet its `[state]` names while the block runs (memory: no fleet, and
    nothing to pay per request)."""
    if rt.config.state.backend == "memory":
        yield
        return
    opened = (
        open_fleet_state(rt.config.state)
        if store is None
        else open_fleet_state(rt.config.state, remote=store)
    )
    async with opened as fleet:
        fleet.summary = rt._fleet_summary
        rt.fleet = rt._providers_context.fleet = fleet
        if any(p.kind == "cache" for p in rt.config.providers):
            shared_reply_cache(rt._store).fleet = fleet
        yield


def _learner(config: Config, events: EventBus) -> Learner | None:
    """The sampler `[routing] mode = "learned"` asks for, announcing on `events`."""
    if config.routing.mode != "learned":
        return None
    last_resort = [p.name for p in config.providers if p.kind in LAST_RESORT_KINDS]
    return Learner(LearnerSettings.of(config), ignore=last_resort, emit=events.emit)


def _degradation_watch(config: Config, events: EventBus) -> DegradationWatch | None:
    """The change detectors `[routing] predict` asks for, announcing on `events`."""
    routing = config.routing
    if not routing.predict:
        return None
    settings = DetectorSettings(
        shift_sd=routing.predict_shift_sd, arl=routing.predict_arl, hold_s=routing.predict_hold_s
    )
    last_resort = [p.name for p in config.providers if p.kind in LAST_RESORT_KINDS]
    return DegradationWatch(settings, emit=events.emit, ignore=last_resort)
