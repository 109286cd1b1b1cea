"""A throw-away PostgreSQL cluster for tests: initdb in a temporary folder, one local port.

    with PostgresCluster.start() as pg:     # or the `postgres_url` fixture in the tests
        url = pg.url                        # postgresql://postgres:<random>@127.0.0.1:<port>/postgres

The binaries are found on PATH or in Debian's /usr/lib/postgresql/<version>/bin (the
`postgresql` package). PostgreSQL refuses to run as root, so when the tests run as root the
cluster runs as the `postgres` system user (runuser), in a folder that user owns. Password
authentication (scram-sha-256) on 127.0.0.1 only; the folder is deleted afterwards.
`PostgresUnavailable` says why a cluster cannot be started (the tests then skip, saying so).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries, or no way to run them here."""


def find_bin_dir() -> Path:
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not candidates:
        raise PostgresUnavailable(
            "no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/<ver>/bin: "
            "install PostgreSQL (Debian: apt-get install postgresql) to run these tests"
        )
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresCluster:
    bin_dir: Path
    folder: Path
    port: int
    password: str
    user: str | None  # the system user the server runs as (None: the current user)
    durable: bool = False  # fsync on (benchmarks of commits); tests run without it

    @property
    def options(self) -> str:
        durability = "" if self.durable else " -c fsync=off -c full_page_writes=off"
        return f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1{durability}"

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: int = 60) -> None:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)  # noqa: S603
        if result.returncode != 0:
            raise PostgresUnavailable(f"{args[0]} failed: {result.stderr.strip()[-800:]}")

    def stop_server(self) -> None:
        """Stop the server (fast shutdown), keeping its data: `start_server` brings it back."""
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")

    def start_server(self) -> None:
        """Start the server: after initdb, or again after `stop_server` (same port, same
        data)."""
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-o", self.options, "-w", "-t", "60",
                  "-l", str(self.folder / "server.log"), "start")  # fmt: skip

    @classmethod
    @contextlib.contextmanager
    def start(cls, durable: bool = False):
        """`durable`: fsync on, as in production (every commit waits for the disk)."""
        bin_dir = find_bin_dir()
        user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "running as root and there is no `postgres` user to run PostgreSQL as"
                ) from None
            if not shutil.which("runuser"):
                raise PostgresUnavailable("running as root and `runuser` is missing")
            user = "postgres"
        folder = Path(tempfile.mkdtemp(prefix="microapp-pg-"))
        cluster = cls(bin_dir, folder, _free_port(), secrets.token_urlsafe(18), user, durable)
        pwfile = folder / "pw"
        pwfile.write_text(cluster.password)
        if user:
            entry = pwd.getpwnam(user)
            for path in (folder, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        try:
            cluster._run(
                "initdb",
                "-D",
                str(folder / "data"),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
                "--no-instructions",
            )
            pwfile.unlink()
            cluster.start_server()
            try:
                yield cluster
            finally:
                cluster._run("pg_ctl", "-D", str(folder / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def cluster_or_skip():
    """A cluster for a pytest fixture; the test is skipped, saying why, when none can start."""
    import pytest

    try:
        with PostgresCluster.start() as cluster:
            yield cluster
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
