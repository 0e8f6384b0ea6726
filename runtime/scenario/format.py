"""The scenario file format: TOML in, frozen attrs out, and an error that names the file, the
table and the key for anything wrong.

A scenario file is a runtime config (``[[providers]]``, ``[[levels]]``, ``[models.*]``, ...,
exactly as in ``uptax.toml``) plus tables of its own:

``[scenario]``
    name, description, default seed, optional ``base = "demo"`` to start from the shipped config.
``[load]``
    requests per second, duration, concurrency cap, and a weighted ``[[load.mix]]`` of requests.
``[[faults]]``
    the timeline: at ``at_s`` on ``provider``, a fault ``kind`` for ``duration_s``.
``[expect]``
    what must hold; each check is reported PASS or FAIL with the measured value.
``[fleet]``
    optional: run ``instances`` runtimes in one virtual-time process, sharing one in-process
    store whose writes others see ``sync_delay_ms`` late (`runtime.scenario.fleet`).
``[[variants]]``
    optional: configs to compare the scenario under (`uptax scenario compare`), each a name and
    config tables that change only what they name in the scenario's own config.

Only flat tables go through cattrs; arrays of tables and keyed tables are walked here so that every
error carries its exact place in the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs

from actors.config import (
    HTTP_KINDS,
    SIMULATED_KINDS,
    Config,
    load_config,
    parse_config,
    strict_converter,
)
from actors.errors import ConfigError
from actors.faults import Fault, FaultKind
from actors.messages import Complexity, CostTier, Quality
from actors.validation import (
    FieldError,
    fraction,
    non_negative,
    one_of,
    optional_one_of,
    positive,
    positive_int,
)
from runtime.demo import default_config_path

#: Timeline kinds beyond the shared fault vocabulary: a toggling fault, actor crashes, and a
#: model's price changing (the runtime's price table, not a fault of the provider).
FLAPPING = "flapping"
CRASH = "crash"
PRICE = "price"
TIMELINE_KINDS = (*(kind.value for kind in FaultKind), FLAPPING, CRASH, PRICE)
#: The fault kinds whose knobs can ramp (`ramp_s`): errors' rate, latency's factor and delay.
RAMPED_KINDS = (FaultKind.ERRORS.value, FaultKind.LATENCY.value)
#: How often a ramping fault is injected again with its knobs moved on, unless told.
DEFAULT_RAMP_STEP_S = 10.0

#: The config tables a scenario may carry; they are handed to `runtime.parse_config` as they are.
CONFIG_TABLES = frozenset(
    {"providers", "levels", "models", "routing", "templates", "supervision", "runtime", "state"}
)
SCENARIO_TABLES = frozenset({"scenario", "load", "faults", "expect", "variants", "fleet"})
#: Arrays of config tables whose entries a variant changes by name rather than replaces.
NAMED_ARRAYS = frozenset({"providers", "levels"})
#: A variant's name: it is typed on command lines (`--variant NAME=FILE`) and heads a column.
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
#: The name of the variant that is the scenario's own config, unless a variant takes it.
BASELINE = "baseline"

#: When a simulated provider has no `http_kind`, http mode serves it with the protocol named like
#: it, or else the OpenAI protocol.
DEFAULT_HTTP_KIND = "openai"


class ScenarioError(ValueError):
    """A scenario file is wrong; the message names the file, the table and the key."""


T = TypeVar("T")


def _http_error_status(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not 400 <= value <= 599:
        raise FieldError(attribute.name, f"{value!r} is not an HTTP error status (400-599)")


@attrs.frozen
class ScenarioInfo:
    """The ``[scenario]`` table."""

    name: str = ""
    description: str = ""
    #: The seed used when the command line gives none.
    seed: int = 1
    #: ``"demo"`` starts from the shipped demo config; a path starts from that config file.
    base: str | None = None
    #: A reply slower than this still counts as paying for a fault (MTTR). Default: twice the
    #: p95 latency measured before the first fault.
    clean_latency_ms: float | None = attrs.field(default=None, validator=positive)
    #: After the load stops, how long in-flight requests may take before they count as lost.
    drain_s: float = attrs.field(default=300.0, validator=positive)
    #: How often the recorder samples `rt.status()` (breaker states, quotas, restarts).
    sample_s: float = attrs.field(default=1.0, validator=positive)
    #: Memory checkpoints during the run (soaks): "blocks" counts live allocated blocks and
    #: gc-tracked objects after a full collection (cheap); "tracemalloc" also measures the bytes
    #: held by allocations made in the runtime's own code (several times slower).
    memory: str = attrs.field(default="off", validator=one_of(["off", "blocks", "tracemalloc"]))


@attrs.frozen
class FleetInfo:
    """The ``[fleet]`` table: a fleet of runtime instances in one virtual-time run. With
    ``[state] backend = "redis"`` they share one in-process store (no Redis is contacted),
    whose published writes reach the others `sync_delay_ms` late; with "memory" each instance
    keeps to itself. Requests go round-robin; the simulated providers are one set the whole
    fleet calls."""

    instances: int = attrs.field(default=1, validator=positive_int)
    sync_delay_ms: float = attrs.field(default=0.0, validator=non_negative)


@attrs.frozen
class MixEntry:
    """One kind of request in the load, drawn with probability proportional to its weight."""

    weight: float = attrs.field(default=1.0, validator=positive)
    complexity: str = attrs.field(
        default="moderate", validator=one_of([c.value for c in Complexity])
    )
    quality: str = attrs.field(default="production", validator=one_of([q.value for q in Quality]))
    budget_usd: float | None = attrs.field(default=None, validator=non_negative)
    #: The requests' cost tier (`Request.cost`); None: no preference.
    cost: str | None = attrs.field(
        default=None, validator=optional_one_of([tier.value for tier in CostTier])
    )
    max_tokens: int = attrs.field(default=300, validator=positive)
    #: Length of the generated prompts, in characters.
    prompt_chars: int = attrs.field(default=400, validator=positive)
    #: Fraction of these requests sent with `rt.stream` rather than `rt.complete`.
    stream_fraction: float | None = attrs.field(default=None, validator=fraction)
    #: A label for reports; defaults to "complexity/quality".
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or f"{self.complexity}/{self.quality}"


@attrs.frozen
class RatePhase:
    """From `at_s` on, the load runs at `rps` (a stampede, a lull)."""

    at_s: float = attrs.field(validator=non_negative)
    rps: float = attrs.field(validator=non_negative)


@attrs.frozen
class LoadProfile:
    """The ``[load]`` table."""

    rps: float = attrs.field(validator=positive)
    duration_s: float = attrs.field(validator=positive)
    #: Requests in flight at most; more wait their turn (in arrival order), none is dropped.
    concurrency: int = attrs.field(default=256, validator=positive)
    arrivals: str = attrs.field(default="poisson", validator=one_of(["poisson", "uniform"]))
    #: Fraction of requests streamed, unless a mix entry says otherwise.
    stream_fraction: float = attrs.field(default=0.0, validator=fraction)
    #: Distinct prompts per mix entry: repeats are what the last-resort cache can answer.
    prompts: int = attrs.field(default=200, validator=positive)
    #: Per-request deadline; None means the runtime's.
    deadline_s: float | None = attrs.field(default=None, validator=positive)
    mix: tuple[MixEntry, ...] = (MixEntry(),)
    phases: tuple[RatePhase, ...] = ()

    def rate_at(self, t: float) -> float:
        rate = self.rps
        for phase in self.phases:
            if phase.at_s <= t:
                rate = phase.rps
        return rate


@attrs.frozen
class FaultStep:
    """One ``[[faults]]`` entry: what happens to which provider, when, and for how long."""

    at_s: float = attrs.field(validator=non_negative)
    provider: str
    kind: str = attrs.field(validator=one_of(TIMELINE_KINDS))
    #: How long the fault lasts; None: until the end of the run. A single crash takes no time.
    duration_s: float | None = attrs.field(default=None, validator=positive)
    # The shared fault vocabulary's knobs (actors.faults.Fault).
    rate: float = attrs.field(default=1.0, validator=fraction)
    factor: float = attrs.field(default=1.0, validator=positive)
    retry_after_s: float = attrs.field(default=1.0, validator=non_negative)
    status: int = attrs.field(default=503, validator=_http_error_status)
    after_chunks: int = attrs.field(default=1, validator=non_negative)
    #: slow_drip: seconds between chunks (0.5 by default). Elsewhere 0 unless given: the fake
    #: provider server adds it to a latency fault's time to first byte.
    delay_s: float | None = attrs.field(default=None, validator=non_negative)
    #: flapping: the fault toggled on for `down_s`, off for `up_s`, over `duration_s`.
    fault: str = attrs.field(default="outage", validator=one_of([k.value for k in FaultKind]))
    down_s: float = attrs.field(default=10.0, validator=positive)
    up_s: float = attrs.field(default=10.0, validator=positive)
    #: crash: crash again every `every_s` over `duration_s` (a crash loop).
    every_s: float | None = attrs.field(default=None, validator=positive)
    #: rate_cap: calls admitted in any one second; more are answered 429.
    rps: float = attrs.field(default=1.0, validator=positive)
    #: errors, latency: over `ramp_s` from `at_s` the knobs move in a straight line from their
    #: start values (`start_rate`, `start_factor`, `start_delay_s`) to the step's, injected again
    #: every `ramp_step_s` (10 s); then they hold until the fault ends.
    ramp_s: float | None = attrs.field(default=None, validator=positive)
    ramp_step_s: float | None = attrs.field(default=None, validator=positive)
    start_rate: float | None = attrs.field(default=None, validator=fraction)
    start_factor: float | None = attrs.field(default=None, validator=positive)
    start_delay_s: float | None = attrs.field(default=None, validator=non_negative)
    #: price: the model whose price changes (the provider's first model unless given) and its
    #: new prices, USD per million tokens (one left out keeps its price).
    model: str = ""
    input_usd_per_mtok: float | None = attrs.field(default=None, validator=non_negative)
    output_usd_per_mtok: float | None = attrs.field(default=None, validator=non_negative)
    label: str = ""

    def __attrs_post_init__(self) -> None:
        """Keys that belong to another kind, or that need one another, are named."""
        self._check_ramp()
        self._check_price()

    def _check_ramp(self) -> None:
        if self.ramp_s is not None and self.kind not in RAMPED_KINDS:
            raise FieldError(
                "ramp_s", f"only {' and '.join(RAMPED_KINDS)} faults ramp, not {self.kind!r}"
            )
        for key in ("ramp_step_s", "start_rate", "start_factor", "start_delay_s"):
            if getattr(self, key) is not None and self.ramp_s is None:
                raise FieldError(key, "is a ramp's setting: it needs ramp_s")
        starts = {"start_rate": "errors", "start_factor": "latency", "start_delay_s": "latency"}
        for key, kind in starts.items():
            if getattr(self, key) is not None and self.kind != kind:
                raise FieldError(key, f"is where an {kind} ramp starts, not a {self.kind!r} one")
        if (
            self.ramp_s is not None
            and self.duration_s is not None
            and self.ramp_s > self.duration_s
        ):
            raise FieldError(
                "ramp_s",
                f"{self.ramp_s:g} is longer than the fault (duration_s = {self.duration_s:g})",
            )

    def _check_price(self) -> None:
        prices = {"input_usd_per_mtok": self.input_usd_per_mtok,
                  "output_usd_per_mtok": self.output_usd_per_mtok}  # fmt: skip
        given = [key for key, price in prices.items() if price is not None]
        if self.kind == PRICE:
            if not given:
                raise FieldError(
                    "input_usd_per_mtok",
                    "a price step needs input_usd_per_mtok, output_usd_per_mtok or both",
                )
            if self.duration_s is not None:
                raise FieldError("duration_s", "a price change has none: the new price holds")
        elif self.model or given:
            key = "model" if self.model else given[0]
            raise FieldError(key, f"is a price step's setting, not {self.kind!r}'s")

    @property
    def end_s(self) -> float | None:
        if self.kind == PRICE or (self.kind == CRASH and self.every_s is None):
            return self.at_s
        return None if self.duration_s is None else self.at_s + self.duration_s

    @property
    def instant(self) -> bool:
        """Whether the step happens at one moment: a single crash, a price change."""
        return self.kind == PRICE or (self.kind == CRASH and self.every_s is None)

    @property
    def title(self) -> str:
        if self.label:
            return self.label
        if self.kind == PRICE:
            prices = "/".join(
                "=" if price is None else f"${price:g}"
                for price in (self.input_usd_per_mtok, self.output_usd_per_mtok)
            )
            return f"price {self.model or 'first model'} {prices} per Mtok on {self.provider}"
        if self.ramp_s is not None:
            start = self.fault_at(0.0)
            knob = (
                f"{start.rate:g}->{self.rate:g}"
                if self.kind == "errors"
                else f"x{start.factor:g}->x{self.factor:g}"
            )
            return f"{self.kind} {knob} over {self.ramp_s:g}s on {self.provider}"
        detail = {
            "errors": f" {self.rate:g}",
            "latency": f" x{self.factor:g}",
            "rate_limit": f" retry-after {self.retry_after_s:g}s",
            "rate_cap": f" {self.rps:g} rps",
            "flapping": f" {self.fault} {self.down_s:g}s/{self.up_s:g}s",
            "crash": f" every {self.every_s:g}s" if self.every_s else "",
        }.get(self.kind, "")
        return f"{self.kind}{detail} on {self.provider}"

    def to_fault(self) -> Fault:
        """The `Fault` this step injects (for flapping, the fault it toggles; for a ramp, the
        fault it ends at)."""
        kind = FaultKind(self.fault if self.kind == FLAPPING else self.kind)
        fault = Fault(
            kind=kind,
            rate=self.rate,
            factor=self.factor,
            retry_after_s=self.retry_after_s,
            status=self.status,
            after_chunks=self.after_chunks,
            rps=self.rps,
        )
        return fault if self.delay_s is None else attrs.evolve(fault, delay_s=self.delay_s)

    def fault_at(self, elapsed_s: float) -> Fault:
        """The fault in force `elapsed_s` after the step began: a ramp's knobs moved that far
        along their line, exactly; any other step's fault as it is."""
        fault = self.to_fault()
        if self.ramp_s is None:
            return fault
        along = min(1.0, max(0.0, elapsed_s / self.ramp_s))

        def between(start: float | None, end: float, default: float) -> float:
            start = default if start is None else start
            # Rounded so that reports and logs read 0.05, not 0.049999999999999996.
            return round(start + (end - start) * along, 9)

        if fault.kind is FaultKind.ERRORS:
            return attrs.evolve(fault, rate=between(self.start_rate, fault.rate, 0.0))
        return attrs.evolve(
            fault,
            factor=between(self.start_factor, fault.factor, 1.0),
            delay_s=between(self.start_delay_s, fault.delay_s, 0.0),
        )

    @property
    def ramp_interval_s(self) -> float:
        return DEFAULT_RAMP_STEP_S if self.ramp_step_s is None else self.ramp_step_s


