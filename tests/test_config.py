"""Config loading: the shipped demo config loads, and every bad value names its field."""

from __future__ import annotations

import copy
import io
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import structlog
from support import BASE, make_config

import runtime
from actors.prices import PRICES, PRICES_AS_OF
from runtime.demo import default_config_path
from runtime.logs import configure_logging


def test_demo_config_loads_with_the_seed_levels() -> None:
    config = runtime.load_config(default_config_path())
    assert [level.name for level in config.levels] == [
        "primary",
        "secondary",
        "emergency",
        "last_resort",
    ]
    assert [level.timeout_s for level in config.levels] == [30, 45, 60, 5]
    assert {p.name for p in config.providers} >= {
        "openai",
        "anthropic",
        "gemini",
        "mistral",
        "huggingface",
        "local",
    }
    assert config.routing.weights.reliability == 0.5


def _bad(**changes: Any) -> str:
    with pytest.raises(runtime.ConfigError) as error:
        make_config(**changes)
    return str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"providers": {"openai": {"latency_ms": "fast"}}},
            "providers[0].latency_ms: 'fast' is not a number",
        ),
        ({"providers": {"openai": {"latncy_ms": 5}}}, "providers[0]: unknown key(s) latncy_ms"),
        ({"providers": {"openai": {"kind": "bogus"}}}, "kind='bogus' is not one of"),
        ({"providers": {"openai": {"error_rate": 1.5}}}, "error_rate=1.5 must be between 0 and 1"),
        (
            {"providers": {"openai": {"breaker": {"open_s": -1}}}},
            "providers[0].breaker: open_s=-1.0 must be > 0",
        ),
        ({"runtime": {"deadline_s": 0}}, "runtime: deadline_s=0.0 must be > 0"),
        ({"supervision": {"max_restarts": "5"}}, "supervision.max_restarts: '5' is not an integer"),
    ],
)
def test_bad_values_name_the_field_and_value(changes: dict[str, Any], message: str) -> None:
    assert message in _bad(**changes)


def test_level_naming_an_unknown_provider() -> None:
    levels = [{"name": "primary", "providers": ["openia"], "timeout_s": 30}]
    assert "levels[0].providers: 'openia' is not a configured provider" in _bad(levels=levels)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(runtime.ConfigError, match="cannot read config"):
        runtime.load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[providers]\nname=")
    with pytest.raises(runtime.ConfigError, match="not valid TOML"):
        runtime.load_config(bad)


def test_duplicate_provider_names() -> None:
    data = copy.deepcopy(BASE)
    data["providers"].append({"name": "openai", "kind": "cache"})
    with pytest.raises(
        runtime.ConfigError, match=re.escape("providers[6].name: 'openai' is defined twice")
    ):
        runtime.parse_config(data)


def test_request_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="complexity='hard' is not one of: trivial"):
        runtime.Request(prompt="x", complexity="hard")
    with pytest.raises(ValueError, match="max_tokens=0 must be a positive integer"):
        runtime.Request(prompt="x", max_tokens=0)
    request = runtime.Request(prompt="x", complexity="EXPERT", quality=runtime.Quality.CRITICAL)
    assert request.complexity is runtime.Complexity.EXPERT


# --- A new user's config works the first time (issue 8 item 11) ---------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_every_config_in_the_readme_loads() -> None:
    from runtime.scenario.format import parse_scenario

    blocks = _readme_toml_blocks()
    configs = [block for block in blocks if "[[providers]]" in block and "[scenario]" not in block]
    scenarios = [block for block in blocks if "[scenario]" in block]
    assert configs and scenarios
    for block in configs:
        config = runtime.parse_config(tomllib.loads(block), source="README.md")
        assert config.levels
    for block in scenarios:
        parse_scenario(tomllib.loads(block), source="README.md")


def test_starter_config_written_by_init_loads_as_written(tmp_path: Path) -> None:
    from runtime.cli import main

    path = tmp_path / "uptax.toml"
    assert main(["init", str(path)]) == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# uptax.toml")
    config = runtime.load_config(path)
    assert [level.timeout_s for level in config.levels] == [30, 45, 5]
    assert config.warnings == []
    assert {p.kind for p in config.providers} >= {"openai", "anthropic", "gemini", "mistral"}


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime.cli import main

    path = tmp_path / "uptax.toml"
    path.write_text("# mine\n")
    assert main(["init", str(path)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert path.read_text() == "# mine\n"
    assert main(["init", str(path), "--force"]) == 0
    assert runtime.load_config(path).levels


async def test_starter_config_runs_with_no_keys_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: Any
) -> None:
    from runtime.starter import starter_config_path

    for env in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "MISTRAL_API_KEY"):
        monkeypatch.delenv(env, raising=False)
    async with runtime.open_runtime(starter_config_path()) as rt:
        reply = await rt.complete(runtime.Request(prompt="hello"))
    assert reply.provider == "templates"


@pytest.mark.parametrize(
    ("providers", "expected"),
    [
        (["openai"], [30, 45, 60, 60]),
        (["cache"], [5, 5, 5, 5]),
        (["openai", "templates"], [30, 45, 60, 60]),
    ],
)
def test_a_level_without_timeout_takes_the_documented_default(
    providers: list[str], expected: list[float]
) -> None:
    data = copy.deepcopy(BASE)
    data["levels"] = [{"name": f"l{i}", "providers": providers} for i in range(4)]
    config = runtime.parse_config(data)
    assert [level.timeout_s for level in config.levels] == expected


def test_the_demo_levels_match_the_documented_defaults() -> None:
    config = runtime.load_config(default_config_path())
    data = tomllib.loads(default_config_path().read_text())
    for level in data["levels"]:
        del level["timeout_s"]
    assert runtime.parse_config(data).levels == config.levels


