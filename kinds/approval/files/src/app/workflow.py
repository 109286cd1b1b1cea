"""Yours to edit. The request life cycle, as a table of allowed transitions.

    draft --submit--> submitted --approve--> approved --archive--> archived
                                 --reject---> rejected --archive--> archived

Who may do what is decided here and nowhere else; routes only call `perform()`, which writes
the change at once and only if nobody changed the request since it was read.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.models import ApprovalRequest, Status, utcnow
from guardrails import User

# action -> (states it may start from, state it leads to, roles allowed, owner only?)
TRANSITIONS: dict[str, tuple[frozenset[Status], Status, frozenset[str], bool]] = {
    "submit": (
        frozenset({Status.DRAFT}),
        Status.SUBMITTED,
        frozenset({"requester", "approver", "admin"}),
        True,
    ),
    "approve": (frozenset({Status.SUBMITTED}), Status.APPROVED, frozenset({"approver"}), False),
    "reject": (frozenset({Status.SUBMITTED}), Status.REJECTED, frozenset({"approver"}), False),
    "archive": (
        frozenset({Status.APPROVED, Status.REJECTED}),
        Status.ARCHIVED,
        frozenset({"admin"}),
        False,
    ),
}
DECISIONS = {"approve", "reject"}
DECIDED_ELSEWHERE = "This request was decided by someone else a moment ago. Reload the page."
CHANGED_ELSEWHERE = "This request was changed by someone else a moment ago. Reload the page."


@dataclass
class Refusal(Exception):
    """Why a transition was refused; `status` is the HTTP status to answer with."""

    status: int
    reason: str

    def __str__(self) -> str:
        return self.reason


def allowed_actions(req: ApprovalRequest, user: User) -> list[str]:
    """The actions `user` may take on `req` now (for showing buttons)."""
    actions = []
    for action in TRANSITIONS:
        try:
            check(req, action, user)
        except Refusal:
            continue
        actions.append(action)
    return actions


def check(req: ApprovalRequest, action: str, user: User, comment: str = "x") -> None:
    if action not in TRANSITIONS:
        raise Refusal(404, f"Unknown action {action!r}.")
    sources, _target, roles, owner_only = TRANSITIONS[action]
    if not user.has_role(*roles):
        raise Refusal(403, f"To {action} a request you need the {' or '.join(sorted(roles))} role.")
    if owner_only and req.requester != user.id:
        raise Refusal(403, f"Only the requester can {action} this request.")
    if action in DECISIONS and req.requester == user.id:
        raise Refusal(
            403,
            "Four-eyes rule: you cannot approve or reject your own request. "
            "Another approver must decide it.",
        )
    if req.status not in sources:
        raise Refusal(
            409,
            f"This request is {req.status.value}; it cannot be {TRANSITIONS[action][1].value} now.",
        )
    if action == "reject" and not comment.strip():
        raise Refusal(400, "Say why the request is rejected: a comment is required.")


def apply(req: ApprovalRequest, action: str, user: User, comment: str = "") -> Status:
    """Check and perform `action`; raises Refusal without changing anything."""
    check(req, action, user, comment if action == "reject" else "x")
    previous = req.status
    req.status = TRANSITIONS[action][1]
    now = utcnow()
    if action == "submit":
        req.submitted_at = now
    elif action in DECISIONS:
        req.decision, req.decided_by, req.decided_at = req.status.value, user.id, now
        req.decision_comment = comment.strip() or None
    elif action == "archive":
        req.archived_at = now
    return previous


def perform(
    db: Session, req: ApprovalRequest, action: str, user: User, comment: str = ""
) -> Status:
    """`apply()`, then write the change now, only if the request is still in the status it was
    read with (the model's version column): of two people who decide the same request at the
    same moment, one wins and the other gets Refusal(409). Call it inside the transaction that
    records the audit event, and record the event after it returns."""
    previous = apply(req, action, user, comment)
    try:
        db.flush()
    except StaleDataError:
        message = DECIDED_ELSEWHERE if action in DECISIONS else CHANGED_ELSEWHERE
        raise Refusal(409, message) from None
    return previous
