"""`uptax scenario compare` and `[[variants]]`: parsing and validation, the numbers (those of each
variant's own run), seeds, determinism, the renderings and the exit codes."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

from actors.config import ModelInfo
from runtime.scenario.cli import main
from runtime.scenario.compare import (
    METRICS,
    best_of,
    compare,
    run_numbers,
    summarize,
    variants_to_compare,
)
from runtime.scenario.compare_terminal import WIDTH, render_comparison, seed_list
from runtime.scenario.format import ScenarioError, load_scenario, load_variant
from runtime.scenario.measure import wasted_calls
from runtime.scenario.recorder import AppliedFault, Recorder
from runtime.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("own_logging")

# Seconds of virtual time at a few requests a second: each run takes a fraction of a second.
SMALL = """
[scenario]
name = "small-compare"
base = "demo"
seed = 3

[[providers]]
name = "openai"
breaker = { open_max_s = 10 }

[load]
rps = 5
duration_s = 40

[[faults]]
at_s = 10
provider = "openai"
kind = "outage"
duration_s = 15

[expect]
availability_min = 0.99

[[variants]]
name = "fast-trip"
description = "trips on the second failure"

[[variants.providers]]
name = "openai"
breaker = { consecutive_failures = 2 }
{extra}
"""


def _file(tmp_path: Path, extra: str = "", name: str = "small.toml") -> Path:
    path = tmp_path / name
    path.write_text(SMALL.replace("{extra}", extra), encoding="utf-8")
    return path


# --- the format ------------------------------------------------------------------------------


def test_variants_change_only_what_they_name(tmp_path: Path) -> None:
    extra = """
[variants.routing]
latency_stale_s = 5

[variants.routing.weights]
latency = 0.6

[[variants.levels]]
name = "primary"
strategy = "hedge"

