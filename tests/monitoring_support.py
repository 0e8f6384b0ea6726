"""What the monitoring files are checked against: the metrics a real gateway exposes after a few
requests, and the metric names and label matchers a PromQL expression uses."""

from __future__ import annotations

import functools
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from support import quick_demo_config

from actors.faults import Fault, FaultKind
from runtime.gateway import open_gateway

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

ASK = [{"role": "user", "content": "What is the VAT rate on books?"}]


async def _serve_and_scrape() -> str:
    """A demo gateway answers a request, a fallback (openai down) and a stream, then is scraped:
    every series the gateway can expose has appeared."""
    async with (
        open_gateway(quick_demo_config()) as gateway,
        httpx.AsyncClient(base_url=gateway.base_url, timeout=60) as http,
    ):
        chat = {"model": "uptax/auto", "messages": ASK}
        assert (await http.post("/v1/chat/completions", json=chat)).status_code == 200
        gateway.rt.inject_fault("openai", Fault(FaultKind.OUTAGE))
        fallback = await http.post("/v1/chat/completions", json=chat)
        assert fallback.headers["x-uptax-fallback"] == "true"
        async with http.stream(
            "POST", "/v1/chat/completions", json={**chat, "stream": True}
        ) as streamed:
            assert streamed.status_code == 200
            await streamed.aread()
        response = await http.get("/metrics")
        assert response.status_code == 200
        return response.text


@functools.cache
def gateway_exposition() -> str:
    """The exposition text of a real gateway that has served a few requests (made once per
    test process; call it from synchronous tests, outside a trio run)."""
    return trio.run(_serve_and_scrape)


@functools.cache
def exposed_labels() -> dict[str, frozenset[str]]:
    """Every sample name in the exposition (`_total`, `_bucket`, ... included), with the label
    names its samples carry."""
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(gateway_exposition()):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(names) for name, names in labels.items()}


#: Words of PromQL that are not metric names.
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan", "atan2"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"')


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions (followed by
    `(`), keywords, label names (in `{...}` or a `by (...)`-like list), durations or numbers."""
    text = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables: $job, ${DS}, $__rate_interval
    text = _STRING.sub('""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        following = text[match.end() :].lstrip()
        before = text[: match.start()]
        if following.startswith("(") or word.lower() in _KEYWORDS:
            continue
        if before and (before[-1].isdigit() or before[-1] == "."):
            continue  # the exponent or unit of a number (1e3, 5m)
        names.add(word)
    return names


def matched_labels(expr: str) -> Iterator[tuple[str, str]]:
    """(metric, label) for each label matcher in each `metric{...}` selector."""
    for selector in _SELECTOR.finditer(expr):
        for matcher in _MATCHER.finditer(selector.group(2)):
            yield selector.group(1), matcher.group(1)


#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})


def unknown_metrics(expr: str) -> list[str]:
    """What in `expr` the gateway does not expose: metric names, or labels (`metric{label}`)
    that its samples do not carry. Empty when every name is exposed."""
    exposed = exposed_labels()
    problems = [name for name in sorted(metric_names(expr)) if name not in exposed]
    for metric, label in matched_labels(expr):
        if metric in exposed and label not in exposed[metric] | TARGET_LABELS:
            problems.append(f"{metric}{{{label}}}")
    return problems


def promtool() -> str:
    """The promtool command; the test is skipped without it, unless it runs in CI (`CI` set)."""
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (Debian's prometheus package; make test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found
