"""A `redis-server` of the test's own on a free port, which a test can stop, pause and restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from typing import Any

import pytest

from actors.config import StateConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One `redis-server --save '' --appendonly no` on `port`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)  # setup only: waiting for the server process to listen
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def command(self, *words: str) -> bytes:
        """One command over a raw socket (CLIENT PAUSE, FLUSHALL): not through the client
        under test."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as sock:
            parts = [f"*{len(words)}\r\n".encode()]
            for word in words:
                parts.append(f"${len(word.encode())}\r\n{word}\r\n".encode())
            sock.sendall(b"".join(parts))
            return sock.recv(256)

    def config(self, instance: str, prefix: str | None = None, **changes: Any) -> StateConfig:
        """A `[state]` on this server under a key prefix no other test uses."""
        return StateConfig(
            backend="redis",
            url=self.url,
            key_prefix=prefix or f"test:{uuid.uuid4().hex[:8]}:",
            instance=instance,
            **changes,
        )
