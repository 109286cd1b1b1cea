"""Yours to edit. The approval life cycle as a table: who may do what, and when."""

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.models import ApprovalRequest, Status
from app.workflow import Refusal, allowed_actions, apply, perform
from guardrails import Model, User


def user(email, *roles):
    return User(sub=email, email=email, name=None, groups=(), roles=frozenset(roles))


REQ = user("rita@example.com", "requester")
APPROVER = user("alex@example.com", "approver")
ADMIN = user("ada@example.com", "admin")


def request(status=Status.DRAFT, requester=REQ):
    return ApprovalRequest(title="Laptop", requester=requester.id, status=status)


def test_happy_path():
    req = request()
    assert apply(req, "submit", REQ) == Status.DRAFT and req.status == Status.SUBMITTED
    apply(req, "approve", APPROVER, "fine")
    assert req.status == Status.APPROVED and req.decided_by == APPROVER.id
    assert req.decision == "approved" and req.decision_comment == "fine"
    apply(req, "archive", ADMIN)
    assert req.status == Status.ARCHIVED and req.archived_at is not None


def test_four_eyes_an_approver_cannot_decide_their_own_request():
    req = request(Status.SUBMITTED, requester=APPROVER)
    with pytest.raises(Refusal, match="Four-eyes") as refused:
        apply(req, "approve", APPROVER)
    assert refused.value.status == 403 and req.status == Status.SUBMITTED


@pytest.mark.parametrize(
    ("status", "action", "actor", "code"),
    [
        (Status.SUBMITTED, "approve", REQ, 403),  # not an approver
        (Status.DRAFT, "approve", APPROVER, 409),  # not submitted yet
        (Status.APPROVED, "reject", APPROVER, 409),  # already decided
        (Status.DRAFT, "submit", APPROVER, 403),  # only the requester submits
        (Status.SUBMITTED, "archive", ADMIN, 409),  # undecided requests stay
        (Status.APPROVED, "archive", APPROVER, 403),  # archiving is for admins
        (Status.DRAFT, "delete", ADMIN, 404),  # no such action
    ],
)
def test_refusals(status, action, actor, code):
    req = request(status)
    with pytest.raises(Refusal) as refused:
        apply(req, action, actor)
    assert refused.value.status == code and req.status == status


def test_rejecting_needs_a_comment():
    req = request(Status.SUBMITTED)
    with pytest.raises(Refusal, match="comment is required"):
        apply(req, "reject", APPROVER, "  ")
    apply(req, "reject", APPROVER, "No budget left")
    assert req.status == Status.REJECTED and req.decision == "rejected"


def test_buttons_follow_the_rules():
    assert allowed_actions(request(), REQ) == ["submit"]
    assert allowed_actions(request(Status.SUBMITTED), APPROVER) == ["approve", "reject"]
    assert allowed_actions(request(Status.SUBMITTED, requester=APPROVER), APPROVER) == []
    assert allowed_actions(request(Status.REJECTED), ADMIN) == ["archive"]


def test_a_decision_made_meanwhile_wins_and_the_late_one_is_refused(tmp_path):
    """Both approvers read the request while it is submitted; the first to write wins, the
    second write finds the status changed and is refused (409) without overwriting it."""
    engine = create_engine(f"sqlite:///{tmp_path / 'race.db'}")
    Model.metadata.create_all(engine)
    with Session(engine) as db:
        db.add(request(Status.SUBMITTED))
        db.commit()
    other = user("sam@example.com", "approver")
    with Session(engine) as first, Session(engine) as second:
        mine, theirs = first.get(ApprovalRequest, 1), second.get(ApprovalRequest, 1)
        assert perform(first, mine, "approve", APPROVER, "fine") == Status.SUBMITTED
        first.commit()
        with pytest.raises(Refusal, match="decided by someone else") as refused:
            perform(second, theirs, "reject", other, "no")
        assert refused.value.status == 409
        second.rollback()
    with Session(engine) as db:
        stored = db.get(ApprovalRequest, 1)
        assert (stored.status, stored.decided_by) == (Status.APPROVED, APPROVER.id)
    engine.dispose()
