"""Yours to edit. The lists stay cheap as requests pile up: each role's list pages through every
visible request exactly once, its count matches, and the database answers a page from an index
without reading or sorting every row, and a count from an index alone (SQLite's EXPLAIN QUERY
PLAN)."""

import random

import pytest
from sqlalchemy import create_engine, func, insert, literal_column, select, text
from sqlalchemy.orm import Session

from app import seed
from app.models import ApprovalRequest
from app.routes import NEWEST_FIRST, awaiting, visible
from guardrails import Model, User, count_rows, keyset_page

USERS = ["requester@example.com", "approver@example.com", "admin@example.com"] + [
    f"user{n}@example.com" for n in range(10)
]


def user(email, *roles):
    return User(sub=email, email=email, name=None, groups=(), roles=frozenset(roles))


ROLES = {
    "requester": user("requester@example.com", "requester"),
    "approver": user("approver@example.com", "approver"),
    "admin": user("admin@example.com", "admin"),
}


@pytest.fixture(scope="module")
def db():
    engine = create_engine("sqlite://")
    Model.metadata.create_all(engine)
    rows = list(seed.rows(600, random.Random(3), USERS))  # noqa: S311 (made-up rows)
    with Session(engine) as session:
        session.execute(insert(ApprovalRequest), rows)
        session.commit()
        yield session


def walk(db, query, size):
    ids, cursor = [], None
    while True:
        page = keyset_page(db.scalars, query, NEWEST_FIRST, after=cursor, size=size)
        ids += [r.id for r in page]
        cursor = page.next
        if cursor is None:
            return ids


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_list_pages_through_every_visible_request_once(db, role):
    who = ROLES[role]
    for query in (visible(who), visible(who, include_archived=True), awaiting(who)):
        everything = [r.id for r in db.scalars(query.order_by(*NEWEST_FIRST))]
        assert walk(db, query, size=23) == everything  # newest first, none twice, none left out
        assert count_rows(db.scalars, query) == len(everything)
        assert count_rows(db.scalars, query, cap=10) == min(10, len(everything))


def plan(db, query) -> str:
    compiled = (
        query.order_by(*NEWEST_FIRST)
        .limit(51)
        .compile(db.get_bind(), compile_kwargs={"literal_binds": True})
    )
    return " | ".join(row[-1] for row in db.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))


def test_the_pages_are_answered_from_an_index(db):
    found = plan(db, awaiting(ROLES["approver"]))
    assert "ix_approval_request_status_id_requester" in found, found
    assert "TEMP B-TREE" not in found, found
    found = plan(db, visible(ROLES["requester"]))
    assert "ix_approval_request_requester_id_status" in found, found
    assert "TEMP B-TREE" not in found, found
    found = plan(db, visible(ROLES["admin"], include_archived=True))  # walks the key backwards
    assert "TEMP B-TREE" not in found, found


def count_plan(db, query) -> str:
    """The plan of count_rows's capped count: SELECT count(*) FROM (SELECT 1 ... LIMIT n)."""
    inner = query.with_only_columns(literal_column("1"), maintain_column_froms=True).limit(1000)
    counted = select(func.count()).select_from(inner.subquery())
    compiled = counted.compile(db.get_bind(), compile_kwargs={"literal_binds": True})
    return " | ".join(row[-1] for row in db.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))


@pytest.mark.parametrize("role", sorted(ROLES))
def test_the_counts_never_read_a_row(db, role):
    """The total beside each role's list and the approver's badge come from an index that
    holds every column their filters use ("COVERING INDEX"): a count of 1,000 reads 1,000
    index entries, not 1,000 rows."""
    who = ROLES[role]
    for query in (visible(who), awaiting(who)):
        found = count_plan(db, query)
        assert "COVERING INDEX" in found and "SCAN approval_request |" not in f"{found} |", found
