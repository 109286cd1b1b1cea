"""Audit append cost at 1 and 8 concurrent writers, against the database's own commit floor.

Measured on SQLite (WAL, synchronous=FULL: every commit fsynced) and on a throw-away PostgreSQL
cluster with fsync on (durable, as in production), each in the same run:

- **commit floor**: the bare driver (sqlite3 / psycopg, no SQLAlchemy, no guardrails) inserting
  one row and committing, in a loop: what one durable commit costs on this disk;
- **anchor**: through guardrails' engine, a transaction that inserts one row and commits;
- **in a transaction**: the same transaction that also records its audit event (the chain lock,
  the hash, the event row), as an app's change does. `append` is the time inside
  `audit.record` (what the event adds while the writer lock is held); `transaction` is the
  whole, waiting for the writer lock and the commit included;
- **standalone**: `audit.record(...)` outside any transaction (refusals, the benchmark's POST):
  each returns after the commit that holds its event; events that arrive together share one
  commit (group commit). `per event` is the wall time of the run divided by its events.

8 writers are 8 threads writing at once. The figures alternate: in each round the anchor and
the audited runs swap order. Used by `make bench` (bench/run.py); alone:
`python bench/audit.py [--samples N] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

import structlog
from guardrails.auditing import chain
from guardrails.auditing.log import AuditLog
from guardrails.auditing.outbox import Outbox
from guardrails.core import db
from sqlalchemy import text

APP = "bench"
COUNTER = itertools.count(1)
USERS = (1, 8)
TARGET_MS = 0.5  # audit append p50 at 8 concurrent writers (issue 17)


def _quiet() -> None:
    """The audit log's structlog line per event, dropped (not what is measured)."""
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())


def _setup(url: str) -> AuditLog:
    engine = db.make_engine(db.with_driver(url))
    db.create_all(engine)
    chain.ensure_head(engine, APP)
    with engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE IF NOT EXISTS bench_row (id INTEGER PRIMARY KEY, n INTEGER)")
        )
    sessions = db.make_sessionmaker(engine)
    return AuditLog(app_id=APP, sessions=sessions, outbox=Outbox(APP, sessions, []))


