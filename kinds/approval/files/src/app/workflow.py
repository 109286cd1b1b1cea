"""Yours to edit. The request life cycle, as a table of allowed transitions.

    draft --submit--> submitted --approve--> approved --archive--> archived
                                 --reject---> rejected --archive--> archived

Who may do what is decided here and nowhere else; routes only call `apply()`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        raise Refusal(409, f"This request is {req.status.value}; it cannot be {action}d now.")
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
