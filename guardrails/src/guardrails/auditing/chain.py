"""The audit chain in the app's database: one row per event, one head row per app.

Each event is a row of `guardrails_audit_event`, written by `append()` inside the transaction
of the change it records, so the change and its event commit together or not at all (on
PostgreSQL the transaction queues it and it is chained right after the commit: see the last
section). The row
keeps the event's canonical JSON (`body`, the text that is hashed) and its position `seq`
(1, 2, 3, ... with no gap); `guardrails_audit_head` holds, per app, the last `seq` and `hash`.

Why the chain never forks, on PostgreSQL and on SQLite, with any number of replicas
-----------------------------------------------------------------------------------
`append()` begins with

    UPDATE guardrails_audit_head SET seq = seq + 1 WHERE chain = :app_id RETURNING seq, hash

and that statement takes the chain's write lock, held until the transaction ends:

- PostgreSQL: the row lock on the head row. A second transaction's UPDATE of that row waits
  until the first commits or rolls back; under READ COMMITTED (PostgreSQL's default, which
  guardrails never changes) it then re-reads the newest committed version of the row and
  increments that one. Appenders are therefore serialized, and each one reads the `seq` and
  `hash` its predecessor committed (or, if the predecessor rolled back, the ones before it).
  `lock_timeout` bounds the wait (LOCK_TIMEOUT), so a stuck transaction gives an AuditError
  (a 503), never a request that hangs.
- SQLite: the UPDATE takes the database's one writer lock (RESERVED); there is one writer at a
  time per database file, whatever the process. Within a process, writers first queue for the
  file's write gate (guardrails.core.db_writers), taken before the transaction's first write:
  the gate, then SQLite's lock, always in that order, so the two cannot deadlock. The Python
  driver opens the transaction (deferred BEGIN) at the first write, so nothing was read from an
  older snapshot, and a transaction that wrote before already holds the lock. Waiting is
  bounded (BUSY_TIMEOUT_S, then busy_timeout).

The same statement returns the head it moved (`seq` is now this event's position, `hash` still
the previous event's: on PostgreSQL the newest committed version, re-read after the wait);
holding the lock, `append()` hashes the event with that `prev_hash`, inserts it (`seq` is the
primary key: two events can never commit at one position) and stores the new hash in the head. A
rollback undoes the head's UPDATE with the event and the change: no gap, no event without its
change and no change without its event. The lock is held from the append to the commit, so
the audited transactions of one app run one at a time through that short stretch: record the
event as the last step before the commit (the templates do).

PostgreSQL: chained right after the commit (decision 0011)
----------------------------------------------------------
On PostgreSQL that stretch includes the commit's WAL flush, and concurrent commits queued for
the head row instead of sharing one flush (the audited POST served under half of bare FastAPI's
rate). So there an event recorded in a change's transaction is *queued* in it instead
(`enqueue()`: one INSERT into `guardrails_audit_intake`, no lock): the change and its event
still commit together or not at all. Right after the commit, `chain_waiting()` takes the waiting
events out of the intake in a short transaction of its own and chains them (oldest intake id
first) under the head's lock, all or nothing; the
audit log runs it before the request goes on (one round at a time per process, for every
request waiting at that moment: guardrails.auditing.log.Chainer), and a housekeeping job chains
whatever a killed process left. An event is thus durable at its change's commit, as before, and
in the hash chain a moment later; `verify_db` reports events still waiting. SQLite keeps the
in-transaction chain: its commits are serialized by its single writer anyway.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    Index,
    Integer,
    String,
    Text,
    func,
    inspect,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from guardrails.auditing.canonical import GENESIS, canonical, event_hash
from guardrails.core.db import GuardrailsModel

LOCK_TIMEOUT = "15s"  # PostgreSQL: the longest an append waits for the chain's lock


class AuditEventRow(GuardrailsModel):
    __tablename__ = "guardrails_audit_event"
    __table_args__ = (Index("ix_guardrails_audit_event_resource", "resource_type", "resource_id"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    timestamp: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(120))
    result: Mapped[str] = mapped_column(String(16))
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(254))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # the canonical JSON, exactly as hashed (+ hash)


class AuditHead(GuardrailsModel):
    __tablename__ = "guardrails_audit_head"

    chain: Mapped[str] = mapped_column(String(64), primary_key=True)  # the app_id
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64), default=GENESIS)


class AuditIntake(GuardrailsModel):
    """PostgreSQL: events committed with their change, waiting to be chained (oldest id first)."""

    __tablename__ = "guardrails_audit_intake"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    body: Mapped[str] = mapped_column(Text)  # the event's canonical JSON, not yet chained


class SinkCursor(GuardrailsModel):
    """The outbox's position per sink: every event with a larger seq is still to deliver."""

    __tablename__ = "guardrails_audit_cursor"

    sink: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)


