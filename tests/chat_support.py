"""What the chat tests of every wire format share: a runtime config with one provider, served
by the fake provider server."""

from __future__ import annotations

import runtime
from runtime.testing import FakeProviderServer


def one_provider_config(
    server: FakeProviderServer, kind: str, model: str, price: tuple[float, float] = (0.0, 0.0)
) -> runtime.Config:
    """One provider named `kind`, of that kind, offering `model` at `price` (USD per million
    input and output tokens), on the fake server; wide timeouts for a slow, busy machine."""
    return runtime.parse_config(
        {
            "runtime": {"deadline_s": 40},
            "providers": [
                {
                    "name": kind,
                    "kind": kind,
                    "models": [model],
                    "base_url": server.url_for(kind),
                    "read_timeout_s": 10.0,
                }
            ],
            "levels": [{"name": "primary", "providers": [kind], "timeout_s": 20}],
            "models": {model: {"input_usd_per_mtok": price[0], "output_usd_per_mtok": price[1]}},
        }
    )