@attrs.frozen
class ProviderExpectation:
    """``[expect.providers.NAME]``: what must hold for one provider."""

    served_min: int | None = attrs.field(default=None, validator=non_negative)
    served_max: int | None = attrs.field(default=None, validator=non_negative)
    #: Calls that went out to the provider (not those its breaker or Retry-After held back).
    calls_max: int | None = attrs.field(default=None, validator=non_negative)
    failures_max: int | None = attrs.field(default=None, validator=non_negative)
    breaker_trips_min: int | None = attrs.field(default=None, validator=non_negative)
    breaker_trips_max: int | None = attrs.field(default=None, validator=non_negative)
    time_open_s_max: float | None = attrs.field(default=None, validator=non_negative)
    restarts_min: int | None = attrs.field(default=None, validator=non_negative)
    restarts_max: int | None = attrs.field(default=None, validator=non_negative)
    #: The most calls that started while the breaker was half-open, in any one half-open spell.
    half_open_calls_max: int | None = attrs.field(default=None, validator=non_negative)
    cost_usd_max: float | None = attrs.field(default=None, validator=non_negative)


@attrs.frozen
class LevelExpectation:
    """``[expect.levels.NAME]``: the share of replies a level served."""

    share_min: float | None = attrs.field(default=None, validator=fraction)
    share_max: float | None = attrs.field(default=None, validator=fraction)
    served_min: int | None = attrs.field(default=None, validator=non_negative)
    served_max: int | None = attrs.field(default=None, validator=non_negative)


