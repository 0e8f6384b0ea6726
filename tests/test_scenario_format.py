"""Scenario files: parsing, merging over the demo config, and errors that name file, table, key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from actors.faults import Fault, FaultKind
from runtime.scenario.cli import main
from runtime.scenario.format import ScenarioError, load_scenario, parse_scenario

FULL = """
[scenario]
name = "full"
description = "every table"
base = "demo"
seed = 5
clean_latency_ms = 2500

[[providers]]
name = "openai"
latency_ms = 100
breaker = { open_max_s = 30 }

[[providers]]
name = "gemini"
http_kind = "gemini"

[load]
rps = 12.5
duration_s = 90
concurrency = 32
arrivals = "uniform"
stream_fraction = 0.25
prompts = 10

[[load.mix]]
weight = 3
complexity = "trivial"
quality = "draft"
budget_usd = 0.001

[[load.mix]]
complexity = "expert"
quality = "critical"

[[load.phases]]
at_s = 30
rps = 50

[[faults]]
at_s = 10
provider = "openai"
kind = "latency"
factor = 10
duration_s = 20

[[faults]]
at_s = 40
provider = "anthropic"
kind = "flapping"
fault = "errors"
rate = 0.5
down_s = 5
up_s = 5
duration_s = 30

[[faults]]
at_s = 50
provider = "gemini"
kind = "crash"
every_s = 2
duration_s = 10

[expect]
availability_min = 0.999
p95_ms_max = 2000
mttr_s_max = 30

[expect.providers.openai]
breaker_trips_min = 1

[expect.levels.primary]
share_min = 0.5