def _statements(mark: str) -> dict[str, str]:
    """The append's statements in the driver's own parameter style (`mark` formats a name).
    They run on the driver's cursor, inside the session's transaction: an append runs three
    statements while it holds the chain's lock, and SQLAlchemy's per-statement work (a few
    times the statement's own cost on SQLite) would hold that lock longer."""
    head, event, intake = (
        AuditHead.__tablename__,
        AuditEventRow.__tablename__,
        AuditIntake.__tablename__,
    )
    columns = [c.name for c in AuditEventRow.__table__.columns]
    app, n, new_hash = mark.format("app"), mark.format("n"), mark.format("hash")
    values = ", ".join(mark.format(c) for c in columns)
    # Names from this module's own tables; every value is a bound parameter.
    return {
        # take the chain's lock by moving its head; the previous hash comes back with it
        "take": f"UPDATE {head} SET seq = seq + {n} WHERE chain = {app} RETURNING seq, hash",  # noqa: S608
        "insert": f"INSERT INTO {event} ({', '.join(columns)}) VALUES ({values})",  # noqa: S608
        "move": f"UPDATE {head} SET hash = {new_hash} WHERE chain = {app}",  # noqa: S608
        "lock_timeout": f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'",
        # PostgreSQL, chained after the commit (see the module's docstring)
        "enqueue": f"INSERT INTO {intake} (body) VALUES ({mark.format('body')})",  # noqa: S608
        # the oldest waiting events, taken out of the intake (back in it if the round fails).
        # Rows another round holds are waited for, not skipped: once this returns, every event
        # committed before it began is chained, by this round or by that one.
        "dequeue": (
            f"DELETE FROM {intake} WHERE id IN (SELECT id FROM {intake} ORDER BY id "  # noqa: S608
            f"LIMIT {n} FOR UPDATE) RETURNING id, body"
        ),
    }


_SQL = {"sqlite": _statements(":{}"), "postgresql": _statements("%({})s")}


def ensure_head(engine: Engine, app_id: str) -> None:
    """Create the app's head row if it is missing (any replica may; one wins)."""
    with Session(engine) as session:
        if session.get(AuditHead, app_id) is not None:
            return
        session.add(AuditHead(chain=app_id, seq=0, hash=GENESIS))
        try:
            session.commit()
        except IntegrityError:  # another replica made it a moment ago
            session.rollback()