@attrs.frozen
class ActorExpectation:
    """``[expect.actors.NAME]``: restarts of any actor (supervisors included)."""

    restarts_min: int | None = attrs.field(default=None, validator=non_negative)
    restarts_max: int | None = attrs.field(default=None, validator=non_negative)


@attrs.frozen
class Expectations:
    """The ``[expect]`` table. Every check is optional except lost requests (0 unless told)."""

    availability_min: float | None = attrs.field(default=None, validator=fraction)
    #: Share answered by a model rather than the last-resort cache or templates.
    model_availability_min: float | None = attrs.field(default=None, validator=fraction)
    fallback_rate_max: float | None = attrs.field(default=None, validator=fraction)
    p50_ms_max: float | None = attrs.field(default=None, validator=positive)
    p95_ms_max: float | None = attrs.field(default=None, validator=positive)
    p99_ms_max: float | None = attrs.field(default=None, validator=positive)
    #: Worst, over the faults, of: fault start -> requests answered again without paying for it.
    mttr_s_max: float | None = attrs.field(default=None, validator=non_negative)
    #: Worst, over the faults, of: fault end -> the provider is back in rotation.
    recovery_s_max: float | None = attrs.field(default=None, validator=non_negative)
    cost_usd_max: float | None = attrs.field(default=None, validator=non_negative)
    #: Saving against the single-provider baseline, as a fraction (0.15 = 15 %).
    savings_min: float | None = None
    lost_requests_max: int = attrs.field(default=0, validator=non_negative)
    errors_max: int | None = attrs.field(default=None, validator=non_negative)
    #: Replies that cost more than their request's budget.
    over_budget_max: int | None = attrs.field(default=None, validator=non_negative)
    #: Largest length of any bounded history the runtime reports at any sample (soak).
    history_max: int | None = attrs.field(default=None, validator=positive)
    #: Growth of live gc-tracked objects between the first and last memory checkpoint (soak).
    object_growth_max: int | None = attrs.field(default=None, validator=non_negative)
    #: Growth of the runtime's traced memory between the first and last checkpoint (soak,
    #: ``memory = "tracemalloc"``).
    memory_growth_kib_max: float | None = attrs.field(default=None, validator=non_negative)
    #: Calls sent to a provider in one of its fault windows that failed, over a ``[fleet]``
    #: (its report's fleet total): what sharing the store saves.
    fleet_wasted_calls_max: int | None = attrs.field(default=None, validator=non_negative)
    #: Worst, over the faults, of: fault end -> the provider is back in rotation through every
    #: instance of a ``[fleet]`` (the last instance's; `recovery_s_max` is the first's).
    fleet_recovery_s_max: float | None = attrs.field(default=None, validator=non_negative)
    providers: Mapping[str, ProviderExpectation] = attrs.field(factory=dict)
    levels: Mapping[str, LevelExpectation] = attrs.field(factory=dict)
    actors: Mapping[str, ActorExpectation] = attrs.field(factory=dict)


