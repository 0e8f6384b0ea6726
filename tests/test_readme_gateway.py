"""The README's gateway quickstart runs as printed: its curl request and its SDK example, against
`uptax serve` on the demo config (here on a free port instead of 4000)."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import httpx
import trio

from actors.config import load_config, parse_config
from runtime.demo import default_config_path
from runtime.gateway import open_gateway

README = Path(__file__).resolve().parent.parent / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## The gateway: `uptax serve`")
    return text[start : text.index("\n## ", start + 10)]


async def test_the_readme_curl_and_sdk_examples_answer() -> None:
    curl = re.search(r"curl -s (\S+) (.*?) \\\n\s+-d '(.*?)'", section(), re.DOTALL)
    program = re.search(r"```python\n(.*?)```", section(), re.DOTALL)
    assert curl is not None and program is not None
    async with open_gateway(load_config(default_config_path())) as server:
        url = curl[1].replace("localhost:4000", f"127.0.0.1:{server.port}")
        async with httpx.AsyncClient(timeout=60) as http:
            answer = await http.post(
                f"http://{url}", content=curl[3], headers={"content-type": "application/json"}
            )
        assert answer.status_code == 200
        assert json.loads(answer.content)["choices"][0]["message"]["content"]
        code = program[1].replace("127.0.0.1:4000", f"127.0.0.1:{server.port}")
        with trio.fail_after(120):
            done = await trio.run_process(
                [sys.executable, "-c", code],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 2
    assert lines[0].split()[0] in {p.name for p in server.rt.config.providers}
    assert lines[1].startswith("[anthropic/claude-sonnet]")


def test_the_readme_fleet_config_loads() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Running a fleet")
    block = re.search(
        r"```toml\n(.*?)```", text[start : text.index("\n## ", start + 10)], re.DOTALL
    )
    assert block is not None
    demo = default_config_path().read_text(encoding="utf-8")
    config = parse_config(tomllib.loads(demo + "\n" + block[1]))
    assert config.state.backend == "redis" and config.state.instance == "web-1"
    assert config.gateway.ledger is not None and config.gateway.ledger.startswith("postgresql://")
    assert config.tenants[0].max_budget_usd_per_request == 0.5