def _threads(users: int, samples: int, one) -> tuple[list[float], float]:
    """`one()` run samples // users times in each of `users` threads started together;
    returns every duration one() reported, and the wall time of the whole run."""
    times: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(users + 1)

    def user() -> None:
        start.wait()
        mine = [one() for _ in range(samples // users)]
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=user) for _ in range(users)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    return times, time.perf_counter() - began


def _transaction(log: AuditLog, audited: bool, appends: list[float]):
    def one() -> float:
        n = next(COUNTER)
        started = time.perf_counter()
        with log.sessions() as session, session.begin():
            session.execute(text("INSERT INTO bench_row (id, n) VALUES (:n, :n)"), {"n": n})
            if audited:
                before = time.perf_counter()
                log.record("bench.append", resource=("row", n), metadata={"n": n})
                appends.append(time.perf_counter() - before)
        return time.perf_counter() - started

    return one


def _standalone(log: AuditLog):
    def one() -> float:
        started = time.perf_counter()
        log.record("bench.standalone", resource=("thing", 1), metadata={"note": 5})
        return time.perf_counter() - started

    return one


def _floor_sqlite(path: Path):
    """Bare sqlite3: one connection per thread, WAL, synchronous=FULL, insert + commit."""
    local = threading.local()

    def one() -> float:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = sqlite3.connect(path, isolation_level=None, timeout=5)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE IF NOT EXISTS floor_row (id INTEGER PRIMARY KEY, n INT)")
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute("INSERT INTO floor_row (n) VALUES (?)", (1,))
        conn.execute("COMMIT")
        return time.perf_counter() - started

    return one


def _floor_postgres(url: str):
    """Bare psycopg: one connection per thread, insert + commit."""
    import psycopg

    local = threading.local()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS floor_row (id SERIAL PRIMARY KEY, n INT)")

    def one() -> float:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = psycopg.connect(url)
        started = time.perf_counter()
        conn.execute("INSERT INTO floor_row (n) VALUES (%s)", (1,))
        conn.commit()
        return time.perf_counter() - started

    return one


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _stats(values: list[float]) -> dict:
    return {"p50": _pct(values, 50), "p99": _pct(values, 99), "n": len(values)}


def measure(url: str, samples: int, rounds: int, floor) -> dict:
    log = _setup(url)
    _threads(1, 20, _transaction(log, True, []))  # warm-up
    _threads(1, 20, _standalone(log))
    out: dict = {}
    for users in USERS:
        runs: dict[str, list[float]] = {k: [] for k in ("floor", "anchor", "audited", "alone")}
        appends: list[float] = []
        walls: list[float] = []
        batches0, events0 = log.group.batches, log.group.events
        for r in range(rounds):
            order = [
                ("floor", floor),
                ("anchor", _transaction(log, False, [])),
                ("audited", _transaction(log, True, appends)),
                ("alone", _standalone(log)),
            ]
            for name, one in order if r % 2 == 0 else reversed(order):
                times, wall = _threads(users, samples, one)
                runs[name] += times
                if name == "alone":
                    walls.append(wall / len(times))
        entry = {name: _stats(times) for name, times in runs.items()}
        entry["append"] = _stats(appends)
        batches = log.group.batches - batches0
        entry["alone"]["per_event"] = statistics.median(walls)
        entry["alone"]["events_per_commit"] = (log.group.events - events0) / max(1, batches)
        out[str(users)] = entry
    log.sessions.kw["bind"].dispose()
    return out


def bench_audit(samples: int = 400, rounds: int = 3) -> dict:
    _quiet()
    result: dict = {"samples": samples, "rounds": rounds}
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        result["sqlite"] = measure(
            f"sqlite:///{here / 'bench.db'}", samples, rounds, _floor_sqlite(here / "floor.db")
        )
        result["sqlite"]["durability"] = "WAL, synchronous=FULL (each commit fsynced)"
        result["disk_fsync_ms"] = _fsync_floor(here / "fsync.bin")
    try:
        from guardrails.testing.postgres import PostgresCluster, PostgresUnavailable
    except ImportError:
        return result
    try:
        with PostgresCluster.start(durable=True) as cluster:
            result["postgresql"] = measure(
                cluster.url, samples, rounds, _floor_postgres(cluster.url)
            )
            result["postgresql"]["durability"] = "fsync=on, synchronous_commit=on"
    except PostgresUnavailable as exc:
        result["postgresql"] = {"skipped": str(exc)}
    return result


def _fsync_floor(path: Path, n: int = 200) -> float:
    """p50 of write(300 bytes) + fsync on this disk, in ms."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 300)
            started = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
    return statistics.median(times) * 1000


def ms(x: float) -> str:
    return f"{x * 1000:.2f}"


def rows(result: dict) -> list[tuple]:
    """(measure, baseline, measured, ratio, target, met) rows for bench/run.py's table."""
    out: list[tuple] = []
    if "disk_fsync_ms" in result:
        out.append(("disk: write + fsync p50 (this run)", f"{result['disk_fsync_ms']:.2f} ms"))
    for engine in ("sqlite", "postgresql"):
        data = result.get(engine) or {}
        if "skipped" in data:
            out.append((f"audit append on {engine}", f"skipped: {data['skipped'][:80]}"))
            continue
        if not data:
            continue
        out.append((f"audit on {engine} ({data.get('durability', '')})", ""))
        for users in (str(u) for u in USERS):
            e = data.get(users)
            if not e:
                continue
            w = f"{users} writer(s)"
            floor = e["floor"]
            out.append(
                (
                    f"  bare driver insert + commit p50 / p99, {w}",
                    "-",
                    f"{ms(floor['p50'])} / {ms(floor['p99'])} ms",
                    "-",
                    "-",
                    "-",
                )
            )
            a, t = e["anchor"], e["audited"]
            out.append(
                (
                    f"  change + event + commit p50 / p99, {w} (vs change + commit)",
                    f"{ms(a['p50'])} / {ms(a['p99'])} ms",
                    f"{ms(t['p50'])} / {ms(t['p99'])} ms",
                    f"{t['p50'] / a['p50']:.2f}x",
                    "-",
                    "-",
                )
            )
            target = users == str(USERS[-1])
            ap = e["append"]
            out.append(
                (
                    f"  audit append in the change's transaction p50 / p99, {w}",
                    "-",
                    f"{ms(ap['p50'])} / {ms(ap['p99'])} ms",
                    "-",
                    f"p50 <= {TARGET_MS} ms" if target else "-",
                    ("yes" if ap["p50"] * 1000 <= TARGET_MS else "NO") if target else "-",
                )
            )
            al = e["alone"]
            out.append(
                (
                    f"  standalone append (group commit) p50 / p99, {w}; per event",
                    f"{ms(floor['p50'])} ms (floor)",
                    f"{ms(al['p50'])} / {ms(al['p99'])} ms; {ms(al['per_event'])} ms",
                    f"{al['p50'] / floor['p50']:.2f}x",
                    f"p50 <= {TARGET_MS} ms" if target else "-",
                    ("yes" if al["p50"] * 1000 <= TARGET_MS else "NO") if target else "-",
                )
            )
            per_commit = f"{al['events_per_commit']:.1f}"
            out.append((f"    events per commit, {w}", "-", per_commit, "-", "-", "-"))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    measured = bench_audit(args.samples, args.rounds)
    for row in rows(measured):
        print(" | ".join(row))
    print(json.dumps(measured, indent=1))
