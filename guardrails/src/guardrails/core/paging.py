"""Keyset (cursor) paging: a page of a list costs the same at row 10 and at row 100,000.

`keyset_page` runs a SELECT ordered by a stable key and returns at most `size` rows plus an
opaque cursor for the next page. The next page starts *after* the last row's key
(`WHERE (a, id) < (:a, :id) ... LIMIT size + 1`), so the database walks an index from there
instead of counting past every earlier row as `OFFSET` does. Rows with equal values in the
sort column are neither skipped nor repeated, because the order ends in a unique column.

    newest_first = [Item.created_at.desc(), Item.id.desc()]
    page = keyset_page(db.scalars, select(Item).where(...), newest_first, after=after)
    page.items, page.next        # rows of this page; the cursor of the next one (None: last)

`count_rows` counts what a filtered SELECT would return, in SQL, optionally up to a cap (a
badge says "1000+" instead of counting a million rows on every view): `SELECT count(*) FROM
(SELECT 1 FROM ... WHERE ... LIMIT cap)`, which an index covering the filter columns answers
without reading a single row.

Rules: the last order column must be unique (the primary key) and every order column NOT NULL.
Index the filter and order columns the pages use (`index=True` or `Index(...)` on the model).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, literal_column, or_, select
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression

from guardrails.core.context import current_runtime

DEFAULT_PAGE_SIZE = 50  # the manifest's `ui.page_size` replaces it (guardrails.core.manifest)
MAX_PAGE_SIZE = 500


@dataclass
class Page:
    """One page of a keyset-paged list."""

    items: list[Any]
    next: str | None  # cursor of the following page; None on the last page
    size: int
    first: bool = True  # this is the first page (no cursor was given)
    extra: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


def page_size(size: int | None = None) -> int:
    """`size`, else the running app's manifest `ui.page_size`, else DEFAULT_PAGE_SIZE."""
    if size is None:
        rt = current_runtime()
        size = rt.manifest.page_size if rt is not None else DEFAULT_PAGE_SIZE
    return max(1, min(int(size), MAX_PAGE_SIZE))


def _order_keys(order: Sequence[Any]) -> list[tuple[ColumnElement, bool, str]]:
    keys = []
    for item in order:
        descending = isinstance(item, UnaryExpression) and item.modifier is operators.desc_op
        column = item.element if isinstance(item, UnaryExpression) else item
        name = getattr(column, "key", None)
        if not name:
            raise ValueError(f"order by a named column, not {item!r}")
        keys.append((column, descending, name))
    if not keys:
        raise ValueError("keyset paging needs at least one order column (end with a unique one)")
    return keys


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return {"t": value.isoformat()}
    if isinstance(value, dt.date):
        return {"d": value.isoformat()}
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        if "t" in value:
            return dt.datetime.fromisoformat(value["t"])
        if "d" in value:
            return dt.date.fromisoformat(value["d"])
        raise ValueError("unknown cursor value")
    return value


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps([_plain(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, width: int) -> list[Any] | None:
    """The key values in `cursor`, or None when it is not one of ours (then: first page)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != width:
            return None
        return [_typed(v) for v in values]
    except (ValueError, TypeError, binascii.Error):
        return None


def _after(keys: list[tuple[ColumnElement, bool, str]], values: list[Any]) -> ColumnElement:
    """Rows strictly after `values` in the order: (a > :a) OR (a = :a AND b > :b) ..."""
    branches = []
    for i, (column, descending, _name) in enumerate(keys):
        equal = [keys[j][0] == values[j] for j in range(i)]
        beyond = column < values[i] if descending else column > values[i]
        branches.append(and_(*equal, beyond) if equal else beyond)
    return or_(*branches) if len(branches) > 1 else branches[0]


def _value(row: Any, name: str) -> Any:
    if isinstance(row, Mapping):
        return row[name]
    return getattr(row, name)


def keyset_page(
    run: Callable[[Any], Iterable[Any]],
    statement: Any,
    order: Sequence[Any],
    *,
    after: str | None = None,
    size: int | None = None,
) -> Page:
    """One page of `statement` in `order` (columns, `.desc()` for descending; the last one
    unique), starting after the cursor `after`. `run` executes a statement and returns rows:
    `db.scalars` (ORM objects), `db.execute` (rows), or a connector's `query` (dicts). Each
    order column must be readable on a row under its name. A cursor that is not ours is
    treated as no cursor (the first page)."""
    keys = _order_keys(order)
    size = page_size(size)
    values = decode_cursor(after, len(keys)) if after else None
    query = statement.order_by(None).order_by(*order)
    if values is not None:
        query = query.where(_after(keys, values))
    rows = list(run(query.limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    cursor = encode_cursor([_value(rows[-1], k[2]) for k in keys]) if more and rows else None
    return Page(items=rows, next=cursor, size=size, first=values is None)


def _only_rows(statement: Any) -> Any:
    """`statement` selecting the constant 1 instead of its columns (same FROM, same WHERE): the
    database can then count from an index that covers the filter alone (SQLite's "COVERING
    INDEX", PostgreSQL's index-only scan) instead of reading each row. A DISTINCT or GROUP BY
    counts its columns, so it is left as it is."""
    if getattr(statement, "_distinct", False) or getattr(statement, "_group_by_clauses", ()):
        return statement
    if not hasattr(statement, "with_only_columns"):  # a UNION and the like
        return statement
    return statement.with_only_columns(literal_column("1"), maintain_column_froms=True)


def count_rows(
    run: Callable[[Any], Iterable[Any]], statement: Any, *, cap: int | None = None
) -> int:
    """How many rows `statement` selects, counted by the database (at most `cap` when given:
    it stops reading there). `run` as for keyset_page."""
    inner = _only_rows(statement.order_by(None))
    if cap is not None:
        inner = inner.limit(cap)
    counted = select(func.count()).select_from(inner.subquery())
    for row in run(counted):
        if isinstance(row, Mapping):
            return int(next(iter(row.values())))
        if isinstance(row, int):
            return row
        return int(row[0])  # a Row
    return 0
