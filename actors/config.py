"""The runtime's configuration: TOML in, frozen attrs out, and a clear error for a bad value.

`load_config` reads a TOML file (or `parse_config` a mapping) and structures it with cattrs,
forbidding unknown keys. Any failure becomes one `ConfigError` whose message names the field path
and the offending value, e.g. ``providers[2].latency_ms: 'fast' is not a number``.
"""

from __future__ import annotations

import math
import os
import socket
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn

from actors.errors import ConfigError
from actors.kinds import HTTP_KINDS, KNOWN_KINDS, LAST_RESORT_KINDS, SIMULATED_KINDS, kind_named
from actors.messages import Complexity, CostTier, Quality
from actors.prices import PRICES_AS_OF, shipped_price
from actors.validation import (
    FieldError,
    at_least,
    boolean,
    fraction,
    keys_one_of,
    non_negative,
    one_of,
    optional_one_of,
    positive,
    text,
)

# The kind sets come from the kinds table; re-exported here, where callers always found them.
__all__ = ["HTTP_KINDS", "KNOWN_KINDS", "LAST_RESORT_KINDS", "SIMULATED_KINDS"]

Strategy = Literal["sequential", "race", "hedge"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)
BrownoutPolicy = Literal["off", "demote", "hedge"]
BROWNOUT_POLICIES: tuple[str, ...] = typing.get_args(BrownoutPolicy)
COMPLEXITIES: tuple[str, ...] = tuple(member.value for member in Complexity)
QUALITIES: tuple[str, ...] = tuple(member.value for member in Quality)
COST_TIERS: tuple[str, ...] = tuple(member.value for member in CostTier)
#: How a level orders its candidates: the seed's score, or the learner of `actors.learned`.
RoutingMode = Literal["score", "learned"]
ROUTING_MODES: tuple[str, ...] = typing.get_args(RoutingMode)
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LOG_LEVELS: tuple[str, ...] = typing.get_args(LogLevel)

#: A level's `timeout_s` when it names none: by position (the third and later levels take the
#: last), or `LAST_RESORT_TIMEOUT_S` for a level served only by last-resort kinds.
DEFAULT_LEVEL_TIMEOUTS_S = (30.0, 45.0, 60.0)
LAST_RESORT_TIMEOUT_S = 5.0


def default_level_timeout(position: int, *, last_resort_only: bool) -> float:
    """The documented default `timeout_s` of the level at `position` (0-based)."""
    if last_resort_only:
        return LAST_RESORT_TIMEOUT_S
    return DEFAULT_LEVEL_TIMEOUTS_S[min(position, len(DEFAULT_LEVEL_TIMEOUTS_S) - 1)]


@attrs.frozen
class BreakerConfig:
    """Circuit breaker settings (resilience4j's vocabulary, Envoy's growing open time)."""

    #: Length of the sliding time window over which failure and slow-call rates are measured.
    window_s: float = attrs.field(default=30.0, validator=positive)
    #: No rate-based trip before this many calls are in the window.
    minimum_calls: int = attrs.field(default=10, validator=at_least(1))
    failure_rate_threshold: float = attrs.field(default=0.5, validator=fraction)
    #: Trip after this many consecutive failures, whatever the rate (0 disables).
    consecutive_failures: int = attrs.field(default=5, validator=non_negative)
    #: A call slower than this counts as slow; trip when the slow-call rate reaches the threshold.
    slow_call_s: float = attrs.field(default=20.0, validator=positive)
    slow_call_rate_threshold: float = attrs.field(default=1.0, validator=fraction)
    #: First open period; each further trip multiplies it, up to the cap.
    open_s: float = attrs.field(default=5.0, validator=positive)
    open_multiplier: float = attrs.field(default=2.0, validator=at_least(1))
    open_max_s: float = attrs.field(default=300.0, validator=positive)
    #: Probe calls admitted while half-open; all must succeed to close.
    half_open_probes: int = attrs.field(default=3, validator=at_least(1))
    #: Healthy (closed) time after which the trip count, and so the open time, decays by one step.
    decay_s: float = attrs.field(default=60.0, validator=positive)


Probe = Literal["auto", "models", "completion", "off"]
PROBES: tuple[str, ...] = typing.get_args(Probe)


