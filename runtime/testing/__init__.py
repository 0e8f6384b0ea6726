"""A fake LLM provider server for testing fallback paths: real HTTP on loopback, the providers'
real wire protocols, and faults you switch on and off while it runs.

    from runtime.testing import open_fake_provider_server
    from actors.faults import Fault, FaultKind

    async with open_fake_provider_server() as server:
        base_url = server.url_for("openai")            # .../p/openai/v1
        server.target("openai").inject(Fault(FaultKind.RATE_LIMIT, retry_after_s=2))

Pytest users get the same server as the `fake_providers` fixture (pytest-trio).
"""

from runtime.testing.protocols import KINDS, OPENAI_FORMAT_KINDS, count_tokens, reply_chunks
from runtime.testing.server import (
    DEFAULT_PROVIDERS,
    Departure,
    FakeProviderServer,
    ProviderTarget,
    RecordedRequest,
    UnknownProvider,
    main,
    open_fake_provider_server,
)

__all__ = [
    "DEFAULT_PROVIDERS",
    "KINDS",
    "OPENAI_FORMAT_KINDS",
    "Departure",
    "FakeProviderServer",
    "ProviderTarget",
    "RecordedRequest",
    "UnknownProvider",
    "count_tokens",
    "main",
    "open_fake_provider_server",
    "reply_chunks",
]
