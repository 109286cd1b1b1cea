"""An app made only of guardrails, run as separate processes (replicas) by test_replicas.py:
`uvicorn tests.replica_app:build --factory`, configured by the environment like a real app."""

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import text
from sqlalchemy.orm import Session

from guardrails import User, audit, create_app, db_session, limit_per_user, require_user


def build():
    app = create_app()
    router = APIRouter()

    @router.post("/things/{thing_id}")
    def create(
        thing_id: int, user: User = Depends(require_user), db: Session = Depends(db_session)
    ):
        with db.begin():
            db.execute(
                text("INSERT INTO thing (id, status) VALUES (:id, 'submitted')"), {"id": thing_id}
            )
            audit.record("thing.create", resource=("thing", thing_id))
        return {"created": thing_id}

    @router.post("/things/{thing_id}/approve")
    def approve(
        thing_id: int, user: User = Depends(require_user), db: Session = Depends(db_session)
    ):
        with db.begin():
            changed = db.execute(
                text(
                    "UPDATE thing SET status = 'approved' WHERE id = :id AND status = 'submitted'"
                ),
                {"id": thing_id},
            ).rowcount
            if changed != 1:
                audit.record("thing.approve", result="denied", resource=("thing", thing_id))
                raise HTTPException(409, "decided by someone else")
            audit.record("thing.approve", resource=("thing", thing_id))
        return {"approved": thing_id}

    @router.get("/limited")
    def limited(user: User = Depends(limit_per_user("replica", per_minute=3))):
        return {"ok": True}

    app.include_router(router)
    return app