[expect.actors.router]
restarts_max = 0
"""


def _write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_full_scenario_parses_into_frozen_values(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, FULL))
    assert scenario.name == "full"
    assert scenario.info.seed == 5
    assert scenario.load.rps == 12.5
    assert scenario.load.arrivals == "uniform"
    assert [m.complexity for m in scenario.load.mix] == ["trivial", "expert"]
    assert scenario.load.mix[0].budget_usd == 0.001
    assert scenario.load.rate_at(10) == 12.5
    assert scenario.load.rate_at(31) == 50
    latency, flapping, crash = scenario.faults
    assert latency.to_fault().kind is FaultKind.LATENCY and latency.to_fault().factor == 10
    assert latency.end_s == 30
    assert flapping.to_fault().kind is FaultKind.ERRORS and flapping.to_fault().rate == 0.5
    assert crash.every_s == 2
    assert scenario.expect.providers["openai"].breaker_trips_min == 1
    assert scenario.expect.levels["primary"].share_min == 0.5
    assert scenario.expect.actors["router"].restarts_max == 0
    assert scenario.expect.lost_requests_max == 0
    assert scenario.primary == "openai"
    with pytest.raises(AttributeError):
        scenario.load.rps = 1  # type: ignore[misc]


def test_providers_merge_by_name_over_the_base(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, FULL))
    openai = scenario.config.provider("openai")
    assert openai.latency_ms == 100
    assert openai.breaker.open_max_s == 30
    # Keys the scenario did not give keep the demo's values, in the breaker table too.
    assert openai.models == ("gpt-4o", "gpt-4o-mini", "o1-preview")
    assert openai.breaker.open_s == 5.0
    assert [p.name for p in scenario.config.providers][:2] == ["openai", "anthropic"]
    assert scenario.config.model_info("gpt-4o").input_usd_per_mtok == 2.5


def test_http_kind_is_taken_out_of_the_config_and_defaults_by_name(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, FULL))
    assert scenario.http_kinds["gemini"] == "gemini"
    assert scenario.http_kinds["anthropic"] == "anthropic"
    # "local" names no protocol: it is served with the OpenAI one.
    assert scenario.http_kinds["local"] == "openai"
    assert "cache" not in scenario.http_kinds


BASE = """
[scenario]
base = "demo"
[load]
rps = 1
duration_s = 60
"""


def _with(extra: str) -> str:
    """A scenario file: `extra`, plus the [scenario] and [load] tables unless it has its own."""
    head = "" if "[scenario]" in extra else "[scenario]\nbase = 'demo'\n"
    load = "" if "[load]" in extra else "[load]\nrps = 1\nduration_s = 60\n"
    return head + load + extra


# (extra TOML, the table the error must name, the key it must name)
MALFORMED = [
    ("[load]\nrps = 'fast'\nduration_s = 60\n", "[load]", "rps"),
    ("[load]\nrps = 1\nduration_s = -5\n", "[load]", "duration_s"),
    ("[load]\nrps = 1\n", "[load]", "duration_s"),
    ("[load]\nrps = 1\nduration_s = 60\nburst = 3\n", "[load]", "burst"),
    ("[[load.mix]]\nweight = 1\n[[load.mix]]\ncomplexity = 'hard'\n", "[[load.mix]] (entry 2)", "complexity"),
    ("[[load.mix]]\nweight = 0\n", "[[load.mix]] (entry 1)", "weight"),
    ("[[faults]]\nat_s = 1\nprovider = 'openai'\nkind = 'outaged'\n", "[[faults]] (entry 1)", "kind"),
    ("[[faults]]\nat_s = 1\nprovider = 'nobody'\nkind = 'outage'\n", "[[faults]] (entry 1)", "provider"),
    ("[[faults]]\nat_s = 1\nkind = 'outage'\n", "[[faults]] (entry 1)", "provider"),
    ("[[faults]]\nat_s = 1\nprovider = 'openai'\nkind = 'outage'\nfactr = 2\n", "[[faults]] (entry 1)", "factr"),
    ("[[faults]]\nat_s = 500\nprovider = 'openai'\nkind = 'outage'\n", "[[faults]] (entry 1)", "at_s"),
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'flapping'\n", "[[faults]] (entry 1)", "duration_s"),
    ("[[faults]]\nat_s = 5\nprovider = 'cache'\nkind = 'outage'\n", "[[faults]] (entry 1)", "provider"),
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'outage'\nstatus = 200\n", "[[faults]] (entry 1)", "status"),
    # ramps, the hidden rate limit and price changes
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'outage'\nramp_s = 60\n", "[[faults]] (entry 1)", "ramp_s"),
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'errors'\nstart_rate = 0.1\n", "[[faults]] (entry 1)", "start_rate"),
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'errors'\nramp_s = 9\nstart_factor = 2\n", "[[faults]] (entry 1)", "start_factor"),
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'errors'\nramp_s = 60\nduration_s = 30\n", "[[faults]] (entry 1)", "ramp_s"),
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'errors'\nramp_s = 60\nstart_rate = 2\n", "[[faults]] (entry 1)", "start_rate"),
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'rate_cap'\nrps = 0\n", "[[faults]] (entry 1)", "rps"),
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'price'\n", "[[faults]] (entry 1)", "input_usd_per_mtok"),
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'price'\nmodel = 'claude-sonnet'\ninput_usd_per_mtok = 1\n", "[[faults]] (entry 1)", "model"),
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'price'\noutput_usd_per_mtok = -1\n", "[[faults]] (entry 1)", "output_usd_per_mtok"),
    ("[[faults]]\nat_s = 5\nprovider = 'openai'\nkind = 'outage'\nmodel = 'gpt-4o'\n", "[[faults]] (entry 1)", "model"),
    ("[expect]\navailability_min = 1.5\n", "[expect]", "availability_min"),
    ("[expect]\navailabilty_min = 0.9\n", "[expect]", "availabilty_min"),
    ("[expect.providers.openai]\nserved_mn = 1\n", "[expect.providers.openai]", "served_mn"),
    ("[expect.providers.nobody]\nserved_min = 1\n", "[expect.providers.nobody]", None),
    ("[expect.levels.tertiary]\nshare_min = 0.1\n", "[expect.levels.tertiary]", None),
    ("[[providers]]\nname = 'openai'\nlatency_ms = 'slow'\n", "[[providers]] (entry 1, name 'openai')", "latency_ms"),
    ("[[providers]]\nname = 'openai'\nhttp_kind = 'grpc'\n", "[[providers]] (entry 1)", "http_kind"),
    ("[scenario]\nbase = 'demo'\nseed = 'x'\n", "[scenario]", "seed"),
    ("[scenario]\nbase = 'missing.toml'\n", "[scenario]", "base"),
]


@pytest.mark.parametrize(("extra", "table", "key"), MALFORMED)
def test_malformed_scenarios_name_file_table_and_key(tmp_path: Path, extra: str, table: str, key: str | None) -> None:
    path = _write(tmp_path, _with(extra), "bad.toml")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert f"table {table}" in message, message
    if key is not None:
        assert f"key {key}" in message, message


def test_stream_error_is_a_timeline_fault_kind(tmp_path: Path) -> None:
    faults = (
        "[[faults]]\nat_s = 1\nprovider = 'openai'\nkind = 'stream_error'\nafter_chunks = 2\n"
        "duration_s = 5\n"
        "[[faults]]\nat_s = 10\nprovider = 'openai'\nkind = 'flapping'\nfault = 'stream_error'\n"
        "duration_s = 5\n"
    )
    steady, flapping = load_scenario(_write(tmp_path, _with(faults))).faults
    assert steady.to_fault() == Fault(FaultKind.STREAM_ERROR, after_chunks=2)
    assert flapping.to_fault().kind is FaultKind.STREAM_ERROR


def test_new_fault_shapes_parse(tmp_path: Path) -> None:
    faults = (
        "[[faults]]\nat_s = 1\nprovider = 'openai'\nkind = 'errors'\nrate = 0.6\nramp_s = 30\n"
        "[[faults]]\nat_s = 2\nprovider = 'openai'\nkind = 'rate_cap'\nrps = 4\n"
        "[[faults]]\nat_s = 3\nprovider = 'openai'\nkind = 'price'\ninput_usd_per_mtok = 9\n"
    )
    ramp, cap, price = load_scenario(_write(tmp_path, _with(faults))).faults
    assert (ramp.ramp_interval_s, ramp.fault_at(0).rate, ramp.fault_at(15).rate) == (10, 0, 0.3)
    assert ramp.title == "errors 0->0.6 over 30s on openai"
    assert cap.to_fault() == Fault(FaultKind.RATE_CAP, rps=4)
    # A price step names the provider's first model unless it gives one.
    assert (price.model, price.input_usd_per_mtok, price.output_usd_per_mtok) == ("gpt-4o", 9, None)
    assert price.instant and price.end_s == 3


def test_malformed_scenario_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _with("[load]\nrps = 'fast'\nduration_s = 60\n"), "bad.toml")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "table [load]" in err and "key rps" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[load\nrps = 1", "not valid TOML"),
        ("[weather]\nsunny = true\n", "unknown table(s) weather"),
        ("[scenario]\nname = 'x'\n[load]\nrps = 1\nduration_s = 1\n", "[[providers]] is required"),
        ("[scenario]\nbase = 'demo'\n", "table [load] is required"),
    ],
)
def test_whole_file_problems_are_named(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text, "bad.toml")
    with pytest.raises(ScenarioError, match=r"bad\.toml: ") as caught:
        load_scenario(path)
    assert expected in str(caught.value)


def test_unreadable_file_is_a_scenario_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read scenario" in capsys.readouterr().err


def test_bad_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert main(["run", "x.toml", "--mode", "warp"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_check_command_parses_the_library(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in Path("scenarios").glob("*.toml"))
    assert main(["check", *files]) == 0
    assert capsys.readouterr().out.count(": ok (") == len(files)


def test_parse_scenario_accepts_a_mapping() -> None:
    data = tomllib.loads(BASE)
    scenario = parse_scenario(data, source="inline")
    assert scenario.path == "inline"
    assert scenario.name == "inline"
    assert scenario.faults == ()
