"""`python -m guardrails.testing seed --rows N`: fill an app's database with made-up rows, fast.

For trying an app at the size it will reach (paging, indexes, memory), and for the growth
benchmark. Run in the app's folder (its microapp.yaml and DATABASE_URL, as `make dev` uses):

    python -m guardrails.testing seed --rows 100000     # about 10 s on SQLite

The app says what a row looks like in its own module `app.seed` (the approval starter has one):
`MODEL` (the Model class), `RESOURCE` (the audit resource type), `rows(count, rng, users)`
yielding column values, and `events(values)` yielding the audit events the app would have
written for that row (`action`, `actor`, `at`, optional `metadata`). Rows are inserted in
batches of 5,000 (one multi-row INSERT each), each batch in one transaction with its audit
events, chained onto the app's audit chain in the database, so `python -m guardrails audit
verify` still proves it. The users are the demo users of the manifest's roles plus made-up
requesters. Never run it against production data: it refuses a manifest whose stage is
production.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import random
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import func, insert, select

from guardrails.auditing import chain
from guardrails.core.runtime import Runtime, prepare_database, runtime
from guardrails.testing.devserver import demo_users
from guardrails.web.sso import user_key

BATCH = 5_000


def users_for(rt: Runtime, extra: int = 40) -> list[str]:
    """User ids (`issuer#sub`, as sign-in makes them) of the demo users and made-up others; the
    local provider's subject is the e-mail."""
    issuer = rt.sso_issuer
    emails = [u.email for u in demo_users(rt.manifest)]
    emails += [f"user{n:02d}@example.com" for n in range(1, extra + 1)]
    return [user_key(issuer, email) for email in emails]


def _timestamp(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def audit_events(rt: Runtime, resource: str, seeded: Iterable[tuple[int, Iterable[dict]]]):
    for row_id, events in seeded:
        for spec in events:
            yield {
                "event_id": str(uuid.uuid4()),
                "timestamp": _timestamp(spec["at"]),
                "app_id": rt.manifest.app_id,
                "actor": {"id": spec["actor"], "roles": sorted(spec.get("roles", ()))},
                "action": spec["action"],
                "resource": {"type": resource, "id": str(row_id)},
                "result": "success",
                "request_id": None,
                "trace_id": None,
                "source_ip": None,
                "metadata": spec.get("metadata") or {},
            }


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def seed(rt: Runtime, count: int, rng: random.Random, module: str = "app.seed") -> dict[str, int]:
    """Insert `count` rows of the app's `module` and their audit events; returns the counts."""
    if rt.manifest.stage == "production":
        raise SystemExit("refusing to seed made-up rows into a production app")
    spec = importlib.import_module(module)
    model = spec.MODEL
    prepare_database(rt)  # the app's tables, migrated (the app's models were imported just now)
    table = model.__table__
    (key,) = table.primary_key.columns
    users = users_for(rt)
    rows_done = events_done = 0
    with rt.engine.connect() as conn:
        next_id = (conn.scalar(select(func.max(key))) or 0) + 1
    for chunk in _chunks(spec.rows(count, rng, users), BATCH):
        for n, values in enumerate(chunk):
            values[key.name] = next_id + n
        next_id += len(chunk)
        events = list(
            audit_events(rt, spec.RESOURCE, ((v[key.name], spec.events(v)) for v in chunk))
        )
        with rt.sessionmaker() as db, db.begin():  # the rows and their events commit together
            db.execute(insert(table), chunk)
            chain.extend(db, rt.manifest.app_id, events)
        rows_done += len(chunk)
        events_done += len(events)
    # Fresh statistics, as a database in use has them. PostgreSQL's VACUUM also marks the new
    # pages all-visible, as autovacuum would a minute later: until then a count answered from an
    # index (an index-only scan) still visits each row's page to check that it is visible.
    postgres = rt.engine.dialect.name == "postgresql"
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"{'VACUUM (ANALYZE)' if postgres else 'ANALYZE'} {table.name}")
    return {"rows": rows_done, "events": events_done}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m guardrails.testing seed", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, default=1000, help="how many rows (default 1000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (same rows each time)")
    parser.add_argument("--module", default="app.seed", help="the app's seed module")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with runtime() as rt:
        done = seed(rt, args.rows, random.Random(args.seed), args.module)  # noqa: S311
    print(
        f"seeded {done['rows']} rows and {done['events']} audit events "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0
