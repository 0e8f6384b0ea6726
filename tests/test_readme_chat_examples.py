"""The README's chat examples run as printed against the fake providers.

Each ```python block of the section "Conversations, tools and structured output" runs in its own
Python process, in a directory holding the section's `chat.toml`, with the keys the section
exports, and must print exactly the ```text block that follows it. The one change: `chat.toml`
names port 8900, and here the fake server listens on a free port, so the test writes that port
instead.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import trio

from runtime.testing import FakeProviderServer

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Conversations, tools and structured output"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def examples() -> list[tuple[str, str]]:
    """(program, what it prints) for each example of the section."""
    pairs = re.findall(r"```python\n(.*?)```\s*prints\s*```text\n(.*?)```", section(), re.DOTALL)
    assert len(pairs) == 4
    return pairs


def keys() -> dict[str, str]:
    exports = re.search(r"^export (.*)$", section(), re.MULTILINE)
    assert exports is not None
    return dict(item.split("=", 1) for item in exports[1].split())


@pytest.mark.parametrize(
    ("program", "printed"), examples(), ids=["tools", "json", "image", "fallback"]
)
async def test_the_readme_example_prints_what_the_readme_says(
    program: str, printed: str, fake_providers: FakeProviderServer, tmp_path: Path
) -> None:
    config = re.search(r"```toml\n(# chat\.toml.*?)```", section(), re.DOTALL)
    assert config is not None
    port = fake_providers.base_url.rsplit(":", 1)[1]
    (tmp_path / "chat.toml").write_text(config[1].replace(":8900/", f":{port}/"))
    env = {**os.environ, **keys()}
    with trio.fail_after(120):  # a few seconds of work, on a slow, busy machine
        done = await trio.run_process(
            [sys.executable, "-c", program],
            cwd=tmp_path,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == printed
