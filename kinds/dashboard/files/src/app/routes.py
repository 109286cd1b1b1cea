"""Yours to edit. The dashboard: a summary with a chart, a ticket table, a CSV export.

All data comes through the `reports` connector declared in microapp.yaml: read-only,
parameterized queries only, e-mail and phone masked unless the user holds pii-reader. Queries
are throttled per user; the export is limited to the exporter role and audited.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from app.charts import bar_chart
from guardrails import User, audit, connector, limit_per_user, render, require_role

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
PER_PAGE = 25


def reports():
    return connector("reports")


def filtered(team: str, status: str, search: str) -> tuple[str, dict[str, str]]:
    """A WHERE clause and its bound parameters; user input never becomes SQL text."""
    clauses, params = [], {}
    if team:
        clauses.append("team = :team")
        params["team"] = team
    if status:
        clauses.append("status = :status")
        params["status"] = status
    if search:
        clauses.append("(requester LIKE :search OR category LIKE :search)")
        params["search"] = f"%{search}%"
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


@router.get("/")
def summary(request: Request, user: Viewer, _throttle: Throttled) -> Response:
    db = reports()
    totals = db.query(
        "SELECT COUNT(*) AS tickets, "
        "SUM(CASE WHEN status IN (:open, :busy) THEN 1 ELSE 0 END) AS open_tickets, "
        "ROUND(AVG(hours_to_resolve), 1) AS avg_hours FROM tickets",
        open="open",
        busy="in progress",
    )[0]
    by_category = db.query(
        "SELECT category, COUNT(*) AS n FROM tickets GROUP BY category ORDER BY n DESC"
    )
    by_team = db.query(
        "SELECT team, COUNT(*) AS n, ROUND(AVG(hours_to_resolve), 1) AS avg_hours "
        "FROM tickets GROUP BY team ORDER BY team"
    )
    chart = bar_chart("Tickets by category", [(r["category"], r["n"]) for r in by_category])
    return render(request, "summary.html", {"totals": totals, "chart": chart, "by_team": by_team})


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
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    db = reports()
    sort = sort if sort in SORTABLE else "opened_on"
    where, params = filtered(team, status, q)
    total = db.query(f"SELECT COUNT(*) AS n FROM tickets{where}", **params)[0]["n"]  # noqa: S608
    rows = db.query(
        f"SELECT {', '.join(COLUMNS)} FROM tickets{where} "  # noqa: S608 (names from a fixed list)
        f"ORDER BY {sort} {'DESC' if desc else 'ASC'}, id LIMIT :limit OFFSET :offset",
        **params,
        limit=PER_PAGE,
        offset=(page - 1) * PER_PAGE,
    )
    teams = [r["team"] for r in db.query("SELECT DISTINCT team FROM tickets ORDER BY team")]
    statuses = [
        r["status"] for r in db.query("SELECT DISTINCT status FROM tickets ORDER BY status")
    ]
    pages = max(1, -(-total // PER_PAGE))
    return render(
        request,
        "tickets.html",
        {
            "rows": rows,
            "columns": COLUMNS,
            "total": total,
            "page": page,
            "pages": pages,
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
    where, params = filtered(team, status, q)
    rows = reports().query(
        f"SELECT {', '.join(COLUMNS)} FROM tickets{where} ORDER BY id",  # noqa: S608
        **params,
    )
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
