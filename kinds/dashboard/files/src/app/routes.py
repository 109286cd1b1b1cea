"""Yours to edit. The dashboard: a summary with a chart, a ticket table, a CSV export.

All data comes through the `reports` connector declared in microapp.yaml: read-only,
parameterized queries only, e-mail and phone masked unless the user holds pii-reader. Queries
are throttled per user; the export is limited to the exporter role and audited.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import column, func, or_, select, table

from app.charts import bar_chart
from guardrails import (
    User,
    audit,
    connector,
    count_rows,
    keyset_page,
    limit_per_user,
    render,
    require_role,
)

router = APIRouter()

VIEW = ("viewer", "pii-reader", "exporter", "admin")
Viewer = Annotated[User, Depends(require_role(*VIEW))]
Throttled = Annotated[User, Depends(limit_per_user("dashboard-queries", per_minute=60))]
Exporter = Annotated[User, Depends(require_role("exporter", "admin"))]
ExportThrottled = Annotated[User, Depends(limit_per_user("csv-export", per_minute=5))]


def spreadsheet_safe(value):
    """A cell a spreadsheet shows as text: one starting with = + - @ (or a tab or carriage
    return) would run as a formula when the export is opened, so it gets a leading '."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


COLUMNS = [
    "id",
    "opened_on",
    "team",
    "category",
    "status",
    "requester",
    "email",
    "phone",
    "hours_to_resolve",
]
SORTABLE = {"id", "opened_on", "team", "category", "status", "hours_to_resolve"}
COUNT_CAP = 1000  # the count stops there ("1000+"): a page costs the same at any size
CHOICES_TTL = 300  # seconds the filters' choices are kept (reading them scans a whole index)
SUMMARY_TTL = 60  # seconds the summary's totals are kept (computing them reads every ticket)
_kept: dict[str, tuple[float, Any]] = {}  # what `kept` keeps: three entries at most
_kept_lock = threading.Lock()
TICKETS = table("tickets", *(column(c) for c in COLUMNS))


def reports():
    return connector("reports")


def filtered(team: str, status: str, search: str):
    """The filtered SELECT; user input is only ever a bound parameter, never SQL text."""
    t = TICKETS.c
    query = select(*TICKETS.c)
    if team:
        query = query.where(t.team == team)
    if status:
        query = query.where(t.status == status)
    if search:
        query = query.where(or_(t.requester.like(f"%{search}%"), t.category.like(f"%{search}%")))
    return query


def kept(key: str, ttl: float, compute: Callable[[], Any]) -> Any:
    """`compute()`, computed at most every `ttl` seconds and shared by every viewer (so only
    for what holds no personal data). One thread recomputes; the others wait for it."""
    hit = _kept.get(key)
    if hit and time.monotonic() - hit[0] <= ttl:
        return hit[1]
    with _kept_lock:
        hit = _kept.get(key)
        if hit and time.monotonic() - hit[0] <= ttl:
            return hit[1]  # another thread computed it while this one waited
        value = compute()
        _kept[key] = (time.monotonic(), value)
        return value


def choices(name: str) -> list[str]:
    """The distinct values of `name` (team or status) for the filter menus, read at most every
    CHOICES_TTL seconds: they change rarely, and DISTINCT reads every row's index entry."""

    def read() -> list[str]:
        column = TICKETS.c[name]
        return [r[name] for r in reports().query(select(column).distinct().order_by(column))]

    return kept(f"choices:{name}", CHOICES_TTL, read)


def order(sort: str, desc: bool) -> list:
    """Sort column, then id (unique): a stable order for keyset paging. Tickets still open have
    no hours_to_resolve: they sort as -1 (NULL cannot be compared with a cursor)."""
    key = TICKETS.c[sort]
    if sort == "hours_to_resolve":
        key = func.coalesce(key, -1).label("hours_sort")
    direction = (lambda c: c.desc()) if desc else (lambda c: c.asc())
    return [direction(key)] if sort == "id" else [direction(key), direction(TICKETS.c.id)]


def summary_figures() -> dict:
    """The summary's totals, computed at most every SUMMARY_TTL seconds (`kept`; aggregates
    hold no personal data). Each computation reads every ticket: 100 ms at 100,000 tickets, so
    a page view must not."""
    return kept("summary", SUMMARY_TTL, _compute_summary)


def _compute_summary() -> dict:
    db = reports()
    return {
        "totals": db.query(
            "SELECT COUNT(*) AS tickets, "
            "SUM(CASE WHEN status IN (:open, :busy) THEN 1 ELSE 0 END) AS open_tickets, "
            "ROUND(AVG(hours_to_resolve), 1) AS avg_hours FROM tickets",
            open="open",
            busy="in progress",
        )[0],
        "by_category": db.query(
            "SELECT category, COUNT(*) AS n FROM tickets GROUP BY category ORDER BY n DESC"
        ),
        "by_team": db.query(
            "SELECT team, COUNT(*) AS n, ROUND(AVG(hours_to_resolve), 1) AS avg_hours "
            "FROM tickets GROUP BY team ORDER BY team"
        ),
        "as_of": dt.datetime.now(dt.UTC),
    }


@router.get("/")
def summary(request: Request, user: Viewer, _throttle: Throttled) -> Response:
    figures = summary_figures()
    chart = bar_chart(
        "Tickets by category", [(r["category"], r["n"]) for r in figures["by_category"]]
    )
    return render(request, "summary.html", {**figures, "chart": chart, "ttl": SUMMARY_TTL})


@router.get("/tickets")
def tickets(
    request: Request,
    user: Viewer,
    _throttle: Throttled,
    team: str = "",
    status: str = "",
    q: Annotated[str, Query(max_length=100)] = "",
    sort: str = "opened_on",
    desc: bool = True,
    after: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    db = reports()
    sort = sort if sort in SORTABLE else "opened_on"
    query = filtered(team, status, q)
    keys = order(sort, desc)
    if sort == "hours_to_resolve":
        query = query.add_columns(keys[0].element)  # the sort key, readable on each row
    page = keyset_page(db.query, query, keys, after=after)
    total = count_rows(db.query, filtered(team, status, q), cap=COUNT_CAP)
    teams, statuses = choices("team"), choices("status")
    return render(
        request,
        "tickets.html",
        {
            "rows": page,
            "columns": COLUMNS,
            "total": total,
            "count_cap": COUNT_CAP,
            "filters": {"team": team, "status": status, "q": q, "sort": sort, "desc": desc},
            "teams": teams,
            "statuses": statuses,
            "sortable": SORTABLE,
            "unmasked": user.has_role("pii-reader"),
        },
    )


@router.get("/tickets.csv")
def export_csv(
    user: Exporter,
    _throttle: ExportThrottled,
    team: str = "",
    status: str = "",
    q: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    """The filtered tickets as CSV, masked like the page, audited before the first byte."""
    rows = reports().query(filtered(team, status, q).order_by(TICKETS.c.id))
    audit.record(
        "data.export",
        resource=("report", "tickets"),
        metadata={
            "rows": len(rows),
            "filter": {"team": team, "status": status, "q": q},
            "truncated": rows.truncated,
            "format": "csv",
        },
    )

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([spreadsheet_safe(row[c]) for c in COLUMNS])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(
        lines(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="tickets.csv"'},
    )
