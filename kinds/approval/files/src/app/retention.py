"""Yours to edit. Retention: purge archived requests older than `data.retention_days`.

Run by `make purge` (schedule it daily in production). The purge is audited: one
`retention.purge` event with the ids removed, written in the same transaction as the delete.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import ApprovalRequest, Status, utcnow
from guardrails import Actor, audit

SYSTEM = Actor(id="system:retention", roles=("system",))


def expired_ids(db: Session, retention_days: int, now: dt.datetime | None = None) -> list[int]:
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    return list(
        db.scalars(
            select(ApprovalRequest.id)
            .where(ApprovalRequest.status == Status.ARCHIVED, ApprovalRequest.archived_at < cutoff)
            .order_by(ApprovalRequest.id)
        )
    )


def purge(
    db: Session, retention_days: int, dry_run: bool = False, now: dt.datetime | None = None
) -> list[int]:
    """Delete archived requests past retention; returns their ids. Audited unless dry_run."""
    with db.begin():
        ids = expired_ids(db, retention_days, now)
        if dry_run or not ids:
            return ids
        db.execute(delete(ApprovalRequest).where(ApprovalRequest.id.in_(ids)))
        audit.record(
            "retention.purge",
            actor=SYSTEM,
            resource=("request", ",".join(map(str, ids))),
            metadata={"count": len(ids), "retention_days": retention_days},
        )
    return ids