[[variants.providers]]
name = "spare"
kind = "simulated"
models = ["gpt-4o"]
"""
    scenario = load_scenario(_file(tmp_path, extra))
    (variant,) = scenario.variants
    assert variant.name == "fast-trip" and variant.description == "trips on the second failure"
    openai = variant.config.provider("openai")
    # The breaker merges key by key: the scenario's open_max_s stays, the variant's key is added.
    assert openai.breaker.consecutive_failures == 2 and openai.breaker.open_max_s == 10
    assert openai.models == scenario.config.provider("openai").models
    routing = variant.config.routing
    assert routing.latency_stale_s == 5
    assert routing.latency_zero_ms == scenario.config.routing.latency_zero_ms  # the demo's 10000
    assert routing.weights.latency == 0.6 and routing.weights.reliability == 0.5
    primary = variant.config.levels[0]
    assert primary.strategy == "hedge" and primary.providers == ("openai", "anthropic")
    assert [p.name for p in variant.config.providers][-1] == "spare"
    assert variant.http_kinds["spare"] == "openai"
    # The scenario's own config, which `run` uses, is untouched.
    assert scenario.config.provider("openai").breaker.consecutive_failures == 5
    assert scenario.config.levels[0].strategy == "sequential"
    under = scenario.under(variant)
    assert under.config is variant.config and under.faults == scenario.faults
    assert under.load == scenario.load and under.expect == scenario.expect


# (extra TOML, what the error must say)
BAD_VARIANTS = [
    ("[[variants]]\nname = 'x'\n[variants.load]\nrps = 2\n", ["(entry 2, name 'x')", "key load", "config tables only"]),
    ("[[variants]]\ndescription = 'no name'\n", ["table [[variants]] (entry 2)", "key name", "required"]),
    ("[[variants]]\nname = 'a b'\n", ["(entry 2)", "key name", "'a b' is not a variant name"]),
    ("[[variants]]\nname = 'fast-trip'\n", ["(entry 2, name 'fast-trip')", "key name", "defined twice"]),
    ("[[variants]]\nname = 'x'\ndescription = 3\n", ["(entry 2, name 'x')", "key description"]),
    (
        "[[variants]]\nname = 'x'\n[[variants.providers]]\nname = 'openai'\nbreaker = { window_s = -1 }\n",
        ["(entry 2, name 'x')", "table [[variants.providers]] (name 'openai')", "key breaker"],
    ),
    (
        "[[variants]]\nname = 'x'\n[[variants.providers]]\nname = 'openai'\nlatency_ms = 'slow'\n",
        ["(entry 2, name 'x')", "table [[variants.providers]] (name 'openai')", "key latency_ms"],
    ),
    (
        "[[variants]]\nname = 'x'\n[variants.routing]\nlatency_zero = 5\n",
        ["(entry 2, name 'x')", "table [variants.routing]", "latency_zero"],
    ),
    (
        "[[variants]]\nname = 'x'\n[[variants.levels]]\nname = 'primary'\nproviders = ['nobody']\n",
        ["(entry 2, name 'x')", "table [[variants.levels]] (name 'primary')", "key providers", "'nobody'"],
    ),
    (
        "[[variants]]\nname = 'x'\n[[variants.providers]]\nlatency_ms = 5\n",
        ["(entry 2, name 'x')", "table [[variants.providers]] (entry 1)", "key name"],
    ),
    ("[[variants]]\nname = 'x'\nproviders = 3\n", ["(entry 2, name 'x')", "[[variants.providers]] must be an array"]),
    (
        "[[variants]]\nname = 'x'\n[[variants.providers]]\nname = 'openai'\nkind = 'cache'\nmodels = []\n",
        ["(entry 2, name 'x')", "table [[faults]] (entry 1)", "key provider", "simulated providers only"],
    ),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_VARIANTS)
def test_bad_variants_name_file_table_and_key(tmp_path: Path, extra: str, expected: list[str]) -> None:
    path = _file(tmp_path, extra, "bad.toml")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for text in expected:
        assert text in message, message


def test_check_validates_variants_and_counts_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(_file(tmp_path))]) == 0
    assert "1 fault step(s), 1 variant(s))" in capsys.readouterr().out
    bad = _file(tmp_path, "[[variants]]\nname = 'x'\n[variants.faults]\nat_s = 1\n", "bad.toml")
    assert main(["check", str(bad)]) == 2
    assert "key faults" in capsys.readouterr().err
    assert main(["run", str(bad)]) == 2


def test_a_config_file_variant_is_checked_against_the_scenario(tmp_path: Path) -> None:
    scenario = load_scenario(_file(tmp_path))
    whole = tmp_path / "whole.toml"
    whole.write_text((ROOT / "runtime" / "data" / "demo.toml").read_text(), encoding="utf-8")
    variant = load_variant(scenario, "demo", whole)
    assert variant.source == str(whole) and variant.config.provider("openai").breaker.open_max_s == 300
    lacking = tmp_path / "lacking.toml"
    lacking.write_text(
        "[[providers]]\nname = 'gemini'\nkind = 'simulated'\nmodels = ['gemini-pro']\n"
        "[[levels]]\nname = 'only'\nproviders = ['gemini']\n",
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError, match=r"--variant lean=.*lacking\.toml.*\[\[faults\]\] \(entry 1\), key provider"):
        load_variant(scenario, "lean", lacking)
    broken = tmp_path / "broken.toml"
    broken.write_text("[[providers]]\nname = 'x'\nkind = 'warp'\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"--variant b=.*broken\.toml.*kind"):
        load_variant(scenario, "b", broken)


def test_the_baseline_is_implicit_unless_a_variant_takes_its_name(tmp_path: Path) -> None:
    scenario = load_scenario(_file(tmp_path))
    names = [v.name for v in variants_to_compare(scenario)]
    assert names == ["baseline", "fast-trip"]
    assert variants_to_compare(scenario)[0].config is scenario.config
    named = load_scenario(
        _file(tmp_path, "[[variants]]\nname = 'baseline'\ndescription = 'as shipped'\n", "b.toml")
    )
    assert [v.name for v in variants_to_compare(named)] == ["fast-trip", "baseline"]
    config = tmp_path / "demo.toml"
    config.write_text((ROOT / "runtime" / "data" / "demo.toml").read_text(), encoding="utf-8")
    twin = load_variant(scenario, "fast-trip", config)
    with pytest.raises(ScenarioError, match="already has a variant"):
        variants_to_compare(scenario, [twin])


def test_nothing_to_compare_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plain.toml"
    path.write_text(SMALL.split("[[variants]]")[0], encoding="utf-8")
    assert main(["compare", str(path)]) == 2
    assert "nothing to compare" in capsys.readouterr().err


# --- the numbers -----------------------------------------------------------------------------


def test_the_table_holds_each_variants_own_run_report_numbers(tmp_path: Path) -> None:
    scenario = load_scenario(_file(tmp_path))
    variants = variants_to_compare(scenario)
    comparison = compare(scenario, variants, [3])
    data = comparison.data
    for variant, column in zip(variants, data["variants"], strict=True):
        recorders: list[Recorder] = []
        report = run_scenario(scenario.under(variant), seed=3, on_recorder=recorders.append)
        (run,) = column["runs"]
        assert run == {
            "seed": 3,
            **run_numbers(report.data, recorders[0]),
            "passed": report.passed,
            "failed": [c.name for c in report.checks if not c.passed],
        }
        # Spelled out, against the report `run` prints.
        assert run["availability"] == report.data["availability"]
        assert run["p95_ms"] == report.data["latency_ms"]["p95"]
        assert run["cost_usd"] == report.data["cost"]["total_usd"]
        assert run["paid_requests"] == sum(f["paid_requests"] for f in report.data["faults"])
        assert run["mttr_s"] == report.data["faults"][0]["mttr_s"]
        assert column["summary"]["p95_ms"] == {"median": run["p95_ms"], "min": run["p95_ms"], "max": run["p95_ms"]}
    baseline, fast = data["variants"]
    # The outage costs the fast-tripping breaker fewer failed calls to the down provider.
    assert fast["runs"][0]["wasted_calls"] < baseline["runs"][0]["wasted_calls"]
    assert "fast-trip" in data["best"]["wasted_calls"]


def test_run_variant_prints_the_report_a_column_comes_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path)
    scenario = load_scenario(path)
    out = tmp_path / "fast.json"
    assert main(["run", str(path), "--variant", "fast-trip", "--json", str(out)]) == 0
    expected = run_scenario(scenario.under(scenario.variants[0]), seed=3).to_json()
    assert out.read_text() == expected
    assert main(["run", str(path), "--variant", "nope"]) == 2
    assert "no such [[variants]] (known: fast-trip)" in capsys.readouterr().err


def test_wasted_calls_are_failed_calls_to_a_provider_inside_its_fault_windows() -> None:
    recorder = Recorder(
        providers=["a", "b"], levels=["primary"], baseline_price=ModelInfo(), clock=lambda: 0.0
    )
    recorder.record_fault(AppliedFault(0, "a", "outage", 10.0, 20.0, "outage on a"))
    recorder.record_fault(AppliedFault(1, "b", "errors", 30.0, None, "errors on b"))
    for provider, start, outcome in [
        ("a", 5.0, "server_error"),  # before a's window
        ("a", 12.0, "server_error"),  # wasted
        ("a", 13.0, "ok"),  # answered: not wasted
        ("a", 14.0, "unavailable"),  # never sent
        ("b", 15.0, "server_error"),  # b has no fault then
        ("a", 20.0, "server_error"),  # the window is over
        ("b", 31.0, "rate_limited"),  # wasted: b's window never ends
    ]:
        recorder.att_request.append(0)
        recorder.att_provider.append(recorder.providers.code(provider))
        recorder.att_level.append(0)
        recorder.att_outcome.append(recorder.outcomes.code(outcome))
        recorder.att_start.append(start)
        recorder.att_latency_ms.append(100.0)
    assert wasted_calls(recorder) == 2


def test_seeds_give_the_median_min_and_max_and_every_seed_in_the_json(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    assert main(["compare", str(_file(tmp_path)), "--seeds", "1-3", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["seeds"] == [1, 2, 3]
    for column in data["variants"]:
        assert [run["seed"] for run in column["runs"]] == [1, 2, 3]
        for key in ("p50_ms", "p95_ms", "cost_usd", "paid_requests"):
            values = [run[key] for run in column["runs"]]
            assert column["summary"][key] == {
                "median": pytest.approx(statistics.median(values)),
                "min": min(values),
                "max": max(values),
            }
    # Another seed is another schedule: the seeds do differ.
    baseline = data["variants"][0]
    assert len({run["p50_ms"] for run in baseline["runs"]}) > 1


def test_summaries_rank_a_time_that_never_came_last() -> None:
    mttr = next(m for m in METRICS if m.key == "mttr_s")
    assert summarize(mttr, [2.0, None, 1.0]) == {"median": 2.0, "min": 1.0, "max": None}
    assert summarize(mttr, [None, None, 1.0])["median"] is None
    assert best_of(mttr, {"a": None, "b": 3.0}) == ["b"]
    savings = next(m for m in METRICS if m.key == "savings")
    assert summarize(savings, [None, 0.1])["median"] == 0.1
    assert best_of(savings, {"a": 0.1, "b": 0.2, "c": 0.2}) == ["b", "c"]
    # Equal at the digits shown: no better one; and none where better depends.
    p95 = next(m for m in METRICS if m.key == "p95_ms")
    assert best_of(p95, {"a": 100.01, "b": 100.04}) == []
    fallback = next(m for m in METRICS if m.key == "fallback_rate")
    assert best_of(fallback, {"a": 0.1, "b": 0.5}) == []


def test_seed_lists_read_as_ranges() -> None:
    assert seed_list([7]) == "7"
    assert seed_list([1, 2, 3, 4, 7, 9, 10]) == "1-4,7,9-10"


# --- the command -----------------------------------------------------------------------------


def test_same_command_same_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path)
    outputs = []
    for attempt in ("a", "b"):
        json_path, html_path = tmp_path / f"{attempt}.json", tmp_path / f"{attempt}.html"
        command = ["compare", str(path), "--json", str(json_path), "--html", str(html_path)]
        assert main(command) == 0
        outputs.append((capsys.readouterr().out, json_path.read_bytes(), html_path.read_bytes()))
    assert outputs[0] == outputs[1]
    out, json_bytes, html = outputs[0]
    # The table is a function of the JSON alone.
    assert render_comparison(json.loads(json_bytes)) == out
    assert "baseline" in out and "fast-trip" in out
    assert max(len(line) for line in out.splitlines()) <= WIDTH
    page = html.decode()
    assert page.count("<svg") == 2 and 'id="comparison"' in page
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_config_file_variants_join_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "demo.toml"
    config.write_text((ROOT / "runtime" / "data" / "demo.toml").read_text(), encoding="utf-8")
    command = ["compare", str(_file(tmp_path)), "--variant", f"shipped={config}"]
    assert main([*command, "--variant", "more=" + str(config)]) == 0
    out = capsys.readouterr().out
    head = out.split("\n\n")[0]
    assert f"\n  shipped    {config}\n" in head and f"\n  more       {config}" in head
    assert max(len(line) for line in out.splitlines()) <= WIDTH


def test_the_table_fits_100_columns_and_marks_the_better_value() -> None:
    summary = {"median": 1234.5, "min": 1000.25, "max": 1500.75}
    column = {
        "description": "",
        "source": "s.toml",
        "summary": {m.key: summary for m in METRICS},
        "passed_seeds": 3,
        "runs": [],
    }
    data = {
        "scenario": {"name": "s", "file": "s.toml", "description": "", "mode": "virtual", "duration_s": 60, "rps": 5},
        "seeds": [1, 2, 3],
        "metrics": [{"key": m.key, "label": m.label, "better": m.better, "unit": m.unit} for m in METRICS],
        "definitions": {},
        "best": {m.key: ["variant-2"] if m.key == "p95_ms" else [] for m in METRICS},
        "variants": [{**column, "name": f"variant-{i}"} for i in range(5)],
    }
    text = render_comparison(data)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    # More variants than fit: a further table, with the row labels again.
    assert sum(1 for line in lines if line.strip().startswith("p95 ms")) >= 2
    (p95,) = [line for line in lines if line.strip().startswith("p95 ms") and "*" in line]
    assert p95.count("*") == 1
    assert "1,234.5 (1,000..1,501)" in text
    colored = render_comparison(data, color=True)
    assert "\x1b[1;32m" in colored


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--variant", "noequals"], "is not NAME=CONFIG.toml"),
        (["--variant", "x=missing.toml"], "cannot read config"),
        (["--seeds", "a-b"], "is not seeds"),
        (["--seeds", "3-1"], "gives no seed"),
        (["--seed", "1", "--seeds", "1-2"], "not allowed with"),
        (["--mode", "http"], "invalid choice"),
        (["--json", "/nonexistent-dir/x.json"], "cannot write"),
    ],
)
def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["compare", str(_file(tmp_path)), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_library_example_shows_the_fast_breaker_paying_less() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "compare-breaker.toml")
    assert [v.name for v in variants_to_compare(scenario)] == ["baseline", "slow-trip", "fast-trip"]
    data = compare(scenario, variants_to_compare(scenario), [scenario.info.seed]).data
    paid = {v["name"]: v["runs"][0]["paid_requests"] for v in data["variants"]}
    wasted = {v["name"]: v["runs"][0]["wasted_calls"] for v in data["variants"]}
    assert paid["fast-trip"] < paid["baseline"] < paid["slow-trip"]
    assert wasted["fast-trip"] < wasted["baseline"] < wasted["slow-trip"]
    assert data["best"]["paid_requests"] == ["fast-trip"]
