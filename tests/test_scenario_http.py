"""One short scenario per fault kind in `http` mode: real time, real wire protocols, the fake
provider server on loopback.

Each scenario puts the faulted provider alone on the primary level, speaking one of the four
protocols, so every fault goes through a real adapter's failure path. The scenarios share one
trio run (each with its own fake server and runtime), a few at a time.

Real time on a slow, busy machine: every runtime and fake server shares one thread, so a call that
takes 20 ms on the wire can take seconds of wall time when the CPU is short. The margins are
sized for that: level timeouts far above any fault's intended latency (the `hang` fault is the
only one meant to time out), faults that stay on to the end, a long drain, and at most `AT_ONCE`
scenarios in flight. A timeout that is only the machine's lag would count against the breaker
(five in a row trip it) and fail the `latency` and `rate_limit` checks for a reason that is not
theirs.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from runtime.scenario.format import Scenario, parse_scenario
from runtime.scenario.recorder import Recorder
from runtime.scenario.report import Report, build_report
from runtime.scenario.runner import FAKE_KEY_ENV, run_scenario_async

# kind -> (the faulted provider, its protocol, extra fault keys, stream fraction)
KINDS: dict[str, tuple[str, str, dict[str, Any], float]] = {
    "outage": ("anthropic", "anthropic", {}, 0.0),
    "errors": ("gemini", "gemini", {"rate": 0.7}, 0.0),
    "latency": ("openai", "openai", {"factor": 5}, 0.0),
    "hang": ("local", "ollama", {}, 0.0),
    "rate_limit": ("openai", "openai", {"retry_after_s": 1}, 0.0),
    "quota": ("anthropic", "anthropic", {"retry_after_s": 1}, 0.0),
    "drop_stream": ("gemini", "gemini", {"after_chunks": 2}, 1.0),
    "malformed": ("local", "ollama", {}, 0.0),
    "slow_drip": ("anthropic", "anthropic", {"delay_s": 0.05}, 1.0),
    "flapping": ("openai", "openai", {"down_s": 0.5, "up_s": 0.5}, 0.0),
    "crash": ("gemini", "gemini", {"every_s": 0.7}, 0.0),
    "rate_cap": ("anthropic", "anthropic", {"rps": 2}, 0.0),
}
DURATION_S = 5.0
FAULT_AT_S = 0.5
#: A steady fault stays on to the end of the run, drain included: a call starved of CPU reaches
#: the server seconds late (15 s was seen), and must still meet the fault. Only the kinds that
#: are made of windows get an end.
WINDOWED = frozenset({"flapping", "crash"})
FAULT_FOR_S = 4.0
RPS = 5
#: Scenarios running at once: enough to overlap their waits, few enough not to starve the thread.
AT_ONCE = 3
#: The primary's timeout. No fault but `hang` is meant to reach it: 20 ms x 5 (`latency`) is
#: 0.1 s, and a call starved of CPU was seen to take 7 s, so 30 s leaves room for a far worse
#: machine. `hang` needs a timeout to show, and any length shows it: a shorter one keeps the
#: test short.
PRIMARY_TIMEOUT_S = 30.0
HANG_TIMEOUT_S = 3.0
#: Time after the load for requests still in flight to end before they count as lost.
DRAIN_S = 60


def _scenario(kind: str) -> Scenario:
    provider, protocol, extra, stream_fraction = KINDS[kind]
    backup = "mistral"
    timeout_s = HANG_TIMEOUT_S if kind == "hang" else PRIMARY_TIMEOUT_S
    providers = [
        {"name": name, "latency_ms": 20, "http_kind": http_kind}
        for name, http_kind in [
            ("openai", "openai"),
            ("anthropic", "anthropic"),
            ("gemini", "gemini"),
            ("local", "ollama"),
            ("mistral", "mistral"),
        ]
    ]
    fault: dict[str, Any] = {"at_s": FAULT_AT_S, "provider": provider, "kind": kind, **extra}
    if kind in WINDOWED:
        fault["duration_s"] = FAULT_FOR_S
    scenario = parse_scenario(
        {
            "scenario": {"name": f"http-{kind}", "base": "demo", "drain_s": DRAIN_S, "sample_s": 0.25},
            "providers": providers,
            "levels": [
                {"name": "primary", "providers": [provider], "timeout_s": timeout_s},
                {"name": "secondary", "providers": [backup], "timeout_s": 20},
                {"name": "last_resort", "providers": ["cache", "templates"], "timeout_s": 10},
            ],
            "load": {"rps": RPS, "duration_s": DURATION_S, "stream_fraction": stream_fraction},
            "faults": [fault],
        },
        source=f"http-{kind}",
    )
    assert scenario.http_kinds[provider] == protocol
    return scenario


async def _run_all() -> dict[str, Report]:
    reports: dict[str, Report] = {}
    limiter = trio.CapacityLimiter(AT_ONCE)

    async def one(kind: str) -> None:
        scenario = _scenario(kind)
        async with limiter:
            recorder: Recorder = await run_scenario_async(scenario, seed=1, mode="http")
        reports[kind] = build_report(recorder, scenario, seed=1, mode="http")

    async with trio.open_nursery() as nursery:
        for kind in KINDS:
            nursery.start_soon(one, kind)
    return reports


async def test_every_fault_kind_in_http_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAKE_KEY_ENV, "fake-key")
    reports = await _run_all()
    problems: list[str] = []
    for kind, report in sorted(reports.items()):
        data = report.data
        provider = KINDS[kind][0]
        stats = next(p for p in data["providers"] if p["name"] == provider)
        failures = stats["failures"]
        requests = data["requests"]
        facts = {
            "requests were issued": requests["issued"] >= 20,
            "none was lost": requests["lost"] == 0,
            "each ended once": requests["answered"] + requests["errors_total"]
            == requests["issued"],
            "the fault was applied": bool(data["faults"]),
            "the provider was called": stats["calls"] > 0,
        }
        expected = {
            "outage": ("server_error" in failures and data["availability"] == 1.0),
            "errors": ("server_error" in failures and data["availability"] == 1.0),
            # 20 ms x 5: slower, and far inside the level's timeout.
            "latency": (stats["latency_ms"]["max"] or 0) >= 90 and not failures,
            "hang": ("timeout" in failures and data["availability"] == 1.0),
            # A 429 holds the provider out for its Retry-After and never trips the breaker.
            "rate_limit": (
                "rate_limited" in failures
                and stats["breaker_trips"] == 0
                and stats["breaker_holds"] >= 1
            ),
            "quota": ("rate_limited" in failures and data["availability"] == 1.0),
            "drop_stream": requests["outcomes"].get("stream_interrupted", 0)
            + failures.get("connection", 0)
            > 0,
            "malformed": ("malformed" in failures and data["availability"] == 1.0),
            "slow_drip": (stats["latency_ms"]["max"] or 0) >= 200,
            "flapping": (data["faults"][0]["windows"] >= 2 and "server_error" in failures),
            "crash": stats["restarts"] >= 1,
            # 5 rps against a hidden limit of 2: some calls get 429s, some get through.
            "rate_cap": (
                "rate_limited" in failures and stats["served"] >= 1 and stats["breaker_trips"] == 0
            ),
        }
        facts[f"{kind} showed its effect"] = expected[kind]
        problems += [f"{kind}: {fact}: {stats} {requests}" for fact, ok in facts.items() if not ok]
    assert not problems, "\n".join(problems)