def append(session: Session, app_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """Chain `event` and add it to `session`'s transaction; returns the chained event."""
    return extend(session, app_id, [event])[0]


def extend(session: Session, app_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chain `events` in `session`'s transaction; returns them chained. One lock on the head (it
    is held until the transaction ends), one INSERT, the head moved once: one event from the web
    app, the standalone events that arrived together (the audit log's group commit), or many at
    once from a bulk load such as the test kit's seeding."""
    if not events:
        return []
    conn = session.connection()
    _limit_lock_waits(conn)
    return _extend(session, conn, app_id, events)


def _extend(
    session: Session, conn: Connection, app_id: str, events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`extend` once the transaction's lock waits are bounded (`_limit_lock_waits`)."""
    sql = _SQL[conn.dialect.name]
    taken = _run(conn, sql, "take", {"app": app_id, "n": len(events)})
    if taken is None:  # no head row yet (a database made before this app's first start)
        session.add(AuditHead(chain=app_id, seq=len(events), hash=GENESIS))
        session.flush()
        taken = (len(events), GENESIS)
    last, prev = taken  # the new seq, the hash of the event before the first one
    chained_events, rows = [], []
    for seq, event in enumerate(events, start=last - len(events) + 1):
        chained = {**event, "seq": seq, "prev_hash": prev}
        chained["hash"] = event_hash(chained)
        resource = event.get("resource") or {}
        rows.append(
            {
                "seq": seq,
                "event_id": event["event_id"],
                "timestamp": event["timestamp"],
                "action": _column(event["action"], 120),
                "result": event["result"],
                "resource_type": _column(resource.get("type"), 64),
                "resource_id": _column(resource.get("id"), 254),
                "prev_hash": prev,
                "hash": chained["hash"],
                "body": canonical(chained),
            }
        )
        chained_events.append(chained)
        prev = chained["hash"]
    _run(conn, sql, "insert", rows)
    _run(conn, sql, "move", {"app": app_id, "hash": prev})
    return chained_events


def chains_after_commit(session: Session) -> bool:
    """Whether an event recorded in `session`'s transaction is queued there and chained after
    its commit (PostgreSQL), rather than chained in it (SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def enqueue(session: Session, events: list[dict[str, Any]]) -> None:
    """Queue `events` (not chained yet) in `session`'s transaction: they commit with it, and
    `chain_waiting()` chains them after."""
    conn = session.connection()
    rows = [{"body": canonical(event)} for event in events]
    _run(conn, _SQL[conn.dialect.name], "enqueue", rows)


def chain_waiting(session: Session, app_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """In `session`'s transaction: take up to `limit` of the oldest events waiting in the
    intake and chain them (`extend`: the head's lock, one INSERT, the head moved). Returns them
    chained (none: nothing was waiting). Every replica may call it at once: a round waits for
    the rows another holds (then takes what that one left), and the head's lock makes them
    chain in turn. Waiting is bounded by LOCK_TIMEOUT."""
    conn = session.connection()
    _limit_lock_waits(conn)  # once for the round: the dequeue and the head's lock
    taken = _run(conn, _SQL[conn.dialect.name], "dequeue", {"n": int(limit)})
    if not taken:
        return []
    return _extend(session, conn, app_id, [json.loads(body) for _id, body in sorted(taken)])


def waiting_count(session: Session) -> int:
    """Events committed but not chained yet (PostgreSQL; always 0 on SQLite)."""
    return session.scalar(select(func.count()).select_from(AuditIntake)) or 0


def any_waiting(session: Session) -> bool:
    """Whether any event waits to be chained (one index probe, whatever the count)."""
    return session.scalar(select(AuditIntake.id).limit(1)) is not None


def _limit_lock_waits(conn: Connection) -> None:
    """PostgreSQL: the transaction's lock waits end after LOCK_TIMEOUT (an AuditError, a 503),
    never a request that hangs. Set once per transaction, before its first waiting statement."""
    if conn.dialect.name == "postgresql":
        _run(conn, _SQL["postgresql"], "lock_timeout", None)


def _column(value: Any, size: int) -> str | None:
    """A searchable copy of an event field for its column: cut to the column's size, without
    NUL (which PostgreSQL's text refuses). The body keeps the field exactly, and the hash is of
    the body: a column can never refuse an event (a refused event would hold up every event
    queued after it)."""
    return None if value is None else str(value).replace("\x00", "")[:size]


def _run(conn: Connection, sql: dict[str, str], name: str, params: Any) -> Any:
    """One statement of the append on the driver's cursor; the driver's errors come out as
    SQLAlchemy's (OperationalError, IntegrityError...), like every other statement's, and
    like theirs without the values when the engine hides them (the app's engine does)."""
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.dbapi_connection.cursor()
    statement = sql[name]
    try:
        if isinstance(params, list):
            cursor.executemany(statement, params)
            return None
        cursor.execute(statement, params)
        if name == "dequeue":
            return cursor.fetchall()
        return cursor.fetchone() if name == "take" else None
    except dbapi.Error as exc:
        raise DBAPIError.instance(
            statement, params, exc, dbapi.Error, hide_parameters=conn.engine.hide_parameters
        ) from exc
    finally:
        cursor.close()


def events_after(session: Session, seq: int, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` events with a position after `seq`, in order."""
    rows = session.execute(
        select(AuditEventRow.body)
        .where(AuditEventRow.seq > seq)
        .order_by(AuditEventRow.seq)
        .limit(limit)
    ).scalars()
    return [json.loads(body) for body in rows]


def head(session: Session, app_id: str) -> tuple[int, str]:
    """(number of events, hash of the last one) - a checkpoint of the chain."""
    row = session.get(AuditHead, app_id)
    return (row.seq, row.hash) if row is not None else (0, GENESIS)


def trail(session: Session, resource: tuple[str, Any], limit: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(AuditEventRow.body)
        .where(
            AuditEventRow.resource_type == resource[0],
            AuditEventRow.resource_id == str(resource[1]),
        )
        .order_by(AuditEventRow.seq.desc())
        .limit(limit)
    ).scalars()
    return [json.loads(body) for body in rows]


@dataclass
class ChainCheck:
    events: int
    head_hash: str
    problems: list[str]
    waiting: int = 0  # committed events not chained yet (PostgreSQL: chained a moment later)

    @property
    def ok(self) -> bool:
        return not self.problems


def _rows(engine: Engine, batch: int = 1000) -> Iterator[tuple[int, str, str]]:
    last = 0
    with Session(engine) as session:
        while True:
            rows = session.execute(
                select(AuditEventRow.seq, AuditEventRow.hash, AuditEventRow.body)
                .where(AuditEventRow.seq > last)
                .order_by(AuditEventRow.seq)
                .limit(batch)
            ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]


def verify_db(engine: Engine, app_id: str | None = None) -> ChainCheck:
    """Check every stored event: its hash, its link to the one before, no gap, and the head."""
    prev, count, problems = GENESIS, 0, []
    for seq, stored_hash, body in _rows(engine):
        count += 1
        try:
            event = json.loads(body)
        except ValueError:
            problems.append(f"event {seq}: not valid JSON")
            break
        if seq != count or event.get("seq") != seq:
            problems.append(f"event {seq}: expected position {count} (an event was removed)")
        elif event.get("prev_hash") != prev:
            problems.append(f"event {seq}: prev_hash does not match event {seq - 1}")
        elif event_hash(event) != event.get("hash") or stored_hash != event.get("hash"):
            problems.append(f"event {seq}: content does not match its hash (it was edited)")
        if problems:
            break
        prev = event["hash"]
    if not problems and app_id is not None:
        with Session(engine) as session:
            n, last = head(session, app_id)
        if (n, last) != (count, prev):
            problems.append(
                f"the chain head says {n} event(s) ending in {last[:12]}..., the table holds "
                f"{count} ending in {prev[:12]}... (events were removed from the end)"
            )
    with Session(engine) as session:
        waiting = (
            waiting_count(session) if inspect(engine).has_table(AuditIntake.__tablename__) else 0
        )
    return ChainCheck(events=count, head_hash=prev, problems=problems, waiting=waiting)
