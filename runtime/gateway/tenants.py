"""Who is calling: a presented API key becomes a tenant, or a 401.

Keys come as ``Authorization: Bearer KEY`` (OpenAI's SDK) or ``x-api-key: KEY`` (Anthropic's).
The config keeps only SHA-256 digests (`api_key_sha256`) or names an environment variable
holding a key (`api_key_env`); a presented key is hashed and compared with every digest with
`hmac.compare_digest`, so neither the keys nor the timing of a comparison give anything away.

With no `[[tenants]]` the gateway has one caller: it takes the master key from
`UPTAX_MASTER_KEY` when that is set, or, bound to loopback only, no key at all. Anything else
(no tenants, no master key, a public address) refuses to start rather than serve everyone.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping, Sequence
from typing import Literal

import attrs

from actors.config import Config, TenantConfig
from actors.errors import ConfigError
from runtime.gateway.errors import GatewayError

__all__ = [
    "MASTER_KEY_ENV",
    "Authenticator",
    "Tenant",
    "new_key",
    "presented_key",
    "sha256_hex",
]

#: The environment variable holding the master key when no tenants are configured.
MASTER_KEY_ENV = "UPTAX_MASTER_KEY"

Mode = Literal["tenants", "master_key", "open"]


@attrs.frozen
class Tenant:
    """The caller of one request; `config` is None for the master key or an open gateway."""

    name: str
    config: TenantConfig | None = None


#: The caller when there are no tenants (master key or loopback without a key).
DEFAULT_TENANT = Tenant("default")


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random API key and its SHA-256 hex digest (the digest goes in the config)."""
    key = "sk-uptax-" + secrets.token_urlsafe(32)
    return key, sha256_hex(key)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: `Authorization: Bearer` first, then `x-api-key`."""
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    if key is None:
        return None
    return key.strip() or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Maps presented keys to tenants; `mode` says which of the three ways it works."""

    def __init__(self, mode: Mode, digests: Sequence[tuple[bytes, Tenant]]) -> None:
        self.mode: Mode = mode
        self._digests = tuple(digests)

    @classmethod
    def from_config(cls, config: Config, host: str, env: Mapping[str, str]) -> Authenticator:
        """The keys of `config`'s tenants (environment keys read now), or the no-tenant mode
        for a gateway bound to `host`; a `ConfigError` when it would be open to the network."""
        if config.tenants:
            digests: list[tuple[bytes, Tenant]] = []
            for index, tenant_config in enumerate(config.tenants):
                tenant = Tenant(tenant_config.name, tenant_config)
                digests.extend((bytes.fromhex(d), tenant) for d in tenant_config.api_key_sha256)
                name = tenant_config.api_key_env
                if name is not None:
                    key = env.get(name, "")
                    if not key:
                        raise ConfigError(
                            f"tenants[{index}].api_key_env: the environment variable {name} "
                            "is not set"
                        )
                    digests.append((hashlib.sha256(key.encode()).digest(), tenant))
            return cls("tenants", digests)
        master = env.get(MASTER_KEY_ENV, "")
        if master:
            return cls("master_key", [(hashlib.sha256(master.encode()).digest(), DEFAULT_TENANT)])
        if not is_loopback(host):
            raise ConfigError(
                f"tenants: none configured and {MASTER_KEY_ENV} is not set; a gateway on "
                f"{host} would answer anyone (configure [[tenants]] or set {MASTER_KEY_ENV})"
            )
        return cls("open", [])

    def describe(self) -> str:
        """What the start-up log says about who may call."""
        if self.mode == "tenants":
            names = sorted({tenant.name for _, tenant in self._digests})
            return f"API keys of {len(names)} tenant(s): {', '.join(names)}"
        if self.mode == "master_key":
            return f"the master key from {MASTER_KEY_ENV} (no tenants configured)"
        return f"no key: loopback only, no tenants configured and {MASTER_KEY_ENV} not set"

    def authenticate(self, headers: Mapping[str, str]) -> Tenant:
        """The tenant whose key `headers` present; a 401 for a missing or unknown key."""
        if self.mode == "open":
            return DEFAULT_TENANT
        key = presented_key(headers)
        if key is None:
            raise GatewayError(
                401,
                "no API key: send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'",
                code="missing_api_key",
            )
        digest = hashlib.sha256(key.encode()).digest()
        found: Tenant | None = None
        for known, tenant in self._digests:  # every digest compared: no early exit to time
            if hmac.compare_digest(digest, known) and found is None:
                found = tenant
        if found is None:
            raise GatewayError(401, "the API key is not valid", code="invalid_api_key")
        return found