@attrs.frozen
class Scenario:
    """A parsed, checked scenario file."""

    path: str
    info: ScenarioInfo
    config: Config
    load: LoadProfile
    faults: tuple[FaultStep, ...]
    expect: Expectations
    #: provider name -> protocol it speaks in http mode (simulated providers only).
    http_kinds: Mapping[str, str]
    #: The ``[[variants]]`` to compare it under (`uptax scenario compare`); `run` ignores them.
    variants: tuple[Variant, ...] = ()
    #: The ``[fleet]`` table; None (no table): one runtime, as before fleets.
    fleet: FleetInfo | None = None

    @property
    def name(self) -> str:
        return self.info.name or Path(self.path).stem

    @property
    def primary(self) -> str:
        """The first provider of the first level: the single-provider cost baseline."""
        return self.config.levels[0].providers[0]

    def under(self, variant: Variant) -> Scenario:
        """The same load, faults and expectations under `variant`'s config."""
        return attrs.evolve(self, config=variant.config, http_kinds=variant.http_kinds, variants=())


@attrs.frozen
class Variant:
    """One config a scenario is compared under: a ``[[variants]]`` entry over the scenario's
    own config, the scenario's config itself, or a whole config file."""

    name: str
    config: Config
    http_kinds: Mapping[str, str]
    description: str = ""
    #: Where it comes from, for the reader of a comparison.
    source: str = ""


