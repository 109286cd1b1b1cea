# Yours to edit: `copier update` never overwrites this file.
"""Synthetic demo data for the dashboard: clearly fake, reproducible, PII-looking on purpose.

`make dev` creates var/demo-reports.db (SQLite) with a `tickets` table so the pages show real
content at once. Names and e-mails are made up (example.org), phone numbers use the 555-01xx
range reserved for fiction; masking still hides them from users without the pii-reader role,
exactly as it would hide real ones. Replace the connector's secret with your real database.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from pathlib import Path

FIRST = [
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Emil",
    "Fatou",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kai",
    "Lena",
    "Milo",
    "Nia",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Sami",
    "Tess",
]
LAST = ["Archer", "Baker", "Cruz", "Dahl", "Ekwu", "Fox", "Gray", "Holm", "Ito", "Jansen"]
TEAMS = ["payments", "logistics", "support", "finance", "hr"]
CATEGORIES = ["access", "hardware", "software", "network", "other"]
STATUSES = ["open", "in progress", "resolved", "closed"]

SCHEMA = """
CREATE TABLE tickets (
    id INTEGER PRIMARY KEY,
    opened_on TEXT NOT NULL,
    team TEXT NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    requester TEXT NOT NULL,
    email TEXT NOT NULL,
    phone TEXT NOT NULL,
    hours_to_resolve REAL
);
-- for the ticket page's filters and sort orders (keyset paging: the column, then id)
CREATE INDEX ix_tickets_team ON tickets (team);
CREATE INDEX ix_tickets_status ON tickets (status);
CREATE INDEX ix_tickets_opened_on ON tickets (opened_on, id);
CREATE INDEX ix_tickets_category ON tickets (category, id);
CREATE INDEX ix_tickets_hours ON tickets (coalesce(hours_to_resolve, -1), id);
"""


def rows(count: int = 400, seed: int = 7, today: dt.date | None = None):
    rnd = random.Random(seed)  # noqa: S311 (made-up demo data, not security)
    today = today or dt.date(2026, 11, 1)
    for i in range(1, count + 1):
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        status = rnd.choices(STATUSES, weights=[3, 2, 4, 4])[0]
        hours = round(rnd.lognormvariate(2.2, 0.8), 1) if status in ("resolved", "closed") else None
        yield (
            i,
            (today - dt.timedelta(days=rnd.randrange(0, 120))).isoformat(),
            rnd.choice(TEAMS),
            rnd.choices(CATEGORIES, weights=[4, 2, 5, 2, 1])[0],
            status,
            f"{first} {last}",
            f"{first.lower()}.{last.lower()}{i}@example.org",
            f"+1-202-555-01{rnd.randrange(0, 100):02d}",
            hours,
        )


def create(path: Path, count: int = 400) -> Path:
    """Write the demo database (replacing an older one) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with sqlite3.connect(tmp) as db:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO tickets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows(count))
    tmp.replace(path)
    return path
