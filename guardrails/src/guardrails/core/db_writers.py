"""SQLite's writers, one at a time per process, queued here before they reach SQLite.

SQLite lets one transaction write at a time per database file. Without this module, the other
writers of a busy app find the file locked and sleep in SQLite's busy handler, which polls with
growing sleeps (1, 2, 5, 10, ... ms): at 8 concurrent form posts a writer slept 3.6 times per
request and p99 reached 1.5 s while the lock was free most of the time. Here each database file
has one process-wide `threading.Lock` (the *write gate*); a connection takes it just before its
first writing statement (the moment the driver opens its transaction: BEGIN IMMEDIATE in
effect) and gives it back when the transaction ends (commit, rollback or close). Waiting
writers are woken as soon as the gate is free, in no particular order.

How it is wired: `make_engine` passes `factory=GatedConnection` to `sqlite3.connect`, so it holds
for every connection of every engine on the file (sessions, `engine.begin()`, Alembic), whatever
thread commits (FastAPI may run a dependency's exit in another worker thread than the route).

Failure: a request that raises rolls back (SQLAlchemy's session or the pool's reset-on-return
both call `rollback()`), and a connection that is closed releases too; a leaked, never-ended
write transaction keeps the gate as it would keep SQLite's own lock, and
the others give up after `BUSY_TIMEOUT_S` with SQLite's own error ("database is locked", an
`OperationalError`: a 503). The audit chain's head lock on SQLite *is* SQLite's writer lock
(guardrails.auditing.chain), which a connection only asks for after it holds the gate: one
order, so no deadlock. Other processes (a second uvicorn worker, the CLI) still meet at
SQLite's lock and its busy handler. PostgreSQL is not gated: it locks rows.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

BUSY_TIMEOUT_S = 5.0  # the longest a writer waits for the gate, then for SQLite's lock
# The first words of statements that write (WITH may: taken conservatively).
WRITES = frozenset(
    [
        "INSERT",
        "UPDATE",
        "DELETE",
        "REPLACE",
        "CREATE",
        "DROP",
        "ALTER",
        "WITH",
        "VACUUM",
        "REINDEX",
        "ANALYZE",
    ]
)


class WriteGate:
    """The write lock of one database file in this process; `holder` is the connection."""

    def __init__(self, name: str, timeout: float = BUSY_TIMEOUT_S):
        self.name = name
        self.timeout = timeout
        self.holder: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def enter(self, conn: sqlite3.Connection) -> None:
        if self.holder is conn:
            return
        if not self._lock.acquire(timeout=self.timeout):
            raise sqlite3.OperationalError(
                f"database is locked (another writer in this process held {self.name} for "
                f"more than {self.timeout:g} s)"
            )
        self.holder = conn

    def leave(self, conn: sqlite3.Connection) -> None:
        if self.holder is conn:
            self.holder = None
            self._lock.release()


_GATES: dict[str, WriteGate] = {}
_GATES_LOCK = threading.Lock()


def in_memory(database: str | None) -> bool:
    """Whether a SQLite database name (a URL's database part, or what sqlite3.connect gets)
    is an in-memory or temporary database rather than a file: the one place that says so."""
    database = database or ""
    return (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or "mode=memory" in database
    )


def gate_for(database: str) -> WriteGate | None:
    """The gate of a database file (None for in-memory and temporary databases: one
    connection each, nothing to share)."""
    if in_memory(database):
        return None
    key = database.split("?", 1)[0].removeprefix("file:")
    key = os.path.realpath(key)
    with _GATES_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = WriteGate(key)
        return gate


def writes(sql: str) -> bool:
    head = sql.lstrip()[:16].upper()
    word = head.split(None, 1)[0] if head else ""
    return word in WRITES or head.startswith(("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"))


class GatedCursor(sqlite3.Cursor):
    """A cursor whose writing statements pass the connection's write gate first."""

    def execute(self, sql: str, *args: Any) -> GatedCursor:  # type: ignore[override]
        return self._gated(super().execute, sql, *args)

    def executemany(self, sql: str, *args: Any) -> GatedCursor:  # type: ignore[override]
        return self._gated(super().executemany, sql, *args)

    def _gated(self, run: Any, sql: str, *args: Any) -> GatedCursor:
        """`run` (the cursor's own execute or executemany) through the connection's gate."""
        conn: GatedConnection = self.connection  # type: ignore[assignment]
        conn.before(sql)
        try:
            return run(sql, *args)
        finally:
            conn.settle()


class GatedConnection(sqlite3.Connection):
    """`sqlite3.connect(..., factory=GatedConnection)`: takes the file's write gate before the
    first writing statement, gives it back when no transaction is open any more."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any):
        super().__init__(database, *args, **kwargs)
        self.gate = gate_for(os.fsdecode(database))

    def before(self, sql: str) -> None:
        if self.gate is not None and self.gate.holder is not self and writes(sql):
            self.gate.enter(self)

    def settle(self) -> None:
        """After a statement: an autocommitted one (DDL), or one that failed and ended the
        transaction, leaves nothing open: give the gate back."""
        if self.gate is None or self.gate.holder is not self:
            return
        try:
            open_ = self.in_transaction
        except sqlite3.ProgrammingError:  # closed
            open_ = False
        if not open_:
            self.gate.leave(self)

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or GatedCursor)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().executemany(sql, *args)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.settle()  # a failed COMMIT leaves the transaction open: keep the gate

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.settle()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.gate is not None:
                self.gate.leave(self)
