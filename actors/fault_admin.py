"""The fake provider server's fault admin endpoint: its wire format, and a fault target that
uses it, so `rt.inject_fault` reaches an HTTP provider whose `base_url` is a fake server mount.

The endpoint, served next to the mounts (`/p/{provider}`) on loopback only:

    PUT    /_uptax/faults/{provider}   body: a Fault's fields as JSON, e.g.
                                       {"kind": "rate_limit", "retry_after_s": 2}
    DELETE /_uptax/faults/{provider}   lift every fault
    GET    /_uptax/faults/{provider}   the faults in force

Each answers 200 with `{"provider": name, "faults": [...]}`, or an error naming the field.

`inject_fault` is synchronous, so the target makes a short blocking loopback call. A server
running in the caller's own trio run cannot answer while its thread is blocked, so such a server
registers itself here and is reached by a direct call instead (`register_in_process_server`).
"""

from __future__ import annotations

import ipaddress
import math
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import trio

from actors.faults import FAULT_FIELDS, Fault, FaultKind, FaultTarget

ADMIN_PREFIX = "/_uptax/faults/"
MOUNT_PREFIX = "/p/"
#: How long one admin call may take: the server is on loopback, so this only bounds a stuck one.
ADMIN_TIMEOUT_S = 5.0


class FaultAdminError(Exception):
    """The fake server could not be reached, or refused the fault (the message says which)."""


def fault_to_json(fault: Fault) -> dict[str, Any]:
    """A fault as the admin endpoint's JSON: its kind and every field."""
    return {"kind": fault.kind.value, **{name: getattr(fault, name) for name in FAULT_FIELDS}}


def fault_from_json(value: Any) -> Fault:
    """Read a fault from the admin endpoint's JSON; ValueError names the field that is wrong."""
    if not isinstance(value, dict):
        raise ValueError("the body must be a JSON object of a fault's fields")
    kinds = ", ".join(kind.value for kind in FaultKind)
    if value.get("kind") not in {kind.value for kind in FaultKind}:
        raise ValueError(f"kind={value.get('kind')!r} is not one of: {kinds}")
    fields: dict[str, Any] = {}
    for name, raw in value.items():
        if name == "kind":
            continue
        wanted = FAULT_FIELDS.get(name)
        if wanted is None:
            raise ValueError(
                f"{name!r} is not a fault field; fields: kind, {', '.join(FAULT_FIELDS)}"
            )
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ValueError(f"{name}={raw!r} must be a finite number")
        if wanted is int and raw != int(raw):
            raise ValueError(f"{name}={raw!r} must be a whole number")
        fields[name] = wanted(raw)
    return Fault(FaultKind(value["kind"]), **fields)


# --- servers in this process ---

_in_process: dict[str, tuple[trio.lowlevel.TrioToken, Callable[[str], FaultTarget]]] = {}


@contextmanager
def register_in_process_server(
    origin: str, targets: Callable[[str], FaultTarget]
) -> Iterator[None]:
    """While the block runs, callers in this trio run reach the server at `origin`
    (`http://127.0.0.1:PORT`) through `targets(provider)` instead of HTTP."""
    _in_process[origin] = (trio.lowlevel.current_trio_token(), targets)
    try:
        yield
    finally:
        _in_process.pop(origin, None)


def _in_process_target(origin: str, provider: str) -> FaultTarget | None:
    found = _in_process.get(origin)
    if found is None:
        return None
    token, targets = found
    try:
        same_run = trio.lowlevel.current_trio_token() is token
    except RuntimeError:  # not in a trio run at all
        same_run = False
    return targets(provider) if same_run else None


# --- the client ---


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminFaultTarget:
    """The faults of one provider mounted on a fake server, set through its admin endpoint."""

    def __init__(self, origin: str, provider: str) -> None:
        self.origin = origin
        self.provider = provider

    def __repr__(self) -> str:
        return f"<AdminFaultTarget {self.origin}{MOUNT_PREFIX}{self.provider}>"

    def inject(self, fault: Fault) -> None:
        local = _in_process_target(self.origin, self.provider)
        if local is not None:
            local.inject(fault)
        else:
            self._call("PUT", fault_to_json(fault))

    def heal(self) -> None:
        local = _in_process_target(self.origin, self.provider)
        if local is not None:
            local.heal()
        else:
            self._call("DELETE")

    def faults(self) -> tuple[Fault, ...]:
        local = _in_process_target(self.origin, self.provider)
        if local is not None:
            return local.faults()
        return tuple(fault_from_json(item) for item in self._call("GET"))

    def _call(self, method: str, body: Any = None) -> list[Any]:
        url = f"{self.origin}{ADMIN_PREFIX}{self.provider}"
        try:
            with httpx.Client(timeout=ADMIN_TIMEOUT_S, trust_env=False) as client:
                response = client.request(method, url, json=body)
        except httpx.HTTPError as exc:
            raise FaultAdminError(
                f"fake server at {self.origin} did not answer {method} {ADMIN_PREFIX}"
                f"{self.provider}: {type(exc).__name__}"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, dict):
            message = answer.get("error", {}).get("message") if isinstance(answer, dict) else None
            raise FaultAdminError(
                f"fake server at {self.origin} refused {method} {ADMIN_PREFIX}{self.provider}: "
                f"{message or f'HTTP {response.status_code}'}"
            )
        faults = answer.get("faults")
        return faults if isinstance(faults, list) else []


def fake_server_target(base_url: str | None) -> AdminFaultTarget | None:
    """The fault target of a provider whose `base_url` is a fake server mount on loopback
    (`http://127.0.0.1:PORT/p/{name}...`), or None for any other URL."""
    if not base_url:
        return None
    url = urllib.parse.urlsplit(base_url)
    if url.scheme != "http" or url.hostname is None or not is_loopback(url.hostname):
        return None
    if not url.path.startswith(MOUNT_PREFIX):
        return None
    name = url.path[len(MOUNT_PREFIX) :].partition("/")[0]
    if not name:
        return None
    # The fake server binds 127.0.0.1 when asked for localhost, and names itself so.
    host = "127.0.0.1" if url.hostname == "localhost" else url.hostname
    host = f"[{host}]" if ":" in host else host
    return AdminFaultTarget(f"http://{host}:{url.port or 80}", name)
