"""A SQLite file database keeps its connections: requests running at once each get a pooled
connection, and returning them closes none (a new connection starts with an empty page cache
and reads every page it needs again, a cost that grows with the data)."""

from __future__ import annotations

from sqlalchemy import event, text

from guardrails.core.db import SQLITE_MMAP, SQLITE_POOL, make_engine


def test_connections_used_at_once_are_kept_for_the_next_requests(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    opened = []
    event.listen(engine, "connect", lambda *_: opened.append(1))
    at_once = 12  # more than SQLAlchemy's default pool of 5
    assert at_once <= SQLITE_POOL
    for _round in range(3):
        connections = [engine.connect() for _ in range(at_once)]
        for conn in connections:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        for conn in connections:
            conn.close()
    assert len(opened) == at_once  # the first round opened them; later rounds reused them
    engine.dispose()


def test_an_in_memory_database_still_works():
    engine = make_engine("sqlite://")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_reads_share_the_page_cache_through_a_memory_map(tmp_path):
    """Every connection reads the file through a memory map (the operating system's page cache,
    shared), and the settings that make commits durable stay as they were."""
    engine = make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA mmap_size")).scalar() == SQLITE_MMAP
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    engine.dispose()
