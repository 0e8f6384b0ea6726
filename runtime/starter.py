"""`uptax init [PATH]`: write a commented starter `uptax.toml` that loads and runs as written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_PATH = "uptax.toml"


def starter_config_path() -> Path:
    """Where the starter config lives inside the installed package."""
    return Path(__file__).parent / "data" / "starter.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uptax init", description="Write a commented starter config."
    )
    parser.add_argument(
        "path", nargs="?", default=DEFAULT_PATH, help=f"where to write it (default: {DEFAULT_PATH})"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


def main(argv: list[str]) -> int:
    """0 when written; 1 when the file exists (without --force) or cannot be written."""
    args = _parser().parse_args(argv)
    path = Path(args.path)
    text = starter_config_path().read_text(encoding="utf-8")
    try:
        with path.open("w" if args.force else "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        sys.stderr.write(f"uptax init: {path} exists; pass --force to overwrite it\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"uptax init: cannot write {path}: {exc.strerror or exc}\n")
        return 1
    sys.stdout.write(
        f"wrote {path}: set OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or MISTRAL_API_KEY "
        "(any of them), then open_runtime(\"" + str(path) + "\")\n"
    )
    return 0
