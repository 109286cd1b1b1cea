"""Keyset paging and SQL counts (guardrails.keyset_page, guardrails.count_rows) on a real SQLite
database: every row exactly once across pages, ties in the sort key included; counts equal to
the filtered row count; the SQL of a page walks an index and stops at the page size."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import DateTime, Index, String, create_engine, event, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from guardrails import Page, count_rows, keyset_page
from guardrails.core.paging import DEFAULT_PAGE_SIZE, decode_cursor, encode_cursor, page_size


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    team: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    __table_args__ = (
        Index("ix_item_status_id", "status", "id"),
        Index("ix_item_created_id", "created_at", "id"),
    )


ROWS = 1_000
T0 = dt.datetime(2026, 1, 1)


@pytest.fixture(scope="module")
def db():
    engine = create_engine("sqlite://")
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def remember(_conn, _cursor, statement, parameters, *_args):
        statements.append((statement, parameters))

    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.execute(
            Item.__table__.insert(),
            [
                {  # few distinct times and teams: many ties in each sort key
                    "id": i,
                    "status": ("open", "closed", "draft")[i % 3],
                    "team": f"team-{i % 7}",
                    "created_at": T0 + dt.timedelta(hours=i % 13),
                }
                for i in range(1, ROWS + 1)
            ],
        )
        session.commit()
        session.info["statements"] = statements
        yield session


def walk(db, statement, order, size):
    seen, cursor, pages = [], None, 0
    while True:
        page = keyset_page(db.scalars, statement, order, after=cursor, size=size)
        assert len(page) <= size
        seen += [item.id for item in page]
        pages += 1
        cursor = page.next
        if cursor is None:
            return seen, pages


@pytest.mark.parametrize(
    "order",
    [
        [Item.id.desc()],
        [Item.created_at.desc(), Item.id.desc()],
        [Item.created_at.asc(), Item.id.asc()],
        [Item.team.asc(), Item.created_at.desc(), Item.id.desc()],  # mixed directions
    ],
    ids=["id", "created-desc", "created-asc", "team-created-mixed"],
)
def test_every_row_exactly_once_across_pages_with_ties(db, order):
    statement = select(Item).where(Item.status != "draft")
    expected = [item.id for item in db.scalars(statement.order_by(*order))]
    seen, pages = walk(db, statement, order, size=37)
    assert seen == expected  # same order, nothing skipped, nothing twice
    assert len(set(seen)) == len(seen) == 667
    assert pages == -(-667 // 37)


def test_counts_match_the_filtered_rows(db):
    for status in ("open", "closed", "draft"):
        statement = select(Item).where(Item.status == status)
        assert count_rows(db.scalars, statement) == len(db.scalars(statement).all())
    assert count_rows(db.scalars, select(Item)) == ROWS
    assert count_rows(db.scalars, select(Item), cap=100) == 100  # a badge's "100+"
    assert count_rows(db.execute, select(Item).where(Item.team == "team-3")) == 143


def test_a_count_is_answered_from_the_index_alone(db):
    """The capped count selects the constant 1, not the columns: an index on the filter column
    answers it without reading a row (SQLite's COVERING INDEX), so a badge costs the same at
    any size. A DISTINCT count still counts distinct values."""
    statements = db.info["statements"]
    statements.clear()
    assert count_rows(db.scalars, select(Item).where(Item.status == "open"), cap=100) == 100
    ((sql, params),) = statements
    assert "count(*)" in sql and "SELECT 1" in sql and "item.team" not in sql, sql
    explained = db.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", tuple(params))
    plan = " ".join(row[-1] for row in explained)
    assert "COVERING INDEX ix_item_status_id" in plan, plan
    assert count_rows(db.scalars, select(Item.team).distinct()) == 7


def test_a_page_uses_the_index_and_reads_only_a_page(db):
    statement = select(Item).where(Item.status == "open")
    order = [Item.id.desc()]
    first = keyset_page(db.scalars, statement, order, size=20)
    statements = db.info["statements"]
    statements.clear()
    keyset_page(db.scalars, statement, order, after=first.next, size=20)
    ((sql, params),) = statements
    # starts after the cursor's key and stops after one page (SQLite's dialect always writes
    # an OFFSET: it is 0); no COUNT, no second query
    assert "item.id < ?" in sql and sql.rstrip().endswith("LIMIT ? OFFSET ?"), sql
    assert tuple(params)[-2:] == (21, 0)
    compiled = (
        statement.order_by(*order)
        .where(Item.id < first.items[-1].id)
        .limit(21)
        .compile(db.get_bind(), compile_kwargs={"literal_binds": True})
    )
    plan = " ".join(row[-1] for row in db.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "INDEX ix_item_status_id" in plan, plan
    assert "SCAN item" not in plan.replace("SCAN item USING", "")  # no full-table scan
    assert "TEMP B-TREE" not in plan  # no sort of all matching rows


def test_a_cursor_that_is_not_ours_gives_the_first_page(db):
    order = [Item.id.desc()]
    first = keyset_page(db.scalars, select(Item), order, size=5)
    for junk in ("", "!!!", "bm90IGpzb24", encode_cursor(["a", "b", "c"])):
        page = keyset_page(db.scalars, select(Item), order, after=junk or None, size=5)
        assert [i.id for i in page] == [i.id for i in first]
    assert isinstance(first, Page) and first.first and first.next


def test_cursor_round_trips_dates_and_page_size_defaults():
    values = [T0, dt.date(2026, 2, 3), "x", 7]
    assert decode_cursor(encode_cursor(values), 4) == values
    assert page_size() == DEFAULT_PAGE_SIZE  # no app running: the default
    assert page_size(10_000) == 500 and page_size(0) == 1
