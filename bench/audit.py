"""Audit append cost: p50 and p99 of one audited transaction, at 1 and 8 concurrent users.

Each sample is a transaction that inserts one row and records its audit event (the chain
lock, the hash, the event row), then commits; the anchor is the same transaction without the
event (one row, one commit) in the same database. Runs on SQLite (the laptop default) and, when
PostgreSQL's binaries are here, on a throw-away PostgreSQL cluster. Used by `make bench`
(bench/run.py); alone: `python bench/audit.py [--samples N]`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from guardrails.auditing import chain
from guardrails.auditing.log import AuditLog
from guardrails.auditing.outbox import Outbox
from guardrails.core import db
from sqlalchemy import text

APP = "bench"
COUNTER = itertools.count(1)


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


def _run(log: AuditLog, users: int, samples: int, audited: bool) -> list[float]:
    times: list[float] = []
    lock = threading.Lock()

    def user() -> None:
        for _ in range(samples // users):
            with lock:
                n = next(COUNTER)
            started = time.perf_counter()
            with log.sessions() as session, session.begin():
                session.execute(text("INSERT INTO bench_row (id, n) VALUES (:n, :n)"), {"n": n})
                if audited:
                    log.record("bench.append", resource=("row", n), metadata={"n": n})
            elapsed = time.perf_counter() - started
            with lock:
                times.append(elapsed)

    threads = [threading.Thread(target=user) for _ in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def measure(url: str, samples: int) -> dict:
    log = _setup(url)
    out: dict = {}
    _run(log, 1, 20, True)  # warm-up
    for users in (1, 8):
        anchor = _run(log, users, samples, audited=False)
        audit = _run(log, users, samples, audited=True)
        out[str(users)] = {
            "anchor_p50": _pct(anchor, 50),
            "anchor_p99": _pct(anchor, 99),
            "p50": _pct(audit, 50),
            "p99": _pct(audit, 99),
        }
    log.sessions.kw["bind"].dispose()
    return out


def bench_audit(samples: int = 400) -> dict:
    result: dict = {"samples": samples}
    with tempfile.TemporaryDirectory() as folder:
        result["sqlite"] = measure(f"sqlite:///{Path(folder) / 'bench.db'}", samples)
    try:
        from guardrails.testing.postgres import PostgresCluster, PostgresUnavailable
    except ImportError:
        return result
    try:
        with PostgresCluster.start() as cluster:
            result["postgresql"] = measure(cluster.url, samples)
    except PostgresUnavailable as exc:
        result["postgresql"] = {"skipped": str(exc)}
    return result


def rows(result: dict) -> list[tuple]:
    """(measure, baseline, measured, ratio, target, met) rows for bench/run.py's table."""
    out = []
    for engine in ("sqlite", "postgresql"):
        data = result.get(engine) or {}
        if "skipped" in data:
            out.append((f"audit append on {engine}", f"skipped: {data['skipped'][:80]}"))
            continue
        for users, entry in data.items():
            for q in ("p50", "p99"):
                out.append(
                    (
                        f"audit append {q}, {engine}, {users} user(s) (insert + event + commit)",
                        f"{entry['anchor_' + q] * 1000:.2f} ms",
                        f"{entry[q] * 1000:.2f} ms",
                        f"{entry[q] / entry['anchor_' + q]:.1f}x",
                        "-",
                        "-",
                    )
                )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()
    measured = bench_audit(args.samples)
    for row in rows(measured):
        print(" | ".join(row))
    print(json.dumps(measured, indent=1))