def test_a_model_without_a_price_takes_the_shipped_one() -> None:
    data = copy.deepcopy(BASE)
    data["providers"][0]["models"] = ["gpt-4o-2024-08-06", "o3-mini"]
    del data["models"]["gpt-4o"]
    config = runtime.parse_config(data)
    assert config.model_info("gpt-4o-2024-08-06").input_usd_per_mtok == PRICES["gpt-4o"][0]
    assert config.model_info("o3-mini").output_usd_per_mtok == PRICES["o3-mini"][1]
    # A price in the config wins over the shipped one.
    assert config.model_info("gpt-4o-mini").input_usd_per_mtok == 0.15
    assert PRICES_AS_OF


def test_a_model_priced_nowhere_is_warned_about() -> None:
    config = make_config()
    assert config.unpriced_models == ("llama3",)
    assert "'llama3' has no price" in config.warnings[0]
    assert "budget_usd never excludes it" in config.warnings[0]
    data = copy.deepcopy(BASE)
    data["models"]["llama3"] = {"input_usd_per_mtok": 0, "output_usd_per_mtok": 0}
    assert runtime.parse_config(data).warnings == []


def test_the_shipped_configs_have_no_unpriced_model() -> None:
    assert runtime.load_config(default_config_path()).warnings == []


async def test_an_unpriced_model_is_logged_at_start(autojump_clock: Any) -> None:
    saved = structlog.get_config()
    out = io.StringIO()
    configure_logging("warning", stream=out)
    try:
        async with runtime.open_runtime(make_config()):
            pass
    finally:
        structlog.configure(**saved)
    assert "event='config_warning'" in out.getvalue() and "llama3" in out.getvalue()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"levels": [{"name": "p", "providers": ["openai"], "strategy": "fastest"}]},
            "levels[0].strategy: 'fastest' is not one of: sequential, race, hedge",
        ),
        (
            {"runtime": {"log_level": "verbose"}},
            "runtime.log_level: 'verbose' is not one of: debug, info, warning, error, critical",
        ),
        (
            {"templates": [{"text": "x", "complexity": ["hard"]}]},
            "templates[0].complexity: 'hard' is not one of: trivial, simple",
        ),
        (
            {"templates": [{"text": "x", "quality": ["best"]}]},
            "templates[0].quality: 'best' is not one of: draft, production, critical",
        ),
        (
            {"routing": {"complexity": {"hard": ["gpt-4o"]}}},
            "routing: complexity='hard' is not one of: trivial, simple",
        ),
        ({"runtime": {"deadline_s": float("inf")}}, "runtime.deadline_s: inf is not a finite"),
        (
            {"levels": [{"name": "p", "providers": []}]},
            "levels[0].providers: must name at least one provider",
        ),
        (
            {"levels": [{"name": "p", "providers": ["openai"]}] * 2},
            "levels[1].name: 'p' is defined twice",
        ),
    ],
)
def test_every_choice_is_checked_at_load_in_plain_words(
    changes: dict[str, Any], message: str
) -> None:
    text = _bad(**changes)
    assert message in text
    assert "Literal" not in text


def test_log_level_is_taken_in_any_case() -> None:
    assert make_config(runtime={"log_level": "INFO"}).runtime.log_level == "info"


# --- Requests refuse bad values, naming the field (issue 8 items 11 and 14) -------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": ""}, "prompt='' must not be empty"),
        ({"prompt": "   "}, "prompt='   ' must not be empty"),
        ({"prompt": None}, "prompt=a request needs prompt= or messages="),
        ({"temperature": "hot"}, "temperature='hot' is not a number"),
        ({"temperature": None}, "temperature=None is not a number"),
        ({"temperature": True}, "temperature=True is not a number"),
        ({"temperature": math.nan}, "temperature=nan is not a finite number"),
        ({"temperature": 2.5}, "temperature=2.5 must be between 0 and 2"),
        ({"budget_usd": math.inf}, "budget_usd=inf is not a finite number"),
        ({"budget_usd": math.nan}, "budget_usd=nan is not a finite number"),
        ({"budget_usd": True}, "budget_usd=True is not a number"),
        ({"budget_usd": "1"}, "budget_usd='1' is not a number"),
        ({"budget_usd": -1}, "budget_usd=-1.0 must be >= 0"),
        ({"max_tokens": True}, "max_tokens=True must be a positive integer"),
        ({"max_tokens": 10.0}, "max_tokens=10.0 must be a positive integer"),
        ({"deadline_s": math.inf}, "deadline_s=inf is not a finite number"),
        ({"deadline_s": math.nan}, "deadline_s=nan is not a finite number"),
        ({"deadline_s": False}, "deadline_s=False is not a number"),
        ({"complexity": None}, "complexity=None is not one of"),
        ({"quality": 3}, "quality=3 is not one of"),
        ({"system": 3}, "system=3 is not a string"),
        ({"task_id": 7}, "task_id=7 is not a string"),
        ({"context": {"tenant": 1}}, "context=entry 'tenant': 1 is not a string"),
        ({"context": "acme"}, "context='acme' is not a mapping"),
    ],
)
def test_request_refuses_bad_values_naming_the_field(fields: dict[str, Any], message: str) -> None:
    fields = {"prompt": "x", **fields}
    with pytest.raises(ValueError) as error:
        runtime.Request(**fields)
    assert message in str(error.value)


def test_request_takes_ints_for_floats() -> None:
    request = runtime.Request(prompt="x", temperature=1, budget_usd=2, deadline_s=3)
    assert (request.temperature, request.budget_usd, request.deadline_s) == (1.0, 2.0, 3.0)
    assert isinstance(request.temperature, float)
