"""A throw-away Redis server for tests: Debian's `redis-server` on a free local port.

    with RedisServer.start() as redis:      # or the `redis_url` fixture in the tests
        url = redis.url                     # redis://127.0.0.1:<port>/0

No persistence, bound to 127.0.0.1, stopped (and its folder deleted) afterwards.
`RedisUnavailable` says why it cannot be started (the tests then skip, saying so).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class RedisUnavailable(RuntimeError):
    """No redis-server binary here."""


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    @contextlib.contextmanager
    def start(cls):
        binary = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
        )
        if binary is None:
            raise RedisUnavailable(
                "no redis-server on PATH: install Redis (Debian: apt-get install redis-server) "
                "to run these tests"
            )
        folder = Path(tempfile.mkdtemp(prefix="microapp-redis-"))
        from guardrails.testing import free_port

        port = free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
        process = subprocess.Popen(  # noqa: S603
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RedisUnavailable("redis-server did not start") from None
                    time.sleep(0.05)
            yield cls(port, process)
        finally:
            process.terminate()
            process.wait(10)
            shutil.rmtree(folder, ignore_errors=True)
