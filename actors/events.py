"""Every event the runtime emits, with the log level it is written at.

One table serves the logs (the kernel's `EventBus` takes it, so at the default level a user sees
what needs attention: a provider unavailable, a breaker opening, a request failing, a crash) and
the REPL's `watch`, which refuses a name that matches no event.
"""

from __future__ import annotations

from collections.abc import Mapping

DEBUG, INFO, WARNING, ERROR = "debug", "info", "warning", "error"

EVENT_LEVELS: Mapping[str, str] = {
    # provider actors
    "provider_unavailable": WARNING,
    "provider_auth_failed": ERROR,
    "provider_rate_limited": WARNING,
    "provider_health_changed": INFO,
    "provider_client_closed": DEBUG,
    "adapter_error": ERROR,
    "breaker_opened": WARNING,
    "breaker_half_open": INFO,
    "breaker_closed": INFO,
    "breaker_overridden": WARNING,
    "breaker_awaiting_fleet_probe": INFO,
    "breaker_override_from_fleet": INFO,
    "recovery_probe": DEBUG,
    "provider_recovered": INFO,
    "concurrency_limit_changed": DEBUG,
    "concurrency_limit_cut": INFO,
    # requests
    "request_failed": WARNING,
    "fallback_used": INFO,
    "request_hedged": DEBUG,
    "level_demoted": DEBUG,
    "level_hedged": DEBUG,
    "waiting_for_provider": INFO,
    "stream_interrupted": WARNING,
    # supervision (the kernel's events)
    "actor_crashed": ERROR,
    "actor_restarted": WARNING,
    "actor_exited": INFO,
    "supervisor_escalated": ERROR,
    # alerts, operator steering and configuration
    "alert_raised": WARNING,
    "learned_leader_changed": INFO,
    "alert_cleared": INFO,
    "fault_injected": WARNING,
    "fault_healed": INFO,
    "operator_action": WARNING,
    "price_changed": WARNING,
    "config_warning": WARNING,
}

#: Every event name, sorted: what `watch` accepts.
EVENT_NAMES: tuple[str, ...] = tuple(sorted(EVENT_LEVELS))