_CONVERTER = strict_converter(
    ScenarioInfo,
    FleetInfo,
    LoadProfile,
    Expectations,
    MixEntry,
    RatePhase,
    FaultStep,
    ProviderExpectation,
    LevelExpectation,
    ActorExpectation,
)


class _Place:
    """Where in the file a value sits, rendered as ``table [load.mix] (entry 2), key weight``."""

    def __init__(self, table: str, entry: int | None = None) -> None:
        self.table = table
        self.entry = entry

    def describe(self, key: str | None) -> str:
        where = f"table [{self.table}]"
        if self.entry is not None:
            where = f"table [[{self.table}]] (entry {self.entry + 1})"
        return f"{where}, key {key}" if key else where


def _problems(exc: BaseException) -> list[tuple[str | None, str]]:
    """(key, message) pairs out of whatever cattrs or a validator raised."""
    if isinstance(exc, FieldError):
        return [(exc.field, exc.message)]
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        keys = sorted(exc.extra_fields)
        return [(", ".join(keys), "unknown key" + ("s" if len(keys) > 1 else ""))]
    if isinstance(exc, BaseExceptionGroup):
        found: list[tuple[str | None, str]] = []
        for sub in exc.exceptions:
            note = next((n for n in getattr(sub, "__notes__", []) if hasattr(n, "name")), None)
            for key, message in _problems(sub):
                found.append((key or (note.name if note is not None else None), message))
        return found
    if isinstance(exc, KeyError):
        return [(str(exc.args[0]) if exc.args else None, "required key is missing")]
    if isinstance(exc, TypeError) and "missing" in str(exc):
        # attrs' __init__ complaining about a missing mandatory argument.
        match = re.search(r"'(\w+)'", str(exc))
        return [(match.group(1) if match else None, "required key is missing")]
    return [(None, str(exc))]


def _structure(data: Any, cls: type[T], place: _Place, file: str) -> T:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{file}: {place.describe(None)} must be a table, not {data!r}")
    try:
        return _CONVERTER.structure(dict(data), cls)
    except Exception as exc:
        lines = [f"{place.describe(key)}: {message}" for key, message in _problems(exc)]
        raise ScenarioError(f"{file}: " + "; ".join(lines)) from None


def _table_list(data: Any, table: str, file: str) -> list[Mapping[str, Any]]:
    if not isinstance(data, list) or not all(isinstance(item, Mapping) for item in data):
        raise ScenarioError(f"{file}: [[{table}]] must be an array of tables")
    return data


