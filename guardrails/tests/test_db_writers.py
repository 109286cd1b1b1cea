"""SQLite's writers queue in-process for the file's write gate (guardrails.core.db_writers)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from guardrails.core import db
from guardrails.core.db_writers import gate_for

WRITERS, EACH = 8, 15


def _tiny_busy_timeout(engine) -> None:
    @event.listens_for(engine, "connect")
    def _busy(conn, _record):  # after make_engine's own: SQLite's handler gives up at once
        conn.execute("PRAGMA busy_timeout=1")


def _hammer(engine) -> list[str]:
    """WRITERS threads, each EACH write transactions that hold the lock a moment."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, n INTEGER)"))
    errors: list[str] = []
    start = threading.Barrier(WRITERS)

    def writer() -> None:
        start.wait()
        for n in range(EACH):
            try:
                with engine.begin() as conn:
                    conn.execute(text("SELECT count(*) FROM t")).scalar()
                    conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
                    time.sleep(0.001)  # work done while holding the writer lock
                    conn.execute(text("UPDATE t SET n = n + 1 WHERE id = 1"))
            except OperationalError as exc:
                errors.append(str(exc.orig))

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_writers_never_meet_sqlites_busy_handler(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'gated.db'}")
    _tiny_busy_timeout(engine)
    assert _hammer(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == WRITERS * EACH
    engine.dispose()


def test_without_the_gate_the_same_writers_fail(tmp_path):
    """The control: the same load on an ungated engine meets 'database is locked'."""
    engine = create_engine(
        f"sqlite:///{tmp_path / 'plain.db'}", connect_args={"check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _wal(conn, _record):
        conn.execute("PRAGMA journal_mode=WAL")

    _tiny_busy_timeout(engine)
    errors = _hammer(engine)
    assert errors and all("locked" in e for e in errors)
    engine.dispose()


def test_an_exception_inside_a_write_releases_the_gate(tmp_path):
    path = tmp_path / "fail.db"
    engine = db.make_engine(f"sqlite:///{path}")
    gate = gate_for(str(path))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    assert gate.holder is None  # DDL autocommits: released at once
    maker = db.make_sessionmaker(engine)
    with pytest.raises(RuntimeError), maker.begin() as session:
        session.execute(text("INSERT INTO t (id) VALUES (1)"))
        assert gate.holder is not None
        raise RuntimeError("the request failed")
    assert gate.holder is None
    session = maker()  # a request that never ends its transaction, closed by its dependency
    session.execute(text("INSERT INTO t (id) VALUES (2)"))
    session.close()
    assert gate.holder is None
    with pytest.raises(IntegrityError), engine.begin() as conn:  # a failing statement
        conn.execute(text("INSERT INTO t (id) VALUES (3)"))
        conn.execute(text("INSERT INTO t (id) VALUES (3)"))
    assert gate.holder is None
    got = []
    other = threading.Thread(target=lambda: got.append(_insert(engine, 4)))
    other.start()
    other.join(timeout=2)
    assert got == [4]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM t ORDER BY id")).scalars().all() == [4]
    engine.dispose()


def _insert(engine, n: int) -> int:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (id) VALUES (:n)"), {"n": n})
    return n


def test_a_transaction_committed_in_another_thread_releases(tmp_path):
    """FastAPI may end a dependency's session in another worker thread than the route's."""
    path = tmp_path / "threads.db"
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    session = db.make_sessionmaker(engine)()
    session.execute(text("INSERT INTO t (id) VALUES (1)"))
    ended = threading.Thread(target=session.commit)
    ended.start()
    ended.join()
    session.close()
    assert gate_for(str(path)).holder is None
    assert _insert(engine, 2) == 2
    engine.dispose()


def test_a_leaked_writer_makes_others_give_up_with_sqlites_error(tmp_path, monkeypatch):
    path = tmp_path / "leak.db"
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    monkeypatch.setattr(gate_for(str(path)), "timeout", 0.2)
    held = engine.connect()
    held.execute(text("INSERT INTO t (id) VALUES (1)"))  # never committed
    failed = []
    other = threading.Thread(target=lambda: _try(engine, failed))
    other.start()
    other.join(timeout=5)
    assert failed and "database is locked" in failed[0]
    held.rollback()
    held.close()
    assert _insert(engine, 2) == 2
    engine.dispose()


def _try(engine, failed: list[str]) -> None:
    try:
        _insert(engine, 3)
    except OperationalError as exc:
        failed.append(str(exc))
