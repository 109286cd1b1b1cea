"""Yours to edit. Pages and the small JSON API of the approval app.

Every state change is written with its audit event in one database transaction: if the audit
event cannot be written, guardrails raises AuditError, the transaction rolls back and the user
sees a 503 - nothing changes without a trace.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app import workflow
from app.models import ApprovalRequest, Status
from guardrails import User, audit, db_session, render, require_role

router = APIRouter()
api = APIRouter(prefix="/api")

ANY_ROLE = ("requester", "approver", "admin")
MAX_ID = 2**63 - 1
DB = Annotated[Session, Depends(db_session)]
Member = Annotated[User, Depends(require_role(*ANY_ROLE))]


def visible_requests(db: Session, user: User, include_archived: bool = False):
    """Requesters see their own; approvers also see everything submitted; admins see all."""
    query = select(ApprovalRequest).order_by(ApprovalRequest.id.desc())
    if not include_archived:
        query = query.where(ApprovalRequest.status != Status.ARCHIVED)
    if user.has_role("admin"):
        return db.scalars(query).all()
    if user.has_role("approver"):
        query = query.where(
            or_(ApprovalRequest.requester == user.id, ApprovalRequest.status != Status.DRAFT)
        )
    else:
        query = query.where(ApprovalRequest.requester == user.id)
    return db.scalars(query).all()


def can_see(req: ApprovalRequest, user: User) -> bool:
    if user.has_role("admin") or req.requester == user.id:
        return True
    return user.has_role("approver") and req.status != Status.DRAFT


def load_visible(db: Session, request_id: int, user: User) -> ApprovalRequest:
    # Ids outside the database's integer range (SQLite and PostgreSQL: 64 bits) name no
    # request: answer 404 before the driver refuses the number (a 500).
    req = db.get(ApprovalRequest, request_id) if 1 <= request_id <= MAX_ID else None
    if req is None:
        raise HTTPException(404, f"There is no request {request_id}.")
    if not can_see(req, user):
        audit.record("approval.view", result="denied", resource=("request", request_id))
        raise HTTPException(403, "You cannot see this request.")
    return req


@router.get("/")
def index(request: Request, db: DB, user: Member, archived: bool = False) -> Response:
    if archived and not user.has_role("admin"):  # the link is only shown to admins, too
        audit.record("approval.list_archived", result="denied", resource=("route", "/?archived=1"))
        raise HTTPException(403, "Only admins can list archived requests.")
    rows = visible_requests(db, user, include_archived=archived)
    awaiting = [r for r in rows if r.status == Status.SUBMITTED and r.requester != user.id]
    return render(request, "list.html", {"rows": rows, "awaiting": awaiting, "archived": archived})


@router.get("/requests/new")
def new_request(request: Request, user: Member) -> Response:
    return render(request, "new.html", {"error": None, "title": "", "details": ""})


@router.post("/requests")
def create_request(
    request: Request,
    db: DB,
    user: Member,
    title: Annotated[str, Form(max_length=120)] = "",
    details: Annotated[str, Form(max_length=5000)] = "",
    action: Annotated[str, Form()] = "submit",
) -> Response:
    if not title.strip():
        return render(
            request,
            "new.html",
            {"error": "Give the request a title.", "title": title, "details": details},
            status_code=400,
        )
    with db.begin():
        req = ApprovalRequest(
            title=title.strip(),
            details=details.strip(),
            requester=user.id,
            requester_name=user.display_name,
            status=Status.DRAFT,
        )
        db.add(req)
        db.flush()
        audit.record("approval.create", resource=("request", req.id), metadata={"title": req.title})
        if action == "submit":
            workflow.apply(req, "submit", user)
            audit.record("approval.submit", resource=("request", req.id))
    return RedirectResponse(f"/requests/{req.id}", status_code=303)


@router.get("/requests/{request_id}")
def show_request(request: Request, request_id: int, db: DB, user: Member) -> Response:
    req = load_visible(db, request_id, user)
    return render(
        request, "detail.html", {"req": req, "actions": workflow.allowed_actions(req, user)}
    )


@router.post("/requests/{request_id}/{action}")
def transition(
    request: Request,
    request_id: int,
    action: str,
    db: DB,
    user: Member,
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    with db.begin():
        req = load_visible(db, request_id, user)
        seen = req.status
        try:
            # Written at once and only if the status is still `seen`: a concurrent decision
            # makes this a 409, and no success event is recorded.
            previous = workflow.perform(db, req, action, user, comment)
        except workflow.Refusal as refusal:
            if refusal.status == 400:  # a missing answer: the form again, the message beside it
                return render(
                    request,
                    "detail.html",
                    {
                        "req": req,
                        "actions": workflow.allowed_actions(req, user),
                        "comment": comment,
                        "comment_error": refusal.reason,
                    },
                    status_code=400,
                )
            if refusal.status in (403, 409):
                audit.record(
                    f"approval.{action}",
                    result="denied",
                    resource=("request", request_id),
                    metadata={"reason": refusal.reason, "status": seen.value},
                )
            raise HTTPException(refusal.status, refusal.reason) from None
        audit.record(
            f"approval.{action}",
            resource=("request", req.id),
            metadata={
                "from": previous.value,
                "to": req.status.value,
                "comment": req.decision_comment if action in workflow.DECISIONS else None,
            },
        )
    return RedirectResponse(f"/requests/{request_id}", status_code=303)


@api.get("/requests")
def api_requests(db: DB, user: Member) -> list[dict]:
    """JSON for scripts and other apps (send a bearer token from the same identity provider)."""
    return [
        {
            "id": r.id,
            "title": r.title,
            "status": r.status.value,
            "requester": r.requester,
            "decided_by": r.decided_by,
        }
        for r in visible_requests(db, user)
    ]
