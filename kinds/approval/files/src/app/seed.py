"""Yours to edit. Made-up requests for `python -m guardrails.testing seed --rows N` (make seed).

The seeding command (guardrails' test kit) calls `rows()` for the column values of each new
request, inserts them in bulk and writes the audit events `events()` names for each, so a
seeded database looks like one that was used: most requests decided, some archived, a few
waiting. Nothing here runs in production.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator, Sequence
from typing import Any

from app.models import ApprovalRequest, Status

MODEL = ApprovalRequest
RESOURCE = "request"  # the audit events' resource type
WHAT = ["Laptop", "Monitor", "Training course", "Conference trip", "Software licence", "Desk"]
# status -> share of the rows
MIX = [
    (Status.DRAFT, 5),
    (Status.SUBMITTED, 15),
    (Status.APPROVED, 45),
    (Status.REJECTED, 10),
    (Status.ARCHIVED, 25),
]


def rows(count: int, rng: random.Random, users: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Column values of `count` requests, oldest first, over the last year."""
    statuses = [s for s, share in MIX for _ in range(share)]
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)
    step = dt.timedelta(days=365) / max(count, 1)
    for n in range(count):
        created = start + step * n
        status = rng.choice(statuses)
        requester = rng.choice(users)  # a user id, issuer#sub
        name = requester.rsplit("#", 1)[-1].split("@")[0]
        values: dict[str, Any] = {
            "title": f"{rng.choice(WHAT)} for {name}",
            "details": "Seeded request (made-up data).",
            "status": status,
            "requester": requester,
            "requester_name": name.replace(".", " ").title(),
            "created_at": created,
            "submitted_at": None if status == Status.DRAFT else created + dt.timedelta(hours=1),
            "decision": None,
            "decided_by": None,
            "decided_at": None,
            "decision_comment": None,
            "archived_at": None,
        }
        if status in (Status.APPROVED, Status.REJECTED, Status.ARCHIVED):
            decision = Status.REJECTED if status == Status.REJECTED else Status.APPROVED
            values["decision"] = decision.value
            values["decided_by"] = rng.choice([u for u in users if u != requester] or users)
            values["decided_at"] = created + dt.timedelta(hours=5)
            if decision == Status.REJECTED:
                values["decision_comment"] = "Not in this quarter's budget."
        if status == Status.ARCHIVED:
            values["archived_at"] = created + dt.timedelta(days=2)
        yield values


def events(values: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The audit events the app would have written for one request (its id is added)."""
    requester, created = values["requester"], values["created_at"]
    yield {"action": "approval.create", "actor": requester, "at": created,
           "metadata": {"title": values["title"]}}  # fmt: skip
    if values["submitted_at"]:
        yield {"action": "approval.submit", "actor": requester, "at": values["submitted_at"]}
    if values["decided_by"]:
        action = "approval.approve" if values["decision"] == "approved" else "approval.reject"
        yield {"action": action, "actor": values["decided_by"], "at": values["decided_at"],
               "metadata": {"from": "submitted", "to": values["decision"],
                            "comment": values["decision_comment"]}}  # fmt: skip
    if values["archived_at"]:
        yield {"action": "approval.archive", "actor": "admin@example.com",
               "at": values["archived_at"], "metadata": {"from": values["decision"],
               "to": "archived"}}  # fmt: skip
