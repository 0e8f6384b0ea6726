"""The report's arithmetic, its checks and its renderings, from hand-made recorder data."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from actors.errors import AllLevelsFailed
from actors.messages import Attempt, Reply, Usage
from runtime.scenario.format import Scenario, parse_scenario
from runtime.scenario.html import render_html, render_svg
from runtime.scenario.recorder import SAMPLED, AppliedFault, Interner, Recorder, Result
from runtime.scenario.report import build_report, level_chars, percentile
from runtime.scenario.terminal import render_strip, render_terminal

SVG = "{http://www.w3.org/2000/svg}"


def _scenario(expect: dict[str, Any] | None = None) -> Scenario:
    return parse_scenario(
        {
            "scenario": {"base": "demo", "name": "synthetic"},
            "load": {"rps": 2, "duration_s": 40},
            "faults": [{"at_s": 10, "provider": "openai", "kind": "outage", "duration_s": 10}],
            "expect": expect or {},
        },
        source="synthetic.toml",
    )


def _recorder(scenario: Scenario) -> Recorder:
    config = scenario.config
    return Recorder(
        providers=[p.name for p in config.providers],
        levels=[level.name for level in config.levels],
        baseline_price=config.model_info("gpt-4o"),
        clock=lambda: 0.0,
    )


def _reply(provider: str, level: str, attempts: tuple[Attempt, ...], cost: float = 0.001) -> Reply:
    return Reply(
        text="answer",
        provider=provider,
        model="gpt-4o-mini" if provider == "openai" else "claude-haiku",
        level=level,
        fallback_used=len(attempts) > 1,
        attempts=attempts,
        latency_ms=sum(a.latency_ms for a in attempts),
        cost_usd=cost,
        usage=Usage(1000, 100),
    )


def _ok(provider: str, latency_ms: float = 500.0) -> Attempt:
    return Attempt(provider, "m", "primary", "ok", latency_ms)


def _failed(provider: str, outcome: str = "server_error") -> Attempt:
    return Attempt(provider, "m", "primary", outcome, 0.0)


def _record(rec: Recorder, index: int, at: float, attempts: tuple[Attempt, ...], **kw: Any) -> None:
    served = attempts[-1]
    reply = _reply(served.provider, served.level, attempts, **kw)
    finished = at + reply.latency_ms / 1000
    rec.record_reply(
        index=index,
        mix=0,
        stream=False,
        arrival=at,
        started=at,
        finished=finished,
        reply=reply,
        budget_usd=0.0005 if index == 0 else None,
        prompt_chars=400,
    )


def _outage_run() -> tuple[Scenario, Recorder]:
    """Requests every 0.5 s for 40 s; openai is out from 10 s to 20 s. The first four requests
    of the outage pay a failed call to openai, then its breaker opens and anthropic answers."""
    scenario = _scenario()
    rec = _recorder(scenario)
    rec.issued = 80
    for index in range(80):
        at = index * 0.5
        attempts: tuple[Attempt, ...]
        if 10 <= at < 12:
            attempts = (_failed("openai"), _ok("anthropic"))
        elif 12 <= at < 20:
            attempts = (_ok("anthropic"),)
        else:
            attempts = (_ok("openai"),)
        _record(rec, index, at, attempts)
    rec.record_fault(AppliedFault(0, "openai", "outage", 10.0, None, "outage on openai"))
    rec.end_fault(0, 20.0)
    for at, state, reason in [
        (0.0, "closed", ""),
        (11.0, "open", "consecutive_failures"),
        (16.0, "half_open", "open_elapsed"),
        (16.5, "open", "probe_failed"),
        (20.0, "half_open", "open_elapsed"),
        (21.0, "closed", "probes_succeeded"),
        (30.0, "open", "retry_after"),
        (32.0, "closed", "retry_after_elapsed"),
    ]:
        rec.record_breaker("openai", at, state, reason)
    rec.end = 40.0
    return scenario, rec


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile(values, 0.99) == 99
    assert percentile([7.0], 0.99) == 7
    assert percentile([], 0.5) is None


def test_totals_availability_fallback_lost_and_errors() -> None:
    scenario = _scenario()
    rec = _recorder(scenario)
    rec.issued = 11
    for index in range(8):
        attempts = (_failed("openai"), _ok("anthropic")) if index < 2 else (_ok("openai"),)
        _record(rec, index, float(index), attempts)
    rec.record_error(
        index=8, mix=0, stream=False, arrival=8.0, started=8.0, finished=9.0,
        error=AllLevelsFailed("nothing", [_failed("openai")]),
    )  # fmt: skip
    rec.record_error(
        index=9, mix=0, stream=False, arrival=9.0, started=9.0, finished=40.0,
        error=None, result=Result.LOST,
    )  # fmt: skip
    data = build_report(rec, scenario, seed=1, mode="virtual").data
    requests = data["requests"]
    # One recorded as lost, one issued and never recorded at all.
    assert requests["lost"] == 2
    assert requests["answered"] == 8
    assert requests["outcomes"] == {"all_levels_failed": 1, "lost": 1}
    assert requests["errors_total"] == 1
    assert data["availability"] == pytest.approx(8 / 11, abs=1e-6)
    assert data["fallback_rate"] == pytest.approx(2 / 8, abs=1e-6)
    # Request 0 had a 0.0005 budget and cost 0.001.
    assert requests["over_budget"] == 1


def test_provider_and_level_tables() -> None:
    scenario, rec = _outage_run()
    data = build_report(rec, scenario, seed=1, mode="virtual").data
    providers = {p["name"]: p for p in data["providers"]}
    openai, anthropic = providers["openai"], providers["anthropic"]
    assert openai["calls"] == 64 and openai["served"] == 60
    assert openai["failures"] == {"server_error": 4}
    assert anthropic["served"] == 20 and anthropic["failures"] == {}
    assert openai["cost_usd"] == pytest.approx(0.06)
    assert openai["latency_ms"]["p50"] == 500
    levels = {level["name"]: level for level in data["levels"]}
    assert levels["primary"]["served"] == 80 and levels["primary"]["share"] == 1.0
    assert levels["secondary"]["served"] == 0


def test_breaker_trips_holds_time_open_and_half_open_calls() -> None:
    scenario, rec = _outage_run()
    openai = next(p for p in build_report(rec, scenario, seed=1, mode="virtual").data["providers"]
                  if p["name"] == "openai")  # fmt: skip
    assert openai["breaker_trips"] == 2
    assert openai["breaker_holds"] == 1
    assert openai["time_open_s"] == pytest.approx(5 + 3.5 + 2)
    # Calls to openai that started in [20, 21): requests at 20.0 and 20.5 (attempts of 0.5 s).
    assert openai["half_open_calls_max"] == 2


def test_an_event_replaces_a_status_sample_that_ran_ahead_of_it() -> None:
    """On a busy machine the sampler can read a breaker's state before the event that says when
    and why it changed: the event wins, so a Retry-After hold is not counted as a trip and the
    changes stay in time order."""
    scenario, rec = _outage_run()
    rec.breaker.clear()
    rec.record_breaker("openai", 0.0, "closed", "")
    rec.record_breaker("openai", 30.2, "open", SAMPLED)  # seen before the event below
    rec.record_breaker("openai", 30.0, "open", "retry_after")
    rec.record_breaker("openai", 32.5, "half_open", SAMPLED)  # ahead of two queued events
    rec.record_breaker("openai", 32.0, "closed", "retry_after_elapsed")
    rec.record_breaker("openai", 32.1, "open", "retry_after")
    rec.record_breaker("openai", 33.0, "closed", SAMPLED)  # a missed event: kept
    assert [(c.at, c.state, c.reason) for c in rec.breaker["openai"]] == [
        (0.0, "closed", ""),
        (30.0, "open", "retry_after"),
        (32.0, "closed", "retry_after_elapsed"),
        (32.1, "open", "retry_after"),
        (33.0, "closed", SAMPLED),
    ]
    data = build_report(rec, scenario, seed=1, mode="virtual").data
    openai = next(p for p in data["providers"] if p["name"] == "openai")
    assert (openai["breaker_trips"], openai["breaker_holds"]) == (0, 2)


def test_mttr_both_definitions() -> None:
    scenario, rec = _outage_run()
    data = build_report(rec, scenario, seed=1, mode="virtual").data
    (fault,) = data["faults"]
    # Requests at 10.0-11.5 paid for openai's failure; from 12.0 on, five clean in a row.
    assert fault["mttr_s"] == pytest.approx(2.0)
    assert fault["paid_requests"] == 4
    # The fault ended at 20; the call that started at 20.0 succeeded at 20.5.
    assert fault["recovery_s"] == pytest.approx(0.5)
    assert fault["in_rotation_before"] is True


def test_a_fault_never_recovered_from_reports_none_and_fails_its_check() -> None:
    scenario = _scenario({"mttr_s_max": 30, "recovery_s_max": 30})
    rec = _recorder(scenario)
    for index in range(40):
        at = index * 0.5
        attempts: tuple[Attempt, ...] = (_ok("openai"),) if at < 10 else (_failed("openai"), _ok("anthropic"))
        _record(rec, index, at, attempts)
    rec.issued = 40
    rec.record_fault(AppliedFault(0, "openai", "outage", 10.0, None, "outage on openai"))
    report = build_report(rec, scenario, seed=1, mode="virtual")
    (fault,) = report.data["faults"]
    assert fault["mttr_s"] is None and fault["recovery_s"] is None
    assert not report.passed
    failed = {check.name for check in report.checks if not check.passed}
    assert failed == {"MTTR s (answered without paying) <= 30", "MTTR s (back in rotation) <= 30"}


def test_expectations_pass_and_fail_with_measured_values() -> None:
    scenario, _ = _outage_run()
    expect = {
        "availability_min": 0.999,
        "p50_ms_max": 1,
        "fallback_rate_max": 0.5,
        "providers": {"openai": {"breaker_trips_min": 3, "served_min": 10}},
        "levels": {"primary": {"share_min": 0.9}},
    }
    scenario = parse_scenario(
        {
            "scenario": {"base": "demo"},
            "load": {"rps": 2, "duration_s": 40},
            "faults": [{"at_s": 10, "provider": "openai", "kind": "outage", "duration_s": 10}],
            "expect": expect,
        },
        source="synthetic.toml",
    )
    _, rec = _outage_run()
    report = build_report(rec, scenario, seed=1, mode="virtual")
    outcome = {check.name: (check.passed, check.measured) for check in report.checks}
    assert outcome["availability >= 0.999"] == (True, 1.0)
    assert outcome["p50 latency ms <= 1"] == (False, 500.0)
    assert outcome["openai breaker trips >= 3"] == (False, 2)
    assert outcome["openai served >= 10"] == (True, 60)
    assert outcome["primary share >= 0.9"] == (True, 1.0)
    assert outcome["lost requests <= 0"] == (True, 0)
    assert not report.passed
    assert report.data["passed"] is False
    text = render_terminal(report)
    assert "FAIL  p50 latency ms <= 1  (measured 500)" in text
    assert "PASS  availability >= 0.999  (measured 1)" in text
    assert text.rstrip().endswith("FAILED")


def test_host_measurements_never_reach_the_json() -> None:
    scenario = _scenario({"object_growth_max": 10})
    _, rec = _outage_run()
    host = {"wall_s": 1.234, "object_growth": 50, "mailbox_max": 3}
    report = build_report(rec, scenario, seed=1, mode="virtual", host=host)
    check = next(c for c in report.checks if c.host)
    assert check.measured == 50 and not check.passed
    text = report.to_json()
    assert "1.234" not in text and "mailbox" not in text
    assert json.loads(text)["expectations"][-1]["measured"] is None


def test_json_is_stable_and_sorted() -> None:
    scenario, rec = _outage_run()
    first = build_report(rec, scenario, seed=1, mode="virtual").to_json()
    second = build_report(rec, scenario, seed=1, mode="virtual").to_json()
    assert first == second
    data = json.loads(first)
    assert list(data) == sorted(data)
    assert data["scenario"]["seed"] == 1 and data["scenario"]["file"] == "synthetic.toml"


def test_strip_shows_the_serving_level_errors_and_idle_buckets() -> None:
    scenario = _scenario()
    rec = _recorder(scenario)
    _record(rec, 0, 0.2, (_ok("openai"),))
    secondary = Attempt("gemini", "m", "secondary", "ok", 100.0)
    for index, at in enumerate([1.1, 1.2, 1.3], start=1):
        _record(rec, index, at, (_failed("openai"), secondary))
    _record(rec, 4, 1.4, (_ok("openai"),))
    rec.record_error(
        index=5, mix=0, stream=False, arrival=3.5, started=3.5, finished=4.0,
        error=AllLevelsFailed("x", []),
    )  # fmt: skip
    rec.issued = 6
    timeline = build_report(rec, scenario, seed=1, mode="virtual").data["timeline"]
    assert timeline["bucket_s"] == 1
    assert timeline["strip"][:5] == "PS.x."
    assert timeline["served"]["secondary"][1] == 3
    lines = render_strip(timeline, width=20)
    assert lines[0].startswith("serving level, one char per second: P=primary")
    assert lines[1] == "       0s PS.x................"


def test_long_runs_use_wider_buckets() -> None:
    scenario = parse_scenario(
        {"scenario": {"base": "demo"}, "load": {"rps": 1, "duration_s": 3600}}, source="x"
    )
    rec = _recorder(scenario)
    timeline = build_report(rec, scenario, seed=1, mode="virtual").data["timeline"]
    assert timeline["bucket_s"] == 6 and timeline["buckets"] == 600


def test_level_chars_are_distinct() -> None:
    assert level_chars(["primary", "secondary", "emergency", "last_resort"]) == {
        "primary": "P",
        "secondary": "S",
        "emergency": "E",
        "last_resort": "L",
    }
    # "x" marks errors and "." idle buckets; a clash falls back to the level's position.
    chars = level_chars(["fast", "fallback", "xtra", "."])
    assert chars == {"fast": "F", "fallback": "2", "xtra": "X", ".": "4"}


def test_svg_timeline_parses_and_shows_levels_latency_faults_and_breakers() -> None:
    scenario, rec = _outage_run()
    report = build_report(rec, scenario, seed=1, mode="virtual")
    root = ET.fromstring(render_svg(report))
    assert root.tag == f"{SVG}svg"
    served = root.findall(f".//{SVG}polygon[@class='served']")
    assert [p.get("data-level") for p in served] == [
        "primary", "secondary", "emergency", "last_resort", "errors",
    ]  # fmt: skip
    assert served[0].get("data-requests") == "80"
    percentiles = {p.get("data-percentile") for p in root.findall(f".//{SVG}polyline")}
    assert percentiles == {"p50", "p95", "p99"}
    (fault,) = root.findall(f".//{SVG}rect[@class='fault']")
    assert (fault.get("data-provider"), fault.get("data-kind")) == ("openai", "outage")
    assert (fault.get("data-start"), fault.get("data-end")) == ("10", "20")
    bands = root.findall(f".//{SVG}g[@class='breaker-band']")
    assert [b.get("data-provider") for b in bands] == [p.name for p in scenario.config.providers]
    openai = bands[0].findall(f"{SVG}rect[@class='breaker-state']")
    assert [r.get("data-state") for r in openai] == [
        "closed", "open", "half_open", "open", "half_open", "closed", "open", "closed",
    ]  # fmt: skip
    xs = [float(r.get("x", "0")) for r in openai]
    assert xs == sorted(xs)
    widths = [float(r.get("width", "0")) for r in openai]
    assert all(w > 0 for w in widths)
    # The open spell from 11 s to 16 s is 5/40 of the plot's width.
    assert widths[1] / sum(widths) == pytest.approx(5 / 40, abs=1e-3)


def test_html_page_is_self_contained() -> None:
    scenario, rec = _outage_run()
    page = render_html(build_report(rec, scenario, seed=1, mode="virtual"))
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "http://" not in page.replace(
        "http://www.w3.org/2000/svg", ""
    )
    svg = re.search(r"<svg.*?</svg>", page, re.S)
    assert svg is not None
    ET.fromstring(svg.group(0))
    assert "PASSED" in page and "outage on openai" in page


def test_slow_replies_pay_only_when_the_faulted_provider_served_them() -> None:
    """A brownout: openai answers in 8 s from 10 s to 14 s, then a slow fallback (3 s, slower
    than the clean latency too) answers in its place. Only openai's slow replies paid."""
    scenario = _scenario()
    rec = _recorder(scenario)
    for index in range(80):
        at = index * 0.5
        attempts: tuple[Attempt, ...]
        if 10 <= at < 14:
            attempts = (_ok("openai", 8000.0),)
        elif 14 <= at < 20:
            attempts = (Attempt("local", "m", "emergency", "ok", 3000.0),)
        else:
            attempts = (_ok("openai"),)
        _record(rec, index, at, attempts)
    rec.issued = 80
    rec.record_fault(AppliedFault(0, "openai", "latency", 10.0, 20.0, "latency x10 on openai"))
    data = build_report(rec, scenario, seed=1, mode="virtual").data
    assert data["clean_latency_ms"] == pytest.approx(1000.0)
    (fault,) = data["faults"]
    assert fault["mttr_s"] == pytest.approx(4.0)
    assert fault["paid_requests"] == 8


def test_interner_codes_names_in_the_order_first_seen_however_asked() -> None:
    interner = Interner(["a", "b"])
    assert interner.codes["b"] == interner.code("b") == 1
    assert interner.codes["c"] == 2  # a new name through the mapping gets the next code
    assert interner.code("d") == 3
    assert interner.codes["c"] == 2 and interner.code("a") == 0
    assert interner.names == ["a", "b", "c", "d"] and len(interner) == 4
    assert [interner[code] for code in range(4)] == ["a", "b", "c", "d"]
