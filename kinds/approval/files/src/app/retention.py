"""Yours to edit. Retention: purge archived requests older than `data.retention_days`.

Runs in the background every hour (the `retention-purge` housekeeping job, registered below
with guardrails.schedule) and on demand with `make purge`. It deletes in batches; each batch is
audited: one `retention.purge` event with the ids removed, written in the same transaction as
the delete. Several replicas may run it at once: only the ids a replica actually deleted
(`RETURNING`) are audited by it, so every removed request is recorded exactly once.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import ApprovalRequest, Status, utcnow
from guardrails import Actor, Manifest, audit, schedule

SYSTEM = Actor(id="system:retention", roles=("system",))
BATCH = 500


def expired(retention_days: int, now: dt.datetime | None = None):
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    return (
        select(ApprovalRequest.id)
        .where(ApprovalRequest.status == Status.ARCHIVED, ApprovalRequest.archived_at < cutoff)
        .order_by(ApprovalRequest.id)
    )


def expired_ids(db: Session, retention_days: int, now: dt.datetime | None = None) -> list[int]:
    return list(db.scalars(expired(retention_days, now)))


def purge_batch(
    db: Session, retention_days: int, batch: int = BATCH, now: dt.datetime | None = None
) -> list[int]:
    """Delete at most `batch` expired requests in the caller's transaction and audit them."""
    doomed = expired(retention_days, now).limit(batch)
    ids = sorted(
        db.scalars(
            delete(ApprovalRequest)
            .where(ApprovalRequest.id.in_(doomed))
            .returning(ApprovalRequest.id)
            .execution_options(synchronize_session=False)
        )
    )
    if ids:
        audit.record(
            "retention.purge",
            actor=SYSTEM,
            resource=("request", ",".join(map(str, ids))),
            metadata={"count": len(ids), "retention_days": retention_days},
        )
    return ids


def purge(
    db: Session, retention_days: int, dry_run: bool = False, now: dt.datetime | None = None
) -> list[int]:
    """Delete archived requests past retention, batch by batch; returns their ids. Audited
    unless dry_run."""
    if dry_run:
        with db.begin():
            return expired_ids(db, retention_days, now)
    removed: list[int] = []
    while True:
        with db.begin():
            ids = purge_batch(db, retention_days, BATCH, now)
        removed += ids
        if len(ids) < BATCH:
            return removed


@schedule("retention-purge", every=3600, batch=BATCH)
def scheduled_purge(db: Session, batch: int, manifest: Manifest) -> int:
    return len(purge_batch(db, manifest.retention_days, batch))