@attrs.frozen
class RecoveryConfig:
    """Active recovery probing while the provider's breaker is open (`actors.recovery`): a cheap
    call every `interval_s`, so a provider rejoins within seconds of recovering instead of
    waiting out an open period that doubles with each trip."""

    #: models: list the provider's models (GET, free); completion: a one-token completion of its
    #: first model (counted in cost); off; auto: models for HTTP kinds, off for the others.
    probe: Probe = attrs.field(default="auto", validator=one_of(PROBES))
    #: Seconds from the breaker opening to the first probe, and between probes.
    interval_s: float = attrs.field(default=1.0, validator=positive)
    #: A probe that has not answered after this long failed (a timeout).
    timeout_s: float = attrs.field(default=5.0, validator=positive)


def _in_flight(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """`max_in_flight`: a whole number of calls, at least 1, or "auto"."""
    if value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(attribute.name, f"{value!r} is not an integer or 'auto'")
    at_least(1)(instance, attribute, value)


@attrs.frozen
class ProviderConfig:
    name: str
    kind: str
    models: tuple[str, ...] = ()
    breaker: BreakerConfig = BreakerConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    #: Bulkhead: calls in flight at once; more queue for a slot. "auto": a limit learned from
    #: the provider's 429s and latency (`actors.concurrency`), between `max_in_flight_min` and
    #: `max_in_flight_max`; a call finding it used up goes to the next candidate at once.
    max_in_flight: int | Literal["auto"] = attrs.field(default=64, validator=_in_flight)
    #: "auto": the floor and ceiling of the learned limit (the ceiling also sizes the HTTP pool).
    max_in_flight_min: int = attrs.field(default=1, validator=at_least(1))
    max_in_flight_max: int = attrs.field(default=64, validator=at_least(1))
    # --- simulated ---
    latency_ms: float = attrs.field(default=50.0, validator=non_negative)
    #: Spread of the simulated latency, as a fraction of latency_ms (lognormal sigma).
    latency_jitter: float = attrs.field(default=0.2, validator=non_negative)
    error_rate: float = attrs.field(default=0.0, validator=fraction)
    hang_probability: float = attrs.field(default=0.0, validator=fraction)
    #: Requests per second the simulated provider accepts before answering 429.
    rate_limit_rps: float | None = attrs.field(
        default=None, validator=positive
    )
    seed: int = 0
    # --- http kinds ---
    base_url: str | None = None
    api_key_env: str | None = None
    connect_timeout_s: float = attrs.field(default=5.0, validator=positive)
    read_timeout_s: float = attrs.field(default=60.0, validator=positive)
    anthropic_version: str = "2023-06-01"
    # --- cache ---
    cache_size: int = attrs.field(default=1024, validator=at_least(1))
    cache_ttl_s: float = attrs.field(default=3600.0, validator=positive)

    def __attrs_post_init__(self) -> None:
        if self.kind not in KNOWN_KINDS:
            raise FieldError("kind", f"{self.kind!r} is not one of: {', '.join(sorted(KNOWN_KINDS))}")
        if not self.name:
            raise ValueError("name must not be empty")
        if not self.models and self.kind not in LAST_RESORT_KINDS:
            raise ValueError(f"models must list at least one model for provider {self.name!r}")
        if self.max_in_flight_max < self.max_in_flight_min:
            raise FieldError(
                "max_in_flight_max",
                f"{self.max_in_flight_max} must be >= max_in_flight_min={self.max_in_flight_min}",
            )
        probe = self.recovery.probe
        if probe not in ("auto", "off") and not kind_named(self.kind).probed:
            raise ValueError(
                f"recovery.probe={probe!r}: a {self.kind} provider has nothing to probe "
                "(only 'auto' or 'off')"
            )

    @property
    def adaptive_concurrency(self) -> bool:
        """Whether the provider's limit on calls in flight is learned (`max_in_flight="auto"`)."""
        return self.max_in_flight == "auto"

    @property
    def in_flight_ceiling(self) -> int:
        """The most calls the provider may ever have in flight: what its HTTP pool is sized to."""
        if self.max_in_flight == "auto":
            return self.max_in_flight_max
        return self.max_in_flight

    @property
    def recovery_probe(self) -> Literal["models", "completion", "off"]:
        """The probe this provider's breaker is watched with (`recovery.probe` with "auto"
        resolved: models for HTTP kinds, which all list their models, off otherwise)."""
        probe = self.recovery.probe
        if probe == "auto":
            return "models" if self.kind in HTTP_KINDS else "off"
        return probe


@attrs.frozen
class LevelConfig:
    name: str
    providers: tuple[str, ...]
    #: Default: 30 / 45 / 60 s by position, 5 s for a level of last-resort kinds only (filled in
    #: by `parse_config`; see `default_level_timeout`).
    timeout_s: float = attrs.field(validator=positive)
    #: sequential: one candidate after another; race: all at once, first success wins; hedge:
    #: the next candidate starts when the current one fails or outlasts its provider's p95
    #: latency (at least `hedge_after_s`), first success wins (Dean & Barroso's hedged requests).
    strategy: Strategy = attrs.field(default="sequential", validator=one_of(STRATEGIES))
    #: hedge: the least time to give a candidate before starting the next one.
    hedge_after_s: float = attrs.field(default=0.5, validator=non_negative)
    #: How long one candidate may take before the level moves to the next (None: the whole
    #: level's remaining time, so a hung first candidate uses up the level).
    attempt_timeout_s: float | None = attrs.field(
        default=None, validator=positive
    )
    #: Streaming: how long the first chunk may take before the level moves on.
    first_chunk_timeout_s: float | None = attrs.field(
        default=None, validator=positive
    )
    #: A reply that is the model's refusal: false, the caller gets it (`Reply.refusal`); true,
    #: it counts as a failed (`refused`) attempt and the walk goes on to the next candidate.
    fallback_on_refusal: bool = False
    #: When every provider of the level answers `brownout_factor` times slower than its
    #: baseline (`actors.brownout`): off, the walk is unchanged; demote, requests try the next
    #: level first; hedge, a call outlasting that starts the next level beside it. Demote by
    #: default: on level-brownout it keeps the p50 within twice the healthy one (690 ms against
    #: off's 6.6 s, seeds 1-10), and the flagship, brownout and soak are the same number for
    #: number (README, "Intelligence, measured").
    brownout: BrownoutPolicy = attrs.field(default="demote", validator=one_of(BROWNOUT_POLICIES))
    #: The stats alert's factor over the provider's baseline latency.
    brownout_factor: float = attrs.field(default=5.0, validator=at_least(1.0, inclusive=False))
    #: hedge: hedges at most this share of the level's requests (a retry budget).
    brownout_hedge_budget: float = attrs.field(default=0.2, validator=fraction)
    #: demote: one request this often still tries the level first (hedged), to see it recover.
    brownout_probe_s: float = attrs.field(default=5.0, validator=positive)


@attrs.frozen
class ModelInfo:
    """Price (USD per million tokens), context window, request shape and capabilities of one
    model."""

    input_usd_per_mtok: float = attrs.field(default=0.0, validator=non_negative)
    output_usd_per_mtok: float = attrs.field(default=0.0, validator=non_negative)
    context_window: int = attrs.field(default=128_000, validator=at_least(1))
    # Request shaping; None takes the built-in default for the model's family (OpenAI o1, o3,
    # o4 and gpt-5 differ), see actors/adapters/shaping.py and the README.
    #: The body field for the output limit.
    token_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    #: The system prompt's role; "user" puts it before the prompt in the user message.
    system_role: Literal["system", "developer", "user"] | None = None
    #: Sampling parameters the model takes (of temperature, top_p, presence_penalty,
    #: frequency_penalty; [] for none); the others are left out of the request, so the model's
    #: default applies, and the plan says so.
    sampling: (
        tuple[Literal["temperature", "top_p", "presence_penalty", "frequency_penalty"], ...] | None
    ) = None
    # Capabilities; None takes the built-in default for the model's family, and a model of no
    # known family is assumed capable of everything (see actors/capabilities.py and the README).
    #: Function tools (and a forced tool choice).
    tools: bool | None = None
    #: Several tool calls in one reply, and the parallel_tool_calls switch.
    parallel_tools: bool | None = None
    #: Images in user messages.
    vision: bool | None = None
    #: response_format json_object.
    json_object: bool | None = None
    #: response_format json_schema.
    json_schema: bool | None = None
    #: The most output tokens one reply may have: a larger max_tokens goes to another model.
    max_output_tokens: int | None = attrs.field(default=None, validator=at_least(1))


@attrs.frozen
class ScoreWeights:
    latency: float = 0.3
    reliability: float = 0.5
    quota: float = 0.2


def _default_complexity() -> dict[str, tuple[str, ...]]:
    return {
        "trivial": ("gemini-flash", "gpt-4o-mini", "hf-small"),
        "simple": ("gpt-4o-mini", "gemini-pro", "claude-haiku"),
        "moderate": ("gpt-4o", "claude-sonnet", "gemini-pro"),
        "complex": ("gpt-4o", "claude-sonnet", "o1-preview"),
        "expert": ("o1-preview", "claude-opus", "gpt-4o"),
        "epic": ("o1-preview", "claude-opus"),
    }


def _default_quality() -> dict[str, tuple[str, ...]]:
    return {
        "draft": ("gemini-flash", "gpt-4o-mini"),
        "production": ("gpt-4o", "claude-sonnet"),
        "critical": ("o1-preview", "claude-opus"),
    }


def _default_cost() -> dict[str, tuple[str, ...]]:
    return {
        "ultra_low": ("hf-small", "gemini-flash"),
        "low": ("gpt-4o-mini", "claude-haiku"),
        "medium": ("gpt-4o", "gemini-pro"),
        "high": ("claude-sonnet", "o1-preview"),
    }


@attrs.frozen
class RoutingConfig:
    """The seed's matrices: candidate models in preference order per complexity, quality, cost."""

    complexity: dict[str, tuple[str, ...]] = attrs.field(
        factory=_default_complexity, validator=keys_one_of(COMPLEXITIES)
    )
    quality: dict[str, tuple[str, ...]] = attrs.field(
        factory=_default_quality, validator=keys_one_of(QUALITIES)
    )
    #: The models of each cost tier, as `Request.cost` asks for them; a model no row lists
    #: takes the tier its price falls in (see `actors.ranking`).
    cost: dict[str, tuple[str, ...]] = attrs.field(
        factory=_default_cost, validator=keys_one_of(COST_TIERS)
    )
    weights: ScoreWeights = ScoreWeights()
    #: The latency at which the latency component reaches 0: ``max(0, 100 - 100 * latency_ms /
    #: latency_zero_ms)``. The seed's 1000 ms makes every latency above a second equally bad;
    #: LLM calls commonly take several seconds, so a larger value tells them apart.
    latency_zero_ms: float = attrs.field(default=1000.0, validator=positive)
    #: A provider whose latency was last measured longer ago than this is sent one request
    #: first in its level (at most once per period) to measure it again: how a provider that
    #: recovered from a brownout gets back into rotation.
    latency_stale_s: float = attrs.field(default=30.0, validator=positive)
    #: Characters per token when estimating a prompt's size before the call.
    chars_per_token: float = attrs.field(default=4.0, validator=positive)
    #: Predictive failure detection (`actors.detect`): a change detector per provider over its
    #: latency and errors demotes it behind its level's healthy peers before its breaker trips.
    predict: bool = attrs.field(default=False, validator=boolean)
    #: The shift the detector is tuned to find, in baseline standard deviations (of the
    #: log-latency, and of the error indicator).
    predict_shift_sd: float = attrs.field(default=1.0, validator=positive)
    #: Healthy calls between false alarms, at least (the in-control average run length).
    predict_arl: float = attrs.field(default=1e7, validator=at_least(2.0, inclusive=False))
    #: How long a predicted degradation demotes the provider; then it is watched afresh.
    predict_hold_s: float = attrs.field(default=30.0, validator=positive)
    #: "score" (the seed's formula orders each level) or "learned" (`actors.learned`: a
    #: discounted Thompson sampler per provider and model reorders what the score admitted).
    mode: RoutingMode = attrs.field(default="score", validator=one_of(ROUTING_MODES))
    #: Learned mode: the largest share of requests whose first choice may be an exploration
    #: (a sampled order that differs from the best estimate).
    learned_explore_share: float = attrs.field(default=0.02, validator=fraction)
    #: Learned mode: an observation weighs half as much this many seconds later.
    learned_half_life_s: float = attrs.field(default=15.0, validator=positive)
    #: Learned mode: how many calls' worth the seed's numbers (the heartbeat's latency and
    #: error rate) weigh in each estimate.
    learned_prior_weight: float = attrs.field(default=10.0, validator=positive)
    #: Learned mode: milliseconds of expected latency a request would give to save a US cent
    #: (0: price plays no part, as in the seed's score).
    learned_ms_per_cent: float = attrs.field(default=0.0, validator=non_negative)
    #: Learned mode: the seed of the sampler's `random.Random` (a scenario sets its own seed).
    learned_seed: int = 0


@attrs.frozen
class TemplateConfig:
    """A canned last-resort answer. Empty match fields match anything."""

    text: str
    name: str = ""
    complexity: tuple[str, ...] = ()
    quality: tuple[str, ...] = ()
    #: Case-insensitive substring the prompt must contain.
    contains: str = ""


@attrs.frozen
class SupervisionConfig:
    max_restarts: int = attrs.field(default=5, validator=non_negative)
    period_s: float = attrs.field(default=30.0, validator=positive)
    shutdown_grace_s: float = attrs.field(default=5.0, validator=non_negative)


@attrs.frozen
class RuntimeSettings:
    #: Overall deadline of a request when the request names none.
    deadline_s: float = attrs.field(default=120.0, validator=positive)
    heartbeat_interval_s: float = attrs.field(default=1.0, validator=positive)
    #: Longest a request waits, in all, for a rate-limited provider's Retry-After to end before
    #: settling for the last resort or failing; within its deadline. 0: never wait.
    recovery_wait_s: float = attrs.field(default=10.0, validator=non_negative)
    mailbox_size: int = attrs.field(default=256, validator=at_least(1))
    history_size: int = attrs.field(default=100, validator=at_least(1))
    repl_socket: str | None = None
    log_level: LogLevel = attrs.field(default="warning", validator=one_of(LOG_LEVELS))


def _default_levels() -> tuple[LevelConfig, ...]:
    return ()


@attrs.frozen
class AliasConfig:
    """A model name the gateway answers to that stands for a routing policy, not one model
    (`uptax/auto`): what it sets on the request. Unset keys keep the request's defaults."""

    complexity: str | None = attrs.field(default=None, validator=optional_one_of(COMPLEXITIES))
    quality: str | None = attrs.field(default=None, validator=optional_one_of(QUALITIES))
    budget_usd: float | None = attrs.field(default=None, validator=non_negative)
    deadline_s: float | None = attrs.field(default=None, validator=positive)
    cost: str | None = attrs.field(default=None, validator=optional_one_of(COST_TIERS))
    description: str = ""


def _default_aliases() -> dict[str, AliasConfig]:
    return {
        "uptax/auto": AliasConfig(description="the router's choice for a moderate request"),
        "uptax/draft": AliasConfig(
            complexity="simple", quality="draft", description="fast and cheap"
        ),
        "uptax/critical": AliasConfig(
            complexity="expert", quality="critical", description="the strongest models"
        ),
    }


@attrs.frozen
class GatewayConfig:
    """`uptax serve`: what the OpenAI- and Anthropic-compatible gateway accepts."""

    #: Model names that stand for a routing policy (see `AliasConfig`); `uptax/auto`,
    #: `uptax/draft` and `uptax/critical` unless the config names its own.
    aliases: dict[str, AliasConfig] = attrs.field(factory=_default_aliases)
    #: A request body larger than this is refused with 413 before it is parsed.
    max_body_bytes: int = attrs.field(default=4 * 1024 * 1024, validator=at_least(1024))
    #: At most this many messages in one conversation (a 400 beyond).
    max_messages: int = attrs.field(default=2048, validator=at_least(1))
    #: The output limit of a request that names none (OpenAI's `max_tokens` is optional).
    default_max_tokens: int = attrs.field(default=4096, validator=at_least(1))
    #: The tenants' spend ledger (opened only when [[tenants]] are configured): an SQLite file,
    #: or a `postgresql://` (`postgres://`) URL for a database a fleet of gateways shares (its
    #: password is masked wherever the URL is shown; libpq's PGPASSWORD or ~/.pgpass keep it
    #: out of the file).
    #: Unset: `$XDG_STATE_HOME/uptax/ledger.sqlite3` (`~/.local/state/uptax/...`); a relative
    #: path is taken from the working directory.
    ledger: str | None = None
    #: The environment variable holding the key that guards `/admin/*`.
    admin_key_env: str = attrs.field(default="UPTAX_ADMIN_KEY", validator=text)

    #: The whole body must arrive within this many seconds (408 after): a client sending a byte
    #: a second is cut off, not waited for (hypercorn's read timeout is per read, so it never is).
    body_timeout_s: float = attrs.field(default=30.0, validator=positive)
    #: A connection that sends nothing for this long in the middle of a request is closed
    #: (hypercorn's `read_timeout`).
    read_timeout_s: float = attrs.field(default=30.0, validator=positive)
    #: A client that takes none of its reply for this long is cut off (TCP_USER_TIMEOUT on its
    #: connection, Linux): hypercorn's socket writes cannot be cancelled, so only closing the
    #: connection ends a request whose reader stopped reading (and lets a shutdown finish).
    write_timeout_s: float = attrs.field(default=60.0, validator=positive)


StateBackend = Literal["memory", "redis"]
STATE_BACKENDS: tuple[str, ...] = typing.get_args(StateBackend)


def _default_instance() -> str:
    """This process in a fleet: hostname-pid, unique on one machine and across machines."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _redis_url(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise FieldError(attribute.name, f"{value!r} is not a redis://, rediss:// or unix:// URL")


@attrs.frozen
class StateConfig:
    """`[state]`: where the state a fleet of gateways shares lives (`actors.state`). `memory`
    (the default) shares nothing and costs nothing per request; `redis` shares breaker holds,
    tenant rate limits and spend, the last-resort cache and heartbeats through `url`."""

    backend: StateBackend = attrs.field(default="memory", validator=one_of(STATE_BACKENDS))
    url: str | None = attrs.field(default=None, validator=_redis_url)
    #: Prepended to every key, so several fleets (or tests) can share one Redis.
    key_prefix: str = attrs.field(default="uptax:", validator=text)
    #: This instance's id in heartbeats and logs; unset: hostname-pid.
    instance: str = attrs.field(factory=_default_instance, validator=text)
    connect_timeout_s: float = attrs.field(default=1.0, validator=positive)
    #: Longest any one store call may take; past it the instance carries on from local state.
    command_timeout_s: float = attrs.field(default=0.25, validator=positive)
    #: How often shared holds and heartbeats are exchanged (the breaker staleness bound).
    sync_interval_s: float = attrs.field(default=0.5, validator=positive)
    #: A heartbeat not renewed within this long drops its instance from the fleet.
    heartbeat_ttl_s: float = attrs.field(default=5.0, validator=positive)

    def __attrs_post_init__(self) -> None:
        if self.backend == "redis" and not self.url:
            raise FieldError("url", 'missing; backend = "redis" needs a redis:// URL')


def _sha256_hexes(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    for index, digest in enumerate(value):
        if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise FieldError(  # the value is not echoed: it may be a key pasted by mistake
                attribute.name,
                f"entry {index} is not a SHA-256 hex digest (64 hex digits; "
                "`uptax tenants add-key` prints one)",
            )


@attrs.frozen
class TenantConfig:
    """A gateway tenant (`[[tenants]]`): the keys it proves itself with, what it may spend and
    how fast, what it may use. Unset limits do not limit; empty `models`/`levels` allow all."""

    name: str = attrs.field(validator=text)
    #: SHA-256 hex digests of its API keys (the keys themselves are never stored).
    api_key_sha256: tuple[str, ...] = attrs.field(default=(), validator=_sha256_hexes)
    #: An environment variable holding one more key, in clear.
    api_key_env: str | None = None
    budget_usd_per_day: float | None = attrs.field(default=None, validator=non_negative)
    budget_usd_per_month: float | None = attrs.field(default=None, validator=non_negative)
    requests_per_minute: int | None = attrs.field(default=None, validator=at_least(1))
    tokens_per_minute: int | None = attrs.field(default=None, validator=at_least(1))
    #: The models (or aliases) it may ask for by name.
    models: tuple[str, ...] = ()
    #: The levels its requests may use, by name.
    levels: tuple[str, ...] = ()
    #: A request's `budget_usd` is at most this.
    max_budget_usd_per_request: float | None = attrs.field(default=None, validator=non_negative)
    #: Whether the last resort (cache, templates) may answer its requests.
    last_resort: bool = True
    #: How every level tries its candidates for this tenant (sequential, race or hedge);
    #: unset: each level's own `strategy`.
    strategy: Strategy | None = attrs.field(default=None, validator=optional_one_of(STRATEGIES))

    def __attrs_post_init__(self) -> None:
        if not self.api_key_sha256 and not self.api_key_env:
            raise FieldError(
                "api_key_sha256", "missing; a tenant needs api_key_sha256 or api_key_env"
            )


@attrs.frozen
class Config:
    providers: tuple[ProviderConfig, ...]
    levels: tuple[LevelConfig, ...]
    models: dict[str, ModelInfo] = attrs.field(factory=dict)
    routing: RoutingConfig = RoutingConfig()
    templates: tuple[TemplateConfig, ...] = ()
    supervision: SupervisionConfig = SupervisionConfig()
    runtime: RuntimeSettings = RuntimeSettings()
    gateway: GatewayConfig = GatewayConfig()
    #: The gateway's tenants (none: one master key, or no key on loopback).
    tenants: tuple[TenantConfig, ...] = ()
    #: What a fleet of instances shares (`[state]`); memory: nothing.
    state: StateConfig = StateConfig()
    #: Models some provider serves that have a price neither in `models` nor in the shipped
    #: table (`actors.prices`): they cost $0, so `budget_usd` never excludes them. Set by
    #: `parse_config`; not a TOML key.
    unpriced_models: tuple[str, ...] = attrs.field(default=(), init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        names = [p.name for p in self.providers]
        seen: set[str] = set()
        for index, name in enumerate(names):
            if name in seen:
                raise ConfigError(f"providers[{index}].name: {name!r} is defined twice")
            seen.add(name)
        if not self.levels:
            raise ConfigError("levels: at least one [[levels]] table is required")
        level_names: set[str] = set()
        for index, level in enumerate(self.levels):
            if level.name in level_names:
                raise ConfigError(f"levels[{index}].name: {level.name!r} is defined twice")
            level_names.add(level.name)
            if not level.providers:
                raise ConfigError(f"levels[{index}].providers: must name at least one provider")
            for provider in level.providers:
                if provider not in seen:
                    raise ConfigError(
                        f"levels[{index}].providers: {provider!r} is not a configured provider "
                        f"(known: {', '.join(names)})"
                    )

        self._check_templates()
        self._check_tenants(level_names)

    def _check_tenants(self, level_names: set[str]) -> None:
        seen: set[str] = set()
        for index, tenant in enumerate(self.tenants):
            if tenant.name in seen:
                raise ConfigError(f"tenants[{index}].name: {tenant.name!r} is defined twice")
            seen.add(tenant.name)
            for level in tenant.levels:
                if level not in level_names:
                    raise ConfigError(
                        f"tenants[{index}].levels: {level!r} is not a configured level"
                    )
            usable = [
                level
                for level in self.levels
                if (not tenant.levels or level.name in tenant.levels)
                and (tenant.last_resort or not self._is_last_resort(level))
            ]
            if not usable:
                raise ConfigError(
                    f"tenants[{index}].levels: with last_resort = false no level is left"
                )

    def _is_last_resort(self, level: LevelConfig) -> bool:
        kinds = {p.name: p.kind for p in self.providers}
        return all(kinds[name] in LAST_RESORT_KINDS for name in level.providers)

    def _check_templates(self) -> None:
        """Template match fields are checked at load (the last resort compiles them later)."""
        for index, template in enumerate(self.templates):
            for field, choices in (("complexity", COMPLEXITIES), ("quality", QUALITIES)):
                for value in getattr(template, field):
                    if str(value).lower() not in choices:
                        raise ConfigError(
                            f"templates[{index}].{field}: {value!r} is not one of: "
                            f"{', '.join(choices)}"
                        )
            if not template.text:
                raise ConfigError(f"templates[{index}].text: must not be empty")

    def provider(self, name: str) -> ProviderConfig:
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise KeyError(name)

    def model_info(self, model: str) -> ModelInfo:
        return self.models.get(model, _UNKNOWN_MODEL)

    @property
    def warnings(self) -> list[str]:
        """What loads but is probably not what the user meant, one sentence each."""
        return [
            f"model {model!r} has no price in [models] nor in the price table of {PRICES_AS_OF}: "
            f"it counts as free, so budget_usd never excludes it (set input_usd_per_mtok and "
            f'output_usd_per_mtok in [models."{model}"])'
            for model in self.unpriced_models
        ]


_UNKNOWN_MODEL = ModelInfo()


def _is_literal(cls: Any) -> bool:
    origin: Any = typing.get_origin(cls)
    return origin is Literal


def strict_converter(*classes: type) -> cattrs.Converter:
    """A cattrs converter that takes TOML values as written: no "5" for 5, no true for 1, no
    nan or inf, and no unknown keys in any of `classes`. Shared by configs and scenarios."""
    converter = cattrs.Converter(forbid_extra_keys=True)

    def structure_float(value: Any, _: type) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{value!r} is not a number")
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return float(value)

    def structure_int(value: Any, _: type) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        return value

    def structure_str(value: Any, _: type) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        return value

    def structure_bool(value: Any, _: type) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true or false")
        return value

    def structure_in_flight(value: Any, _: Any) -> int | str:
        if value == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer or 'auto'")
        return value

    def structure_literal(value: Any, literal: Any) -> Any:
        choices = typing.get_args(literal)
        found = value.lower() if isinstance(value, str) else value
        if isinstance(value, bool) or found not in choices:
            raise ValueError(f"{value!r} is not one of: {', '.join(map(str, choices))}")
        return found

    converter.register_structure_hook_func(_is_literal, structure_literal)
    converter.register_structure_hook(int | Literal["auto"], structure_in_flight)
    converter.register_structure_hook(float, structure_float)
    converter.register_structure_hook(int, structure_int)
    converter.register_structure_hook(str, structure_str)
    converter.register_structure_hook(bool, structure_bool)
    for cls in classes:
        converter.register_structure_hook(
            cls, make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True)
        )
    return converter


CONVERTER = strict_converter(
    BreakerConfig,
    RecoveryConfig,
    ProviderConfig,
    LevelConfig,
    ModelInfo,
    ScoreWeights,
    RoutingConfig,
    TemplateConfig,
    SupervisionConfig,
    RuntimeSettings,
    AliasConfig,
    GatewayConfig,
    TenantConfig,
    StateConfig,
    Config,
)


def _describe(exc: BaseException, path: str = "") -> list[str]:
    """Flatten cattrs' exception groups into ``path: message`` lines."""
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        keys = ", ".join(sorted(exc.extra_fields))
        return [f"{path or '<top>'}: unknown key(s) {keys}"]
    if isinstance(exc, BaseExceptionGroup):
        lines: list[str] = []
        for sub in exc.exceptions:
            notes = getattr(sub, "__notes__", [])
            note = next((n for n in notes if hasattr(n, "name") or hasattr(n, "index")), None)
            child = path
            if note is not None and hasattr(note, "name"):
                child = f"{path}.{note.name}" if path else str(note.name)
            elif note is not None and hasattr(note, "index"):
                child = f"{path}[{note.index}]"
            lines.extend(_describe(sub, child))
        return lines
    if isinstance(exc, KeyError) and not isinstance(exc, ConfigError):
        return [f"{path}: required key is missing"]
    message = str(exc)
    return [f"{path}: {message}" if path else message]


def _fill_level_timeouts(data: dict[str, Any]) -> None:
    """Give each level without `timeout_s` its documented default (`default_level_timeout`)."""
    levels, providers = data.get("levels"), data.get("providers")
    if not isinstance(levels, list) or not isinstance(providers, list):
        return
    kinds = {
        p.get("name"): p.get("kind") for p in providers if isinstance(p, Mapping)
    }
    filled = []
    for position, level in enumerate(levels):
        if isinstance(level, Mapping) and "timeout_s" not in level:
            names = level.get("providers")
            last_resort_only = isinstance(names, list) and bool(names) and all(
                kinds.get(name) in LAST_RESORT_KINDS for name in names
            )
            timeout = default_level_timeout(position, last_resort_only=last_resort_only)
            level = {**level, "timeout_s": timeout}
        filled.append(level)
    data["levels"] = filled


def _fill_prices(data: dict[str, Any]) -> list[str]:
    """Price from the shipped table every served model whose config gives none; the models
    that have no price anywhere, in order."""
    providers, models = data.get("providers"), data.get("models", {})
    if not isinstance(providers, list) or not isinstance(models, Mapping):
        return []
    served: dict[str, None] = {}
    for provider in providers:
        if isinstance(provider, Mapping) and provider.get("kind") not in LAST_RESORT_KINDS:
            names = provider.get("models", [])
            served.update((name, None) for name in names if isinstance(name, str))
    priced = dict(models)
    unpriced = []
    for model in [*served, *(name for name in models if name not in served)]:
        entry = priced.get(model, {})
        if not isinstance(entry, Mapping):
            continue
        keys = ("input_usd_per_mtok", "output_usd_per_mtok")
        if all(key in entry for key in keys):
            continue
        price = shipped_price(model)
        if price is not None:
            priced[model] = {**dict(zip(keys, price, strict=True)), **entry}
        elif model in served:
            unpriced.append(model)
    data["models"] = priced
    return unpriced


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    """Structure a config mapping (as TOML gives it); a bad value raises `ConfigError`.

    A level without `timeout_s` takes its default, a model without a price the shipped one
    (`actors.prices`); models without any price are listed in `Config.warnings`.
    """
    data = dict(data)
    _fill_level_timeouts(data)
    unpriced = _fill_prices(data)
    try:
        config = CONVERTER.structure(data, Config)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except Exception as exc:  # cattrs raises groups of anything a validator raised
        lines = _describe(exc)
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None
    # Frozen, and not a TOML key: set once here, like a value computed at load.
    object.__setattr__(config, "unpriced_models", tuple(unpriced))
    return config


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read a TOML config file; a bad value raises `ConfigError` naming the field."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc})") from None
    return parse_config(data, source=str(file))