def _keyed_tables(data: Any, table: str, file: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{file}: table [{table}] must be a table of tables")
    return data


_CONFIG_PATH = re.compile(r"^(\w+)\[(\d+)\]\.(\S+?): (.*)$")


def _config_error(file: str, exc: ConfigError, data: Mapping[str, Any]) -> ScenarioError:
    """Re-say a runtime config error in the scenario's words (table and key). Entries of an
    array are also named, since over a base config their position is the merged one."""
    message = str(exc)
    prefix = f"{file}: "
    if message.startswith(prefix):
        message = message[len(prefix) :]
    lines = []
    for line in message.split("; "):
        match = _CONFIG_PATH.match(line)
        if match:
            table, index, key, text = match.groups()
            line = f"{_Place(table, int(index)).describe(key)}: {text}"
            entries = data.get(table)
            if isinstance(entries, list) and int(index) < len(entries):
                name = (
                    entries[int(index)].get("name")
                    if isinstance(entries[int(index)], Mapping)
                    else None
                )
                if isinstance(name, str):
                    line = line.replace(")", f", name {name!r})", 1)
        lines.append(line)
    return ScenarioError(prefix + "; ".join(lines))


def _base_config(base: str, file: str) -> dict[str, Any]:
    path = default_config_path() if base == "demo" else Path(file).parent / base
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(
            f"{file}: table [scenario], key base: cannot read {str(path)!r} ({exc.strerror})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(
            f"{file}: table [scenario], key base: {str(path)!r} is not valid TOML ({exc})"
        ) from None


def _config_data(data: Mapping[str, Any], info: ScenarioInfo, file: str) -> dict[str, Any]:
    """The runtime config tables, over the base config when there is one.

    Over a base, ``[[providers]]`` entries merge by name (key by key, and the ``breaker`` table
    key by key; a new name is added), ``[models.*]`` merge by model, and every other table
    replaces the base's.
    """
    merged: dict[str, Any] = _base_config(info.base, file) if info.base else {}
    for table in sorted(CONFIG_TABLES):
        if table not in data:
            continue
        if table == "models" and isinstance(merged.get("models"), dict):
            if not isinstance(data["models"], Mapping):
                raise ScenarioError(f"{file}: table [models] must be a table of tables")
            merged["models"] = {**merged["models"], **data["models"]}
        elif table == "providers" and isinstance(merged.get("providers"), list):
            merged["providers"] = _merge_providers(
                merged["providers"], _table_list(data["providers"], "providers", file)
            )
        else:
            merged[table] = data[table]
    return merged


def _merge_providers(
    base: list[Mapping[str, Any]], overrides: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    providers = [dict(provider) for provider in base]
    by_name = {provider.get("name"): provider for provider in providers}
    for override in overrides:
        target = by_name.get(override.get("name"))
        if target is None:
            providers.append(dict(override))
            continue
        for key, value in override.items():
            old = target.get(key)
            if key == "breaker" and isinstance(old, Mapping) and isinstance(value, Mapping):
                target[key] = {**old, **value}
            else:
                target[key] = value
    return providers


def _http_kinds(config_data: dict[str, Any], file: str) -> dict[str, str]:
    """Take the scenario-only `http_kind` keys out of [[providers]], checked."""
    kinds: dict[str, str] = {}
    providers = config_data.get("providers")
    if not isinstance(providers, list):
        return kinds
    cleaned = []
    for index, provider in enumerate(providers):
        if not isinstance(provider, Mapping):
            cleaned.append(provider)
            continue
        provider = dict(provider)
        kind = provider.pop("http_kind", None)
        name = provider.get("name")
        if kind is not None:
            if kind not in HTTP_KINDS:
                raise ScenarioError(
                    f"{file}: {_Place('providers', index).describe('http_kind')}: {kind!r} is not "
                    f"one of: {', '.join(sorted(HTTP_KINDS))}"
                )
            if provider.get("kind") not in SIMULATED_KINDS:
                raise ScenarioError(
                    f"{file}: {_Place('providers', index).describe('http_kind')}: only simulated "
                    "providers are mapped to a protocol"
                )
        if isinstance(name, str) and provider.get("kind") in SIMULATED_KINDS:
            kinds[name] = kind or (name if name in HTTP_KINDS else DEFAULT_HTTP_KIND)
        cleaned.append(provider)
    config_data["providers"] = cleaned
    return kinds


def _parse_load(data: Any, file: str) -> LoadProfile:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{file}: table [load] is required (rps, duration_s)")
    data = dict(data)
    mix_data = data.pop("mix", None)
    phase_data = data.pop("phases", None)
    mix: tuple[MixEntry, ...] = (MixEntry(),)
    if mix_data is not None:
        entries = _table_list(mix_data, "load.mix", file)
        if not entries:
            raise ScenarioError(f"{file}: [[load.mix]] must have at least one entry")
        mix = tuple(
            _structure(entry, MixEntry, _Place("load.mix", i), file)
            for i, entry in enumerate(entries)
        )
    phases: tuple[RatePhase, ...] = ()
    if phase_data is not None:
        entries = _table_list(phase_data, "load.phases", file)
        phases = tuple(
            _structure(entry, RatePhase, _Place("load.phases", i), file)
            for i, entry in enumerate(entries)
        )
        phases = tuple(sorted(phases, key=lambda phase: phase.at_s))

    flat = _structure(data, LoadProfile, _Place("load"), file)
    return attrs.evolve(flat, mix=mix, phases=phases)


def _parse_fleet(data: Any, file: str) -> FleetInfo | None:
    if data is None:
        return None
    return _structure(data, FleetInfo, _Place("fleet"), file)


def _parse_expect(data: Any, file: str) -> Expectations:
    if data is None:
        return Expectations()
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{file}: [expect] must be a table")
    data = dict(data)
    nested: dict[str, Any] = {}
    for key, cls in (
        ("providers", ProviderExpectation),
        ("levels", LevelExpectation),
        ("actors", ActorExpectation),
    ):
        tables = _keyed_tables(data.pop(key, {}), f"expect.{key}", file)
        nested[key] = {
            name: _structure(table, cls, _Place(f"expect.{key}.{name}"), file)
            for name, table in tables.items()
        }
    flat = _structure(data, Expectations, _Place("expect"), file)
    return attrs.evolve(flat, **nested)


def _check_references(scenario: Scenario) -> None:
    """Names in the timeline and expectations must exist in the config."""
    file = scenario.path
    providers = {p.name: p for p in scenario.config.providers}
    levels = {level.name for level in scenario.config.levels}
    duration = scenario.load.duration_s
    for index, step in enumerate(scenario.faults):
        place = _Place("faults", index)
        if step.provider not in providers:
            raise ScenarioError(
                f"{file}: {place.describe('provider')}: {step.provider!r} is not a provider of "
                f"this scenario (known: {', '.join(providers)})"
            )
        if step.at_s > duration:
            raise ScenarioError(
                f"{file}: {place.describe('at_s')}: {step.at_s:g} is after the load ends "
                f"(duration_s = {duration:g})"
            )
        if step.kind == FLAPPING and step.duration_s is None:
            raise ScenarioError(
                f"{file}: {place.describe('duration_s')}: flapping needs a duration"
            )
        if step.kind == CRASH and step.every_s is not None and step.duration_s is None:
            raise ScenarioError(
                f"{file}: {place.describe('duration_s')}: a crash loop (every_s) needs a duration"
            )
        kind = providers[step.provider].kind
        models = providers[step.provider].models
        if step.kind == PRICE and (step.model or not models) and step.model not in models:
            raise ScenarioError(
                f"{file}: {place.describe('model')}: {step.model!r} is not a model of "
                f"{step.provider!r} (its models: {', '.join(models) or 'none'})"
            )
        if step.kind not in (CRASH, PRICE) and kind not in SIMULATED_KINDS:
            raise ScenarioError(
                f"{file}: {place.describe('provider')}: faults can be injected into simulated "
                f"providers only ({step.provider!r} is {kind!r})"
            )
    for name in scenario.expect.providers:
        if name not in providers:
            raise ScenarioError(
                f"{file}: table [expect.providers.{name}]: {name!r} is not a provider of this "
                f"scenario (known: {', '.join(providers)})"
            )
    for name in scenario.expect.levels:
        if name not in levels:
            raise ScenarioError(
                f"{file}: table [expect.levels.{name}]: {name!r} is not a level of this "
                f"scenario (known: {', '.join(sorted(levels))})"
            )
    for index, phase in enumerate(scenario.load.phases):
        if phase.at_s > duration:
            raise ScenarioError(
                f"{file}: {_Place('load.phases', index).describe('at_s')}: {phase.at_s:g} is "
                f"after the load ends (duration_s = {duration:g})"
            )


# --- [[variants]] ----------------------------------------------------------------------------


def _overlay(base: Any, over: Any) -> Any:
    """`over` on `base`: tables merge key by key, at any depth; anything else replaces."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _overlay(base[key], value) if key in base else value
        return merged
    return over


def _overlay_named(base: Any, over: list[Mapping[str, Any]]) -> list[Any]:
    """Each entry of `over` merges into the entry of `base` with its name; new names go last."""
    merged = list(base) if isinstance(base, list) else []
    positions = {
        entry.get("name"): position
        for position, entry in enumerate(merged)
        if isinstance(entry, Mapping)
    }
    for entry in over:
        position = positions.get(entry["name"])
        if position is None:
            positions[entry["name"]] = len(merged)
            merged.append(dict(entry))
        else:
            merged[position] = _overlay(merged[position], entry)
    return merged


def _variant_data(
    config_data: Mapping[str, Any], entry: Mapping[str, Any], where: str, file: str
) -> dict[str, Any]:
    """The scenario's config tables with a ``[[variants]]`` entry's tables over them."""
    merged = dict(config_data)
    for table, value in entry.items():
        if table in ("name", "description"):
            continue
        if table not in CONFIG_TABLES:
            known = ", ".join(["name", "description", *sorted(CONFIG_TABLES)])
            raise ScenarioError(
                f"{file}: {where}, key {table}: a variant changes config tables only, never "
                f"the load, the faults or the expectations (known: {known})"
            )
        if table in NAMED_ARRAYS:
            if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
                raise ScenarioError(
                    f"{file}: {where}: [[variants.{table}]] must be an array of tables"
                )
            for position, item in enumerate(value):
                if not isinstance(item.get("name"), str):
                    raise ScenarioError(
                        f"{file}: {where}, table [[variants.{table}]] (entry {position + 1}), "
                        f"key name: required (the entry of [[{table}]] it changes, or a new one)"
                    )
            merged[table] = _overlay_named(merged.get(table), value)
        else:
            merged[table] = _overlay(merged.get(table), value)
    return merged


_CONFIG_LINE = re.compile(r"^(\w+)(?:\[(\d+)\])?(?:\.(\S+?))?: (.*)$")
_UNKNOWN_KEYS = "unknown key(s) "


def _variant_config_error(
    file: str, where: str, exc: ConfigError, data: Mapping[str, Any]
) -> ScenarioError:
    """A runtime config error in a variant's words: its entries are named, since their position
    is the merged one."""
    message = str(exc).removeprefix(f"{file}: ")
    lines = []
    for line in message.split("; "):
        match = _CONFIG_LINE.match(line)
        if match:
            table, index, key, text = match.groups()
            place = f"table [variants.{table}]"
            if index is not None:
                entries = data.get(table)
                entry = entries[int(index)] if isinstance(entries, list) else None
                name = entry.get("name") if isinstance(entry, Mapping) else None
                place = f"table [[variants.{table}]] (name {name!r})"
            if key is None and text.startswith(_UNKNOWN_KEYS):
                key, text = text.removeprefix(_UNKNOWN_KEYS), "unknown key"
            line = f"{place}, key {key}: {text}" if key else f"{place}: {text}"
        lines.append(line)
    return ScenarioError(f"{file}: {where}: " + "; ".join(lines))


def _check_variant(scenario: Scenario, variant: Variant, where: str) -> None:
    """The timeline and the expectations must still name what exists under the variant."""
    try:
        _check_references(scenario.under(variant))
    except ScenarioError as exc:
        detail = str(exc).removeprefix(f"{scenario.path}: ")
        raise ScenarioError(f"{scenario.path}: {where}: {detail}") from None


def _variant_name(entry: Mapping[str, Any], where: str, file: str) -> str:
    name = entry.get("name")
    if not isinstance(name, str) or not VARIANT_NAME.match(name):
        problem = "required" if name is None else f"{name!r} is not a variant name"
        raise ScenarioError(
            f"{file}: {where}, key name: {problem} (letters, digits, '_', '.', '-'; at most 40)"
        )
    return name


def _parse_variants(
    data: Any, config_data: Mapping[str, Any], scenario: Scenario
) -> tuple[Variant, ...]:
    file = scenario.path
    variants: dict[str, Variant] = {}
    for index, entry in enumerate(_table_list(data, "variants", file)):
        where = f"table [[variants]] (entry {index + 1})"
        name = _variant_name(entry, where, file)
        where = f"table [[variants]] (entry {index + 1}, name {name!r})"
        if name in variants:
            raise ScenarioError(f"{file}: {where}, key name: {name!r} is defined twice")
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise ScenarioError(
                f"{file}: {where}, key description: {description!r} is not a string"
            )
        merged = _variant_data(config_data, entry, where, file)
        http_kinds = _http_kinds(merged, file)
        try:
            config = parse_config(merged, source=file)
        except ConfigError as exc:
            raise _variant_config_error(file, where, exc, merged) from None
        variant = Variant(name, config, http_kinds, description, file)
        _check_variant(scenario, variant, where)
        variants[name] = variant
    return tuple(variants.values())


def load_variant(scenario: Scenario, name: str, path: str | os.PathLike[str]) -> Variant:
    """A whole runtime config file as a variant of `scenario`; anything wrong, in the config or
    in what the scenario needs of it, raises `ScenarioError` naming the file."""
    where = f"--variant {name}={path}"
    if not VARIANT_NAME.match(name):
        raise ScenarioError(
            f"{where}: {name!r} is not a variant name (letters, digits, '_', '.', '-'; at most 40)"
        )
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    kinds = {
        p.name: p.name if p.name in HTTP_KINDS else DEFAULT_HTTP_KIND
        for p in config.providers
        if p.kind in SIMULATED_KINDS
    }
    variant = Variant(name, config, kinds, source=str(path))
    _check_variant(scenario, variant, f"{where} (a config file)")
    return variant


def parse_scenario(data: Mapping[str, Any], *, source: str = "<scenario>") -> Scenario:
    """Check and structure a scenario from a parsed TOML mapping."""
    unknown = sorted(set(data) - SCENARIO_TABLES - CONFIG_TABLES)
    if unknown:
        known = ", ".join(sorted(SCENARIO_TABLES | CONFIG_TABLES))
        raise ScenarioError(f"{source}: unknown table(s) {', '.join(unknown)} (known: {known})")
    info = _structure(data.get("scenario", {}), ScenarioInfo, _Place("scenario"), source)
    config_data = _config_data(data, info, source)
    raw_config_data = dict(config_data)  # http_kind keys still in: variants may add providers
    http_kinds = _http_kinds(config_data, source)
    if "providers" not in config_data:
        raise ScenarioError(
            f'{source}: table [[providers]] is required (or [scenario] base = "demo")'
        )
    try:
        config = parse_config(config_data, source=source)
    except ConfigError as exc:
        raise _config_error(source, exc, config_data) from None
    load = _parse_load(data.get("load"), source)
    faults = tuple(
        _structure(entry, FaultStep, _Place("faults", i), source)
        for i, entry in enumerate(_table_list(data.get("faults", []), "faults", source))
    )
    scenario = Scenario(
        path=source,
        info=info,
        config=config,
        load=load,
        faults=faults,
        expect=_parse_expect(data.get("expect"), source),
        http_kinds=http_kinds,
        fleet=_parse_fleet(data.get("fleet"), source),
    )
    _check_references(scenario)
    _check_fleet_expectations(scenario, source)
    scenario = attrs.evolve(scenario, faults=_price_models(scenario))
    if "variants" in data:
        variants = _parse_variants(data["variants"], raw_config_data, scenario)
        scenario = attrs.evolve(scenario, variants=variants)
    return scenario


def _check_fleet_expectations(scenario: Scenario, source: str) -> None:
    """A fleet's expectation in a file without a ``[fleet]`` would check nothing."""
    expect = scenario.expect
    if scenario.fleet is not None:
        return
    for key, limit in (
        ("fleet_wasted_calls_max", expect.fleet_wasted_calls_max),
        ("fleet_recovery_s_max", expect.fleet_recovery_s_max),
    ):
        if limit is not None:
            raise ScenarioError(f"{source}: table [expect], key {key}: needs a [fleet] table")


def _price_models(scenario: Scenario) -> tuple[FaultStep, ...]:
    """Price steps with their model named: the provider's first unless the step says."""
    return tuple(
        attrs.evolve(step, model=scenario.config.provider(step.provider).models[0])
        if step.kind == PRICE and not step.model
        else step
        for step in scenario.faults
    )


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read a scenario file; anything wrong raises `ScenarioError` naming file, table and key."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{file}: cannot read scenario ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{file}: not valid TOML ({exc})") from None
    return parse_scenario(data, source=file)
