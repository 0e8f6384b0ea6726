"""The shipped demo config: simulated providers modelled on the seed's, so the runtime, the
console and the scenarios run on a fresh machine with no keys."""

from pathlib import Path


def default_config_path() -> Path:
    """Where the demo config lives inside the installed package."""
    return Path(__file__).parent / "data" / "demo.toml"
