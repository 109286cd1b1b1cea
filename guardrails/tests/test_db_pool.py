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


def test_every_postgresql_connection_has_time_limits_and_the_url_may_change_them(postgres):
    """A PostgreSQL that stops answering without closing the connection (a network cut, a
    failed-over primary) must not hold a query forever: the app's engine and its session
    reads connect with libpq's time limits (connect, keepalives, unacknowledged data), and a
    libpq parameter in the database URL wins over the default."""
    import anyio

    from guardrails.core import db
    from guardrails.web.sessions import SessionStore

    from .conftest import libpq_time_limits

    engine = make_engine(db.with_driver(postgres.url))
    db.create_all(engine)
    with engine.connect() as conn:
        assert libpq_time_limits(conn.connection.dbapi_connection) == db.PG_TIME_LIMITS
    store = SessionStore(db.make_sessionmaker(engine), max_age=60)
    assert anyio.run(store.read, "no-such-session") is None
    assert libpq_time_limits(store._async[2]) == db.PG_TIME_LIMITS  # noqa: SLF001 - its own connection
    anyio.run(store.aclose)
    separator = "&" if "?" in postgres.url else "?"
    chosen = make_engine(db.with_driver(f"{postgres.url}{separator}keepalives_idle=5"))
    with chosen.connect() as conn:
        assert libpq_time_limits(conn.connection.dbapi_connection) == {
            **db.PG_TIME_LIMITS,
            "keepalives_idle": "5",
        }
    engine.dispose()
    chosen.dispose()
