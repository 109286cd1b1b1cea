"""Yours to edit. Pages and the small JSON API of the approval app.

Every state change is written with its audit event in one database transaction: if the audit
event cannot be written, guardrails raises AuditError, the transaction rolls back and the user
sees a 503 - nothing changes without a trace.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app import workflow
from app.models import ApprovalRequest, Status
from guardrails import User, audit, count_rows, db_session, keyset_page, render, require_role

router = APIRouter()
api = APIRouter(prefix="/api")

ANY_ROLE = ("requester", "approver", "admin")
MAX_ID = 2**31 - 1  # the id column is INTEGER: 32 bits on PostgreSQL
NEWEST_FIRST = [ApprovalRequest.id.desc()]  # the lists' order: stable, and the primary key
WAITING_SHOWN = 10  # "Waiting for your decision": a short list above the main one
COUNT_CAP = 1000  # counts stop there ("1000+"): a badge costs the same at any size
DB = Annotated[Session, Depends(db_session)]
Member = Annotated[User, Depends(require_role(*ANY_ROLE))]
# The columns the lists show, selected as plain rows: no ORM object is built per row and no text
# body or date is read (at 50 rows a page, building and tracking objects was most of the page's
# cost). Showing another column in list.html or the API? Add it here; a column not listed is an
# error on the page, not a quiet query per row.
LISTED = (
    ApprovalRequest.id,
    ApprovalRequest.title,
    ApprovalRequest.requester,
    ApprovalRequest.requester_name,
    ApprovalRequest.status,
    ApprovalRequest.decided_by,
)


def listed(query):
    """`query` (from visible or awaiting) selecting only LISTED: keyset_page(db.execute, ...)."""
    return query.with_only_columns(*LISTED)


def visible(user: User, include_archived: bool = False):
    """The SELECT of what `user` may see: requesters their own; approvers also everything
    submitted; admins all. Paged by keyset_page, counted by count_rows: never loaded whole."""
    query = select(ApprovalRequest)
    if not include_archived:
        query = query.where(ApprovalRequest.status != Status.ARCHIVED)
    if user.has_role("admin"):
        return query
    if user.has_role("approver"):
        return query.where(
            or_(ApprovalRequest.requester == user.id, ApprovalRequest.status != Status.DRAFT)
        )
    return query.where(ApprovalRequest.requester == user.id)


def awaiting(user: User):
    """Submitted requests `user` may decide (an approver's, not their own)."""
    return select(ApprovalRequest).where(
        ApprovalRequest.status == Status.SUBMITTED, ApprovalRequest.requester != user.id
    )


def can_see(req: ApprovalRequest, user: User) -> bool:
    if user.has_role("admin") or req.requester == user.id:
        return True
    return user.has_role("approver") and req.status != Status.DRAFT


def load_visible(db: Session, request_id: int, user: User) -> ApprovalRequest:
    # Ids outside the id column's range (INTEGER: 32 bits on PostgreSQL, 64 on SQLite) name no
    # request: answer 404 before the driver refuses the number (a 500).
    req = db.get(ApprovalRequest, request_id) if 1 <= request_id <= MAX_ID else None
    if req is None:
        raise HTTPException(404, f"There is no request {request_id}.")
    if not can_see(req, user):
        audit.record("approval.view", result="denied", resource=("request", request_id))
        raise HTTPException(403, "You cannot see this request.")
    return req


@router.get("/")
def index(
    request: Request,
    db: DB,
    user: Member,
    archived: bool = False,
    after: Annotated[str | None, Query(max_length=200)] = None,
    waiting_after: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    if archived and not user.has_role("admin"):  # the link is only shown to admins, too
        audit.record("approval.list_archived", result="denied", resource=("route", "/?archived=1"))
        raise HTTPException(403, "Only admins can list archived requests.")
    query = visible(user, include_archived=archived)
    page = keyset_page(db.execute, listed(query), NEWEST_FIRST, after=after)
    waiting = None
    if user.has_role("approver"):
        waiting = keyset_page(
            db.execute,
            listed(awaiting(user)),
            NEWEST_FIRST,
            after=waiting_after,
            size=WAITING_SHOWN,
        )
        waiting.extra["count"] = count_rows(db.scalars, awaiting(user), cap=COUNT_CAP)
    total = count_rows(db.scalars, query, cap=COUNT_CAP)
    return render(
        request,
        "list.html",
        {
            "rows": page,
            "awaiting": waiting,
            "total": total,
            "count_cap": COUNT_CAP,
            "archived": archived,
        },
    )


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
def api_requests(
    request: Request,
    response: Response,
    db: DB,
    user: Member,
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict]:
    """JSON for scripts and other apps (send a bearer token from the same identity provider).
    One page, newest first; the `Link: <...>; rel="next"` header names the next page."""
    page = keyset_page(db.execute, listed(visible(user)), NEWEST_FIRST, after=after)
    if page.next:
        response.headers["Link"] = f'<{request.url.path}?after={page.next}>; rel="next"'
    return [
        {
            "id": r.id,
            "title": r.title,
            "status": r.status.value,
            "requester": r.requester,
            "decided_by": r.decided_by,
        }
        for r in page
    ]
